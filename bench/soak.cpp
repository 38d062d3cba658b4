// Soak test: steady load on a Store for a long time with the asynchronous projectors running,
// to show that neither the client's memory nor the projections' lag grows.
//   - a throwaway, migrated local server; a Store on it (strict, the calendar keys defined first);
//   - a ProjectionRunner (value counts and the snapshot writer) in a thread of its own, run() as
//     a service runs it, on a pool of its own;
//   - WRITERS writer threads doing Store::set() at a paced, steady total rate over 5,000 users of
//     the calendar assistant, and one reader thread doing get_all() at about 100/s;
//   - every INTERVAL seconds one row: sets/s achieved, set and get_all latency percentiles of
//     that interval, projection lag in events (Store::status()), client RSS, errors.
// At the end: the projections must catch up, and every acknowledged set must be in the log
// (each user's event count equals the sets acknowledged for that user).
// Writes OUT_DIR/soak.tsv (the rows) and OUT_DIR/soak.md (settings, table, verdict).
// Exit code: 0 when no call failed, the log holds every acknowledged write and the verdict is
// "no growth"; 1 otherwise.
// Usage: prefstore_soak [SECONDS [OUT_DIR [INTERVAL [RATE [WRITERS]]]]]
//        (defaults 600, ".", 10, 400 sets/s, 4)
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/snapshot_writer.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/store.hpp"

namespace {

using namespace prefstore;
using bench::Clock;

constexpr int kUsers = 5000;
constexpr double kReadsPerSecond = 100;
// A snapshot every 20 events of a user (not the default 100), so that the snapshot writer has
// work to do within the soak: each user gets about 48 events in 10 minutes at 400 sets/s.
constexpr std::int64_t kSnapshotEvery = 20;
// Verdict thresholds.
constexpr double kMaxMemoryGrowth = 0.10;  // last third's median RSS vs the second third's
constexpr double kLagFactor = 2.0;         // last third's max lag vs the first third's ...
constexpr std::int64_t kLagFloor = 500;    // ... or one runner batch, whichever is larger

struct Settings {
  double seconds = 600;
  std::filesystem::path out_dir = ".";
  double interval = 10;
  double rate = 400;
  int writers = 4;
};

struct Row {
  double elapsed = 0;
  double sets_per_s = 0;
  double set_p50 = 0, set_p99 = 0, set_max = 0;
  double get_p50 = 0, get_p99 = 0;
  std::int64_t gets = 0;
  std::int64_t lag = 0;
  double rss_mib = 0;
  std::int64_t errors = 0;
};

// Latencies and errors of the interval in progress; the collector swaps them out.
struct Interval {
  std::mutex mutex;
  std::vector<double> set_ms, get_ms;
  std::int64_t errors = 0;
  std::string first_error;

