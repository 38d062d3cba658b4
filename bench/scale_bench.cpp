// Scale-out scenarios, each beside the single-server figure of the same run (the scale-out
// issue, point 4). On one 2-core machine every server shares the same two cores with the client,
// so these figures measure the overhead of a standby or of Citus, not a speed-up.
//   get_all:   Store::get_all of a user with 20 preferences from the primary, and from a
//              streaming standby (reads without a token), 1 and 4 threads;
//   your_writes: a set followed by a get_all given the set's token (read-your-writes through a
//              standby, waiting for its replay) against the same pair on the primary alone;
//   set:       Store::set on a single server against Store::set through a Citus coordinator
//              with two workers (the distributed append function), 1 and 4 threads;
//   value counts catch-up: a ProjectionRunner folds 1,000 new events (sets of 250 users) into
//              the value counts, in batches of 20 and of 500: through one lane per worker on the
//              Citus store, against the single server's one lane.
// Usage: prefstore_scale_bench [SECONDS_PER_POINT] [RESULTS_MD]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>
#include <vector>

#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/store.hpp"
#include "scale_servers.hpp"
#include "test_cluster.hpp"

namespace {

using namespace prefstore;
using Clock = std::chrono::steady_clock;

// Runs op(thread, i) from `threads` threads for `seconds`; returns operations per second.
double rate_once(int threads, double seconds, const std::function<void(int, std::int64_t)>& op) {
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> done{0};
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::int64_t i = 0;
      while (!stop) op(t, i++);
      done += i;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  return static_cast<double>(done) / std::chrono::duration<double>(Clock::now() - start).count();
}

// The better of two runs of each side, alternating, after a warm-up of each (the machine is
// shared: the best run is the least disturbed). Returns {baseline, scenario}.
std::pair<double, double> rate_pair(int threads, double seconds,
                                    const std::function<void(int, std::int64_t)>& baseline,
                                    const std::function<void(int, std::int64_t)>& scenario) {
  (void)rate_once(threads, 0.5, baseline);
  (void)rate_once(threads, 0.5, scenario);
  double b = 0;
  double s = 0;
  for (int round = 0; round < 2; ++round) {
    b = std::max(b, rate_once(threads, seconds, baseline));
    s = std::max(s, rate_once(threads, seconds, scenario));
  }
  return {b, s};
}

std::string user(int i) {
  return "reader-" + std::to_string(i % 200) + "@example.com";
}

struct Row {
  std::string scenario;
  std::string baseline;
  double baseline_rate;
  double rate;
  std::string unit;
};

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::stod(argv[1]) : 3.0;
  const std::string results = argc > 2 ? argv[2] : "";
  try {
    // The primary and its standby.
    const auto home = testing::make_temp_dir("prefstore-scale-bench");
    storage::LocalServerOptions po = storage::local_server_options_from_environment();
    po.home = home;
    po.durable = false;
    // Commits wait for their WAL write (not for fsync), so the walsender sends a commit at once,
    // as on a durable primary; with synchronous_commit off a token read would wait for the WAL
    // writer (200 ms).
    po.settings = {{"synchronous_commit", "on"}};
    storage::LocalServer primary(po);
    primary.start();
    testing::StandbyServer standby(primary);
    testing::CitusCluster citus(2);

    StoreOptions single;
    single.database_url = primary.url();
    single.strict = false;
    Store primary_store(single);
    std::vector<std::pair<std::string, Value>> twenty;
    for (int k = 0; k < 20; ++k) {
      twenty.emplace_back("calendar.setting_" + std::to_string(k), std::string("Europe/Berlin"));
    }
    AppendResult last;
    for (int u = 0; u < 200; ++u) last = primary_store.set_many(user(u), twenty);

    StoreOptions with_standby = single;
    with_standby.standbys.urls = {standby.url(po.database)};
    with_standby.migrate_on_open = false;
    Store standby_store(with_standby);
    (void)standby_store.version("nobody", ReadOptions{last.consistency_token});  // caught up

    StoreOptions distributed;
    distributed.database_url = citus.coordinator.url();
    distributed.distributed = true;
    distributed.strict = false;
    Store citus_store(distributed);

    std::vector<Row> rows;
    for (const int threads : {1, 4}) {
      const auto [on_primary, on_standby] = rate_pair(
          threads, seconds,
          [&](int t, std::int64_t i) {
            if (primary_store.get_all(user(static_cast<int>(i) * 4 + t)).size() != 20) std::abort();
          },
          [&](int t, std::int64_t i) {
            if (standby_store.get_all(user(static_cast<int>(i) * 4 + t)).size() != 20) std::abort();
          });
      rows.push_back(
          {"get_all (20 preferences) from the standby, " + std::to_string(threads) + " thread(s)",
           "get_all from the primary", on_primary, on_standby, "reads/s"});
    }
    {
      const auto pair_on = [&](Store& store) {
        return [&store](int t, std::int64_t i) {
          const std::string who = "writer-" + std::to_string(t) + "@example.com";
          const auto w =
              store.set(who, "calendar.default_meeting_minutes", std::int64_t{5 + i % 400});
          if (store.get_all(who, ReadOptions{w.consistency_token})
                  .at("calendar.default_meeting_minutes")
                  .value != Value(std::int64_t{5 + i % 400})) {
            std::abort();  // a stale read: read-your-writes broken
          }
        };
      };
      const auto [alone, through_standby] =
          rate_pair(1, seconds, pair_on(primary_store), pair_on(standby_store));
      rows.push_back({"set, then get_all given its token, through the standby, 1 thread",
                      "the same pair on the primary alone", alone, through_standby, "pairs/s"});
    }
    for (const int threads : {1, 4}) {
      const auto setter = [](Store& store) {
        return [&store](int t, std::int64_t i) {
          (void)store.set("setter-" + std::to_string((i * 4 + t) % 400) + "@example.com",
                          "calendar.timezone", std::string(i % 2 ? "Asia/Tokyo" : "UTC"));
        };
      };
      const auto [one, distributed_rate] =
          rate_pair(threads, seconds, setter(primary_store), setter(citus_store));
      rows.push_back({"set through a Citus coordinator with 2 workers, " + std::to_string(threads) +
                          " thread(s)",
                      "set on a single server", one, distributed_rate, "writes/s"});
    }

    for (const std::size_t batch : {std::size_t{20}, std::size_t{500}}) {
      // Events per second of a catch-up over 1,000 events written just before (not timed).
      const auto catch_up_rate = [batch](Store& store) {
        projections::ProjectionRunner runner(
            store.pool(), {std::make_shared<projections::ValueCountsProjection>()},
            projections::RunnerOptions{.batch_size = batch});
        (void)runner.catch_up();  // what the scenarios before wrote
        const char* zones[] = {"Europe/Berlin", "America/Chicago", "Asia/Tokyo", "UTC"};
        for (int i = 0; i < 1000; ++i) {
          (void)store.set("counted-" + std::to_string(i % 250) + "@example.com",
                          "calendar.timezone", std::string(zones[i % 4]));
        }
        const auto start = Clock::now();
        const std::int64_t applied = runner.catch_up();
        const double took = std::chrono::duration<double>(Clock::now() - start).count();
        if (applied != 1000) std::abort();  // another runner at work, or events missed
        return static_cast<double>(applied) / took;
      };
      const double one = catch_up_rate(primary_store);
      const double lanes = catch_up_rate(citus_store);
      rows.push_back(
          {"value counts catch-up through a Citus coordinator (a lane per worker), "
           "batches of " +
               std::to_string(batch),
           "the same catch-up on a single server", one, lanes, "events/s"});
    }

    std::string md =
        "| scenario | single-server baseline | baseline rate | rate | ratio |\n"
        "| --- | --- | --- | --- | --- |\n";
    for (const Row& r : rows) {
      char line[512];
      std::snprintf(line, sizeof line, "| %s | %s | %.0f %s | %.0f %s | %.2f |\n",
                    r.scenario.c_str(), r.baseline.c_str(), r.baseline_rate, r.unit.c_str(), r.rate,
                    r.unit.c_str(), r.rate / r.baseline_rate);
      md += line;
      std::cerr << "scale: " << r.scenario << ": " << static_cast<long>(r.rate) << " " << r.unit
                << " against " << static_cast<long>(r.baseline_rate) << " (" << r.baseline << ")\n";
    }
    std::cout << md;
    if (!results.empty()) std::ofstream(results) << md;
    primary.stop(storage::StopMode::immediate);
    std::error_code ec;
    std::filesystem::remove_all(primary.cluster_dir(), ec);
    std::filesystem::remove_all(home, ec);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "prefstore_scale_bench: " << e.what() << "\n";
    return 1;
  }
}
