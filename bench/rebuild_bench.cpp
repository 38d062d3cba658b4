// Rebuild and replay of a large log, each beside its raw baseline measured in the same run:
//   baseline: COPY (SELECT the events ORDER BY transaction_id, global_position) TO the client;
//   replay:   EventLog::read_all over the whole log (decoding every event);
//   rebuild:  rebuild_projection of preference_value_counts (shadow tables, then the swap).
// Each measured step runs in a child process, so its peak memory (ru_maxrss) is its own.
// Usage: prefstore_rebuild_bench [EVENTS] [RESULTS_FILE]   (default 1000000, stdout only)
#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/storage/migrations.hpp"

namespace {

using namespace prefstore;
using Clock = std::chrono::steady_clock;

struct Measure {
  std::string name;
  double seconds = 0;
  long peak_kib = 0;
  std::int64_t events = 0;
};

// Runs job in a child process; returns its wall time and peak resident memory.
Measure in_child(const std::string& name, std::int64_t events, const std::function<void()>& job) {
  const auto started = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      job();
      _exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s failed: %s\n", name.c_str(), e.what());
      _exit(1);
    }
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  Measure m{name, std::chrono::duration<double>(Clock::now() - started).count(), usage.ru_maxrss,
            events};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(name + " failed in its child process");
  }
  return m;
}

storage::PoolOptions pool_options(const std::string& url) {
  storage::PoolOptions o;
  o.conninfo = url;
  o.max_size = 4;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t events = argc > 1 ? std::stoll(argv[1]) : 1000000;
  const std::string results = argc > 2 ? argv[2] : "";
  std::string dir = "/tmp/prefstore-rebuild-bench-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return 1;
  chmod(dir.c_str(), 0755);
  auto local = storage::local_server_options_from_environment();
  local.home = dir;
  local.durable = false;
  local.settings = {{"shared_buffers", "512MB"}, {"max_wal_size", "4GB"}};
  storage::LocalServer server(local);
  int rc = 0;
  try {
    server.start();
    const std::string url = server.url();
    {
      storage::ConnectionPool pool(pool_options(url));
      (void)storage::MigrationRunner(pool).migrate();
    }
    // The log: users of the calendar assistant changing their time zone, meeting length and
    // reminder channels, imported in bulk, 50,000 events at a time.
    const auto import_started = Clock::now();
    {
      storage::ConnectionPool pool(pool_options(url));
      storage::EventLog log(pool);
      const std::vector<std::string> zones = {"Europe/London", "Europe/Berlin",
                                              "Asia/Tokyo",    "America/New_York",
                                              "UTC",           "Australia/Sydney"};
      for (std::int64_t start = 0; start < events; start += 50000) {
        std::vector<storage::BulkEvent> chunk;
        for (std::int64_t i = start; i < std::min(events, start + 50000); ++i) {
          const std::string user = "user-" + std::to_string((i * 7919) % 20000);
          switch (i % 4) {
            case 0:
              chunk.push_back({user, {{}, PreferenceSet{"calendar.timezone", zones[i % 6]}}, {}});
              break;
            case 1:
              chunk.push_back({user,
                               {{},
                                PreferenceSet{"calendar.default_meeting_minutes",
                                              std::int64_t{15 * (1 + i % 4)}}},
                               {}});
              break;
            case 2:
              chunk.push_back(
                  {user,
                   {{},
                    PreferenceSet{"notifications.channels", StringList{i % 3 ? "email" : "push"}}},
                   {}});
              break;
            default:
              chunk.push_back({user, {{}, PreferenceReset{"calendar.timezone"}}, {}});
          }
        }
        (void)log.append_bulk(chunk);
      }
    }
    const double import_seconds =
        std::chrono::duration<double>(Clock::now() - import_started).count();

    std::vector<Measure> measures;
    measures.push_back(in_child("baseline: COPY (ordered scan) TO client", events, [&] {
      PGconn* conn = PQconnectdb(url.c_str());
      PGresult* r = PQexec(conn,
                           "COPY (SELECT global_position, stream_id, stream_version, event_id, "
                           "event_type, schema_version, payload, metadata, recorded_at, "
                           "transaction_id FROM prefstore.events ORDER BY transaction_id, "
                           "global_position) TO STDOUT");
      PQclear(r);
      char* row = nullptr;
      std::int64_t rows = 0;
      int n = 0;
      while ((n = PQgetCopyData(conn, &row, 0)) > 0) {
        ++rows;
        PQfreemem(row);
      }
      PQclear(PQgetResult(conn));
      PQfinish(conn);
      if (rows != events)
        throw std::runtime_error("COPY returned " + std::to_string(rows) + " rows");
    }));
    measures.push_back(in_child("replay: EventLog::read_all, decoded", events, [&] {
      storage::ConnectionPool pool(pool_options(url));
      storage::EventLog log(pool);
      std::int64_t read = 0;
      storage::LogPosition at{};
      for (;;) {
        const auto next = log.read_all(
            at, 10000,
            [&read](const RecordedEvent&, storage::LogPosition) {
              ++read;
              return true;
            },
            5000);
        if (next == at) break;
        at = next;
      }
      if (read != events) throw std::runtime_error("replay read " + std::to_string(read));
    }));
    measures.push_back(in_child("rebuild: preference_value_counts", events, [&] {
      storage::ConnectionPool pool(pool_options(url));
      projections::ValueCountsProjection projection;
      projections::RebuildOptions options;
      options.batch_size = 5000;
      const auto done = projections::rebuild_projection(pool, projection, options);
      if (done.applied != events)
        throw std::runtime_error("rebuild applied " + std::to_string(done.applied));
    }));

    const double baseline_rate = static_cast<double>(events) / measures[0].seconds;
    char line[512];
    std::string table =
        "| scenario | events | seconds | events/s | ratio to baseline | peak memory (MiB) |\n"
        "| --- | --- | --- | --- | --- | --- |\n";
    for (const auto& m : measures) {
      const double rate = static_cast<double>(m.events) / m.seconds;
      std::snprintf(line, sizeof line, "| %s | %lld | %.1f | %.0f | %.2f | %.1f |\n",
                    m.name.c_str(), static_cast<long long>(m.events), m.seconds, rate,
                    rate / baseline_rate, static_cast<double>(m.peak_kib) / 1024.0);
      table += line;
    }
    std::snprintf(line, sizeof line,
                  "\nImport of the log (EventLog::append_bulk, 5,000 events a statement): %.1f s, "
                  "%.0f events/s.\n",
                  import_seconds, static_cast<double>(events) / import_seconds);
    table += line;
    std::cout << table;
    if (!results.empty()) std::ofstream(results) << table;
  } catch (const std::exception& e) {
    std::cerr << "prefstore_rebuild_bench: " << e.what() << "\n";
    rc = 1;
  }
  try {
    server.stop(storage::StopMode::immediate);
  } catch (...) {
  }
  std::error_code ec;
  std::filesystem::remove_all(server.cluster_dir(), ec);
  std::filesystem::remove_all(dir, ec);
  return rc;
}