  void error(const std::string& what) {
    const std::lock_guard lock(mutex);
    if (errors++ == 0) first_error = what;
  }
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

double median(std::vector<double> v) {
  return percentile(v, 0.5);
}

double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

std::string user_id(int i) {
  return "user-" + std::to_string(i);
}

// The calendar assistant's keys, defined before the load so that the store runs strict.
void define_calendar(Store& store) {
  const Metadata by{"platform-team", "prefstore-soak", "soak test", "", ""};
  const auto define = [&](const char* key, ValueType type, Value default_value,
                          Constraints constraints = {}) {
    PreferenceDefinition d;
    d.key = key;
    d.type = type;
    d.default_value = std::move(default_value);
    d.constraints = std::move(constraints);
    (void)store.define(d, by);
  };
  Constraints hours;
  hours.pattern = "([01][0-9]|2[0-3]):[0-5][0-9]";
  define("calendar.timezone", ValueType::string, Value(std::string("UTC")));
  define("calendar.working_hours_start", ValueType::string, Value(std::string("09:00")), hours);
  define("calendar.working_hours_end", ValueType::string, Value(std::string("17:00")), hours);
  Constraints minutes;
  minutes.min = 5;
  minutes.max = 480;
  define("calendar.default_meeting_minutes", ValueType::integer, Value(std::int64_t{30}), minutes);
  Constraints channels;
  channels.allowed_values = std::vector<Value>{
      Value(std::string("email")), Value(std::string("push")), Value(std::string("sms"))};
  channels.max_items = 3;
  define("notifications.channels", ValueType::string_list, Value(StringList{"email"}), channels);
  Constraints reminder;
  reminder.allowed_values =
      std::vector<Value>{Value(std::int64_t{0}),  Value(std::int64_t{5}),  Value(std::int64_t{10}),
                         Value(std::int64_t{15}), Value(std::int64_t{30}), Value(std::int64_t{60})};
  define("reminders.minutes_before", ValueType::integer, Value(std::int64_t{10}), reminder);
}

// The n-th change of a writer: one of the six keys with a valid value.
std::pair<const char*, Value> calendar_change(std::uint64_t n) {
  static const std::vector<std::string> zones = {"Europe/London", "Europe/Berlin",
                                                 "Asia/Tokyo",    "America/New_York",
                                                 "UTC",           "Australia/Sydney"};
  static const std::vector<std::string> starts = {"07:30", "08:00", "08:30", "09:00", "10:00"};
  static const std::vector<std::string> ends = {"16:00", "16:30", "17:00", "18:00", "19:30"};
  static const std::vector<StringList> channels = {
      {"email"}, {"push"}, {"sms"}, {"email", "push"}, {"push", "sms"}, {"email", "push", "sms"}};
  static const std::vector<std::int64_t> reminders = {0, 5, 10, 15, 30, 60};
  const std::uint64_t v = n / 6;
  switch (n % 6) {
    case 0:
      return {"calendar.timezone", Value(zones[v % zones.size()])};
    case 1:
      return {"calendar.default_meeting_minutes",
              Value(static_cast<std::int64_t>(15 * (1 + v % 8)))};
    case 2:
      return {"calendar.working_hours_start", Value(starts[v % starts.size()])};
    case 3:
      return {"calendar.working_hours_end", Value(ends[v % ends.size()])};
    case 4:
      return {"notifications.channels", Value(channels[v % channels.size()])};
    default:
      return {"reminders.minutes_before", Value(reminders[v % reminders.size()])};
  }
}

// Runs fn at `per_second` calls a second on an absolute schedule until stop. A caller more than
// a second behind drops the backlog rather than bursting (the offered load stays steady).
template <typename Fn>
void paced(std::stop_token stop, double per_second, Fn fn) {
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / per_second));
  auto next = Clock::now();
  while (!stop.stop_requested()) {
    fn();
    next += period;
    const auto now = Clock::now();
    if (next < now - std::chrono::seconds(1)) next = now;
    std::this_thread::sleep_until(next);
  }
}

double ms_since(Clock::time_point started) {
  return std::chrono::duration<double, std::milli>(Clock::now() - started).count();
}

// The largest lag (events) of the asynchronous projections; -1 and an error when unreadable or
// a projection failed.
std::int64_t projection_lag(Store& store, Interval& interval) {
  HealthThresholds thresholds;
  thresholds.max_lag_events = -1;
  thresholds.max_lag_seconds = 0;
  const auto status = store.status(thresholds);
  if (!status.reachable) {
    interval.error("status: " + status.error);
    return -1;
  }
  std::int64_t lag = 0;
  for (const auto& p : status.projections) {
    if (p.state == "failed") {
      interval.error("projection " + p.name + " failed: " + p.last_error.value_or(""));
    }
    lag = std::max(lag, p.lag_events);
  }
  return lag;
}

// The first column of the first row of a query, as an integer; -1 when it fails.
std::int64_t query_count(const std::string& url, const char* sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, sql);
  const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
  const std::int64_t n = ok ? std::stoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(conn);
  return n;
}

// Events per user stream in the log.
std::vector<std::int64_t> events_per_user(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn,
                       "SELECT substr(stream_id, 6)::int, count(*) FROM prefstore.events "
                       "WHERE stream_id LIKE 'user-%' GROUP BY stream_id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    const std::string error = PQerrorMessage(conn);
    PQclear(r);
    PQfinish(conn);
    throw std::runtime_error("counting the events: " + error);
  }
  std::vector<std::int64_t> counts(kUsers, 0);
  for (int i = 0; i < PQntuples(r); ++i) {
    counts.at(static_cast<std::size_t>(std::stoi(PQgetvalue(r, i, 0)))) =
        std::stoll(PQgetvalue(r, i, 1));
  }
  PQclear(r);
  PQfinish(conn);
  return counts;
}

std::string fmt(const char* pattern, auto... args) {
  const int size = std::snprintf(nullptr, 0, pattern, args...);
  std::string out(static_cast<std::size_t>(std::max(size, 0)) + 1, '\0');
  std::snprintf(out.data(), out.size(), pattern, args...);
  out.pop_back();
  return out;
}

std::string tsv_line(const Row& r) {
  return fmt("%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%lld\t%.1f\t%lld\n", r.elapsed,
             r.sets_per_s, r.set_p50, r.set_p99, r.set_max, r.get_p50, r.get_p99,
             static_cast<long long>(r.lag), r.rss_mib, static_cast<long long>(r.errors));
}

