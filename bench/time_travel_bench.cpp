// Time travel and recovery benchmarks, each beside its raw baseline measured in the same run:
//   backup and restore of a large log against COPY (SELECT the events ORDER BY global_position)
//   TO the client, with each step's peak memory;
//   as-of reads (Store::state_as_of) of users with 10, 1,000 and 100,000 events, with the
//   snapshot policy writing a snapshot every 100 events, and the same reads without snapshots.
// Usage: prefstore_time_travel_bench [EVENTS] [RESULTS_FILE]   (default 1000000, stdout only)
#include <libpq-fe.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <random>

#include "bench_support.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/snapshot_writer.hpp"
#include "prefstore/storage/backup.hpp"
#include "prefstore/storage/migrations.hpp"
#include "prefstore/store.hpp"

namespace {

using namespace prefstore;
using bench::Clock;
using bench::in_child;
using bench::Measure;
using bench::pool_options;

void exec_sql(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  const std::string error = PQerrorMessage(conn);
  PQclear(r);
  PQfinish(conn);
  if (!ok) throw std::runtime_error(sql + ": " + error);
}

struct Latency {
  double median_us = 0;
  double p99_us = 0;
  double replayed = 0;  // mean events replayed after the snapshot
};

Latency measure_reads(Store& store, const std::string& user, std::int64_t versions,
                      const std::vector<Timestamp>& times, int reads) {
  std::mt19937_64 random(42);
  std::vector<double> us;
  double replayed = 0;
  for (int i = 0; i < reads; ++i) {
    const AsOf at = i % 2 == 0
                        ? AsOf::at_version(1 + static_cast<std::int64_t>(random() % versions))
                        : AsOf::at_time(times[random() % times.size()]);
    const auto started = Clock::now();
    const auto state = store.state_as_of(user, at);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started).count());
    replayed += static_cast<double>(state.events_replayed);
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 99 / 100], replayed / reads};
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t events = argc > 1 ? std::stoll(argv[1]) : 1000000;
  const std::string results = argc > 2 ? argv[2] : "";
  const std::string asof_tsv = argc > 3 ? argv[3] : "";  // as-of latency against history
  return bench::with_throwaway_server("time_travel_bench", [&](storage::LocalServer& server,
                                                               const std::filesystem::path& dir) {
    const std::string url = server.url();
    {
      storage::ConnectionPool pool(pool_options(url));
      storage::EventLog log(pool);
      bench::import_calendar_log(log, events);
    }
    const std::filesystem::path file = dir / "bench.psb";
    std::vector<Measure> measures;
    measures.push_back(
        in_child("baseline: COPY (SELECT events ORDER BY position) TO client", events, [&] {
          bench::copy_to_client(url,
                                "SELECT global_position, stream_id, stream_version, event_id, "
                                "event_type, schema_version, payload, metadata, recorded_at FROM "
                                "prefstore.events ORDER BY global_position",
                                events);
        }));
    measures.push_back(in_child("backup create (file, chunks of 1,000)", events, [&] {
      storage::ConnectionPool pool(pool_options(url));
      const auto summary = storage::create_backup(pool, file);
      if (summary.trailer.event_count != events) throw std::runtime_error("backup count");
    }));
    measures.push_back(in_child("backup verify", events, [&] {
      const auto result = storage::verify_backup(file);
      if (!result.ok || result.events != events) throw std::runtime_error(result.problem);
    }));
    exec_sql(url, "CREATE DATABASE restored");
    measures.push_back(in_child("backup restore (with preferences_current)", events, [&] {
      StoreOptions o;
      o.database_url = server.url("restored");
      Store store(o);
      const auto summary = store.restore_backup(file);
      if (summary.events != events) throw std::runtime_error("restore count");
    }));
    const auto file_bytes = std::filesystem::file_size(file);

    // As-of reads: three users with 10, 1,000 and 100,000 events, appended 1,000 events a
    // statement (each statement has its own recorded_at).
    exec_sql(url, "CREATE DATABASE asof");
    StoreOptions o;
    o.database_url = server.url("asof");
    o.strict = false;
    Store store(o);
    const std::vector<std::pair<std::string, std::int64_t>> users = {
        {"history-10", 10}, {"history-1000", 1000}, {"history-100000", 100000}};
    {
      storage::EventLog log(store.pool());
      for (const auto& [user, n] : users) {
        for (std::int64_t start = 0; start < n; start += 1000) {
          std::vector<storage::BulkEvent> chunk;
          for (std::int64_t i = start; i < std::min(n, start + 1000); ++i) {
            chunk.push_back(bench::calendar_event(i, user));
          }
          (void)log.append_bulk(chunk);
        }
      }
    }
    std::map<std::string, std::vector<Timestamp>> times;
    for (const auto& [user, n] : users) {
      storage::UnitOfWork uow(store.pool());
      for (const auto& row :
           uow.exec("SELECT DISTINCT (extract(epoch FROM recorded_at) * 1000000)::bigint FROM "
                    "prefstore.events WHERE stream_id = $1",
                    {user})) {
        times[user].push_back(from_unix_micros(std::stoll(row[0].value())));
      }
    }
    std::string asof_table =
        "| user's events | snapshots | median (µs) | p99 (µs) | events replayed (mean) | "
        "median ratio to 10 events |\n| --- | --- | --- | --- | --- | --- |\n";
    char line[512];
    std::map<std::string, Latency> without;
    for (const auto& [user, n] : users) {
      without[user] = measure_reads(store, user, n, times[user], n >= 100000 ? 6 : 200);
    }
    {
      projections::RunnerOptions ro;
      ro.batch_size = 5000;
      projections::ProjectionRunner runner(
          store.pool(), {std::make_shared<projections::SnapshotProjection>(100)}, ro);
      (void)runner.catch_up();
    }
    std::map<std::string, Latency> with;
    for (const auto& [user, n] : users) {
      with[user] = measure_reads(store, user, n, times[user], 400);
    }
    for (const auto& [label, data] :
         {std::pair<const char*, std::map<std::string, Latency>*>{"every 100 events", &with},
          {"none", &without}}) {
      const double base = (*data)["history-10"].median_us;
      for (const auto& [user, n] : users) {
        const Latency& l = (*data)[user];
        std::snprintf(line, sizeof line, "| %lld | %s | %.0f | %.0f | %.1f | %.2f |\n",
                      static_cast<long long>(n), label, l.median_us, l.p99_us, l.replayed,
                      l.median_us / base);
        asof_table += line;
      }
    }

    const double ratio = with["history-100000"].median_us / with["history-10"].median_us;
    std::fprintf(stderr,
                 "ratio: %-45s %.2fx the median of the 10-event user (target within 3x): %s\n",
                 "as-of read, 100,000-event user", ratio, ratio <= 3.0 ? "met" : "MISSED");
    if (!asof_tsv.empty()) {
      std::ofstream tsv(asof_tsv);
      tsv << "# events\tmedian_us_snapshots\tp99_us_snapshots\tmedian_us_none\tp99_us_none\n";
      for (const auto& [user, n] : users) {
        tsv << n << '\t' << with[user].median_us << '\t' << with[user].p99_us << '\t'
            << without[user].median_us << '\t' << without[user].p99_us << '\n';
      }
    }

    std::string table = bench::results_table(measures, "step");
    std::snprintf(line, sizeof line, "\nBackup file: %.1f MiB (%.0f bytes per event).\n",
                  static_cast<double>(file_bytes) / (1024.0 * 1024.0),
                  static_cast<double>(file_bytes) / static_cast<double>(events));
    table += line;
    const std::string out = "### Backup and restore\n\n" + table +
                            "\n### As-of reads (Store::state_as_of, half by version, half by "
                            "time)\n\n" +
                            asof_table;
    std::cout << out;
    if (!results.empty()) std::ofstream(results) << out;
  });
}
