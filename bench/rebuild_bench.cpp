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

#include "bench_support.hpp"
#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/storage/migrations.hpp"

namespace {

using namespace prefstore;
using bench::Clock;
using bench::in_child;
using bench::Measure;
using bench::pool_options;

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t events = argc > 1 ? std::stoll(argv[1]) : 1000000;
  const std::string results = argc > 2 ? argv[2] : "";
  return bench::with_throwaway_server("rebuild_bench", [&](storage::LocalServer& server,
                                                           const std::filesystem::path& /*dir*/) {
    const std::string url = server.url();
    // The log: users of the calendar assistant changing their time zone, meeting length and
    // reminder channels, imported in bulk, 50,000 events at a time.
    const auto import_started = Clock::now();
    {
      storage::ConnectionPool pool(pool_options(url));
      storage::EventLog log(pool);
      bench::import_calendar_log(log, events);
    }
    const double import_seconds =
        std::chrono::duration<double>(Clock::now() - import_started).count();

    std::vector<Measure> measures;
    measures.push_back(in_child("baseline: COPY (ordered scan) TO client", events, [&] {
      bench::copy_to_client(url,
                            "SELECT global_position, stream_id, stream_version, event_id, "
                            "event_type, schema_version, payload, metadata, recorded_at, "
                            "transaction_id FROM prefstore.events ORDER BY transaction_id, "
                            "global_position",
                            events);
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

    bench::print_ratios(measures, 0.5, 256);
    std::string table = bench::results_table(measures, "scenario");
    char line[512];
    std::snprintf(line, sizeof line,
                  "\nImport of the log (EventLog::append_bulk, 5,000 events a statement): %.1f s, "
                  "%.0f events/s.\n",
                  import_seconds, static_cast<double>(events) / import_seconds);
    table += line;
    std::cout << table;
    if (!results.empty()) std::ofstream(results) << table;
  });
}