std::string md_line(const Row& r) {
  return fmt("| %.0f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %lld | %.1f | %lld |\n", r.elapsed,
             r.sets_per_s, r.set_p50, r.set_p99, r.set_max, r.get_p50, r.get_p99,
             static_cast<long long>(r.lag), r.rss_mib, static_cast<long long>(r.errors));
}

struct Outcome {
  std::int64_t acknowledged = 0;
  std::int64_t in_log = 0;
  std::int64_t users_mismatched = 0;
  std::int64_t snapshots = 0;     // written by the snapshot projection
  std::int64_t value_counts = 0;  // rows of preference_value_counts
  std::int64_t set_errors = 0;
  std::int64_t get_errors = 0;
  std::int64_t gets = 0;
  std::string first_error;
  double catch_up_seconds = -1;  // after the load stopped; -1: did not catch up within 60 s
  double seconds = 0;            // of load
};

int run(const Settings& s, storage::LocalServer& server) {
  const std::string url = server.url();
  StoreOptions options;
  options.database_url = url;
  options.pool.max_size = static_cast<std::size_t>(s.writers) + 4;
  Store store(options);
  define_calendar(store);

  // The projector, as a service runs it: its own pool, its own thread, run() until stopped.
  storage::PoolOptions runner_pool_options = bench::pool_options(url);
  runner_pool_options.max_size = 3;
  storage::ConnectionPool runner_pool(runner_pool_options);
  projections::ProjectionRunner runner(
      runner_pool, {std::make_shared<projections::ValueCountsProjection>(),
                    std::make_shared<projections::SnapshotProjection>(kSnapshotEvery)});
  std::jthread projector([&runner](std::stop_token stop) { runner.run(stop); });

  Interval interval;
  std::vector<std::atomic<std::int64_t>> acked(kUsers);
  Outcome out;
  std::atomic<std::int64_t> set_errors{0}, get_errors{0}, gets{0};

  std::ofstream tsv(s.out_dir / "soak.tsv");
  tsv << "elapsed_s\tsets_per_s\tset_p50_ms\tset_p99_ms\tset_max_ms\tget_all_p50_ms\t"
         "get_all_p99_ms\tlag_events\trss_mib\terrors\n";
  std::fprintf(stderr, "soak: %.0f s, %d writers at %.0f sets/s, get_all at %.0f/s, %d users\n",
               s.seconds, s.writers, s.rate, kReadsPerSecond, kUsers);

  const auto started = Clock::now();
  std::vector<Row> rows;
  {
    std::vector<std::jthread> load;
    for (int w = 0; w < s.writers; ++w) {
      load.emplace_back([&, w](std::stop_token stop) {
        std::mt19937_64 random(static_cast<std::uint64_t>(w) + 1);
        const Metadata by{"", "calendar-assistant", "soak", "", ""};
        paced(stop, s.rate / s.writers, [&] {
          const int u = static_cast<int>(random() % kUsers);
          auto [key, value] = calendar_change(random());
          const auto t = Clock::now();
          try {
            (void)store.set(user_id(u), key, std::move(value), by);
            const double ms = ms_since(t);
            acked[static_cast<std::size_t>(u)].fetch_add(1);
            const std::lock_guard lock(interval.mutex);
            interval.set_ms.push_back(ms);
          } catch (const std::exception& e) {
            ++set_errors;
            interval.error(std::string("set: ") + e.what());
          }
        });
      });
    }
    load.emplace_back([&](std::stop_token stop) {
      std::mt19937_64 random(1000);
      paced(stop, kReadsPerSecond, [&] {
        const auto t = Clock::now();
        try {
          const auto all = store.get_all(user_id(static_cast<int>(random() % kUsers)));
          const double ms = ms_since(t);
          if (all.size() < 6) throw std::runtime_error("get_all returned too few keys");
          ++gets;
          const std::lock_guard lock(interval.mutex);
          interval.get_ms.push_back(ms);
        } catch (const std::exception& e) {
          ++get_errors;
          interval.error(std::string("get_all: ") + e.what());
        }
      });
    });

    const auto interval_length =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.interval));
    const int intervals = std::max(1, static_cast<int>(std::lround(s.seconds / s.interval)));
    auto last = started;
    for (int k = 1; k <= intervals; ++k) {
      std::this_thread::sleep_until(started + k * interval_length);
      std::vector<double> set_ms, get_ms;
      std::int64_t errors = 0;
      {
        const std::lock_guard lock(interval.mutex);
        set_ms.swap(interval.set_ms);
        get_ms.swap(interval.get_ms);
        errors = interval.errors;
        interval.errors = 0;
        if (out.first_error.empty()) out.first_error = interval.first_error;
      }
      const auto now = Clock::now();
      Row r;
      r.elapsed = std::chrono::duration<double>(now - started).count();
      r.sets_per_s =
          static_cast<double>(set_ms.size()) / std::chrono::duration<double>(now - last).count();
      last = now;
      r.set_p50 = percentile(set_ms, 0.50);
      r.set_p99 = percentile(set_ms, 0.99);
      r.set_max = set_ms.empty() ? 0 : set_ms.back();
      r.get_p50 = percentile(get_ms, 0.50);
      r.get_p99 = percentile(get_ms, 0.99);
      r.gets = static_cast<std::int64_t>(get_ms.size());
      r.lag = projection_lag(store, interval);
      r.rss_mib = rss_mib();
      r.errors = errors;
      rows.push_back(r);
      tsv << tsv_line(r) << std::flush;
      std::fprintf(stderr, "%s", tsv_line(r).c_str());
    }
    out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  }  // the load threads stop and join here
  {
    const std::lock_guard lock(interval.mutex);
    if (out.first_error.empty()) out.first_error = interval.first_error;
  }

  // The projector catches up once the load stops.
  const auto stopped = Clock::now();
  while (Clock::now() - stopped < std::chrono::seconds(60)) {
    if (projection_lag(store, interval) == 0) {
      out.catch_up_seconds = std::chrono::duration<double>(Clock::now() - stopped).count();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  projector.request_stop();
  projector.join();

  // Every acknowledged write is in the log.
  const auto counts = events_per_user(url);
  for (int u = 0; u < kUsers; ++u) {
    const auto a = acked[static_cast<std::size_t>(u)].load();
    out.acknowledged += a;
    out.in_log += counts[static_cast<std::size_t>(u)];
    if (a != counts[static_cast<std::size_t>(u)]) ++out.users_mismatched;
  }
  out.snapshots = query_count(url, "SELECT count(*) FROM prefstore.snapshots");
  out.value_counts = query_count(url, "SELECT count(*) FROM prefstore.preference_value_counts");
  out.set_errors = set_errors;
  out.get_errors = get_errors;
  out.gets = gets;

  // The verdict, from the rows: thirds of the run (the first third is the warm-up for memory).
  const std::size_t n = rows.size();
  const std::size_t third = std::max<std::size_t>(1, n / 3);
  std::vector<double> rss_second, rss_last;
  std::int64_t lag_first = 0, lag_last = 0, lag_max = 0;
  for (std::size_t i = 0; i < n; ++i) {
    lag_max = std::max(lag_max, rows[i].lag);
    if (i < third) lag_first = std::max(lag_first, rows[i].lag);
    if (i >= third && i < n - third) rss_second.push_back(rows[i].rss_mib);
    if (i >= n - third) {
      rss_last.push_back(rows[i].rss_mib);
      lag_last = std::max(lag_last, rows[i].lag);
    }
  }
  if (rss_second.empty()) rss_second.push_back(rows.front().rss_mib);
  const double rss_mid = median(rss_second), rss_end = median(rss_last);
  const double memory_growth = rss_mid > 0 ? (rss_end - rss_mid) / rss_mid : 0;
  const std::int64_t lag_limit =
      std::max(kLagFloor, static_cast<std::int64_t>(kLagFactor * static_cast<double>(lag_first)));
  const bool memory_ok = memory_growth < kMaxMemoryGrowth;
  const bool lag_ok = lag_last <= lag_limit && out.catch_up_seconds >= 0;
  const bool log_ok = out.users_mismatched == 0 && out.acknowledged == out.in_log;
  const bool errors_ok = out.set_errors == 0 && out.get_errors == 0 && out.first_error.empty();
  const bool passed = memory_ok && lag_ok && log_ok && errors_ok && n >= 3;

  double sets_total = 0;
  for (const auto& r : rows) sets_total += r.sets_per_s;
  std::ostringstream md;
  md << "## Soak: steady load with the projectors running\n\n"
     << "Written by `make soak` (bench/soak.cpp, scripts/soak.sh) on a throwaway local server.\n\n"
     << fmt("Settings: %.0f s of load, one row every %.0f s; %d writer threads doing "
            "`Store::set()` at a paced %.0f sets/s in total over %d users of the calendar "
            "assistant (six keys, strict mode); one reader doing `get_all()` at %.0f/s; a "
            "`ProjectionRunner` (value counts, snapshot writer every %lld events of a user) in "
            "its own thread on its own pool, as a service runs it. Latency is the time of "
            "the call as the client sees it; lag is the log's last position minus the "
            "slowest projection's checkpoint, read through `Store::status()` at the end of "
            "each interval; RSS is the whole client process (VmRSS: store, projector, "
            "threads). The writers do not announce their appends (the default, "
            "`StoreOptions::announce_appends`), so the runner finds them at its poll every "
            "500 ms: a lag of up to half a second of writes is that poll.\n\n",
            s.seconds, s.interval, s.writers, s.rate, kUsers, kReadsPerSecond,
            static_cast<long long>(kSnapshotEvery));
  md << "| elapsed (s) | sets/s | set p50 (ms) | set p99 (ms) | set max (ms) | get_all p50 (ms) | "
        "get_all p99 (ms) | lag (events) | RSS (MiB) | errors |\n"
     << "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  const std::size_t step = (n + 59) / 60;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % step == 0 || i + 1 == n) md << md_line(rows[i]);
  }
  if (step > 1) md << "\n(Every " << step << "th interval shown; soak.tsv has them all.)\n";
  md << "\n"
     << fmt("Achieved %.1f sets/s on average (target %.0f), %lld get_all calls. "
            "Errors: %lld in set, %lld in get_all.\n\n",
            sets_total / static_cast<double>(n), s.rate, static_cast<long long>(out.gets),
            static_cast<long long>(out.set_errors), static_cast<long long>(out.get_errors));
  if (!out.first_error.empty()) md << "First error: `" << out.first_error << "`\n\n";
  md << "### Verdict\n\n"
     << fmt("- Memory: median RSS %.1f MiB in the second third of the run, %.1f MiB in the "
            "last third: %+.1f%% (threshold: less than %.0f%% growth; the first third is the "
            "warm-up). %s\n",
            rss_mid, rss_end, 100 * memory_growth, 100 * kMaxMemoryGrowth,
            memory_ok ? "No growth." : "GROWTH.")
     << fmt("- Projection lag: at most %lld events in the first third, %lld in the last "
            "third, %lld overall (threshold: the last third at most max(%.0f x the first "
            "third, %lld events)); ",
            static_cast<long long>(lag_first), static_cast<long long>(lag_last),
            static_cast<long long>(lag_max), kLagFactor, static_cast<long long>(kLagFloor));
  if (out.catch_up_seconds >= 0) {
    md << fmt("caught up %.1f s after the load stopped. ", out.catch_up_seconds);
  } else {
    md << "did NOT catch up within 60 s after the load stopped. ";
  }
  md << (lag_ok ? "Bounded.\n" : "NOT BOUNDED.\n")
     << fmt("- Log: %lld acknowledged sets, %lld events in the users' streams, %lld users "
            "whose count differs. %s\n",
            static_cast<long long>(out.acknowledged), static_cast<long long>(out.in_log),
            static_cast<long long>(out.users_mismatched),
            log_ok ? "Every acknowledged write is in the log." : "MISMATCH.")
     << fmt("- Projections: %lld snapshots written, %lld rows in preference_value_counts.\n",
            static_cast<long long>(out.snapshots), static_cast<long long>(out.value_counts))
     << "\n**" << (passed ? "No growth" : "FAILED") << "**"
     << (passed ? ": memory and lag stayed flat under steady load, without errors.\n"
                : (n < 3 ? ": too few intervals to judge (at least 3).\n"
                         : ": see the lines above.\n"));
  std::ofstream(s.out_dir / "soak.md") << md.str();
  std::cerr << md.str();
  return passed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  try {
    if (argc > 1) s.seconds = std::stod(argv[1]);
    if (argc > 2) s.out_dir = argv[2];
    if (argc > 3) s.interval = std::stod(argv[3]);
    if (argc > 4) s.rate = std::stod(argv[4]);
    if (argc > 5) s.writers = std::stoi(argv[5]);
  } catch (const std::exception&) {
    s.seconds = -1;
  }
  if (s.seconds <= 0 || s.interval <= 0 || s.rate <= 0 || s.writers < 1) {
    std::cerr << "usage: prefstore_soak [SECONDS [OUT_DIR [INTERVAL [RATE [WRITERS]]]]]\n";
    return 2;
  }
  std::filesystem::create_directories(s.out_dir);
  int rc = 0;
  const int server_rc = bench::with_throwaway_server(
      "soak", [&](storage::LocalServer& server, const std::filesystem::path& /*dir*/) {
        rc = run(s, server);
      });
  return server_rc != 0 ? server_rc : rc;
}
