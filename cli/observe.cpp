#include "observe.hpp"

#include <iomanip>
#include <iostream>
#include <sstream>

#include "common.hpp"
#include "output.hpp"
#include "prefstore/store.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::cli {
namespace {

std::string fixed1(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << v;
  return out.str();
}

double age_seconds(const storage::DatabaseStatus& d, Timestamp t) {
  return static_cast<double>((d.server_time - t).count()) / 1e6;
}

void print_text(const StoreStatus& s) {
  std::cout << "database: " << s.database << (s.local_server ? " (local server)" : "") << "\n";
  if (!s.reachable) {
    std::cout << "reachable: no\n";
  } else if (!s.database_status) {
    std::cout << "schema: unreadable (" << s.error << ")\n";
  } else {
    const storage::DatabaseStatus& d = *s.database_status;
    std::cout << "schema: version " << s.schema_version << " (this build knows "
              << s.build_schema_version << ", " << s.pending_migrations << " pending)\n";
    std::cout << "log: " << d.events << " events in " << d.streams
              << " streams, newest at position " << d.last_position << "\n";
    if (d.newest_snapshot) {
      std::cout << "newest snapshot: " << d.newest_snapshot->stream_id << " version "
                << d.newest_snapshot->stream_version << " at "
                << format_timestamp(d.newest_snapshot->created_at) << " ("
                << fixed1(age_seconds(d, d.newest_snapshot->created_at)) << " s ago; "
                << d.snapshots << " snapshots)\n";
    } else {
      std::cout << "newest snapshot: none\n";
    }
    if (d.newest_backup) {
      std::cout << "newest backup: " << d.newest_backup->file << " at "
                << format_timestamp(d.newest_backup->recorded_at) << " ("
                << fixed1(age_seconds(d, d.newest_backup->recorded_at)) << " s ago; positions "
                << d.newest_backup->since_position << " to " << d.newest_backup->until_position
                << ", " << d.newest_backup->events << " events)\n";
    } else {
      std::cout << "newest backup: none recorded\n";
    }
    Table table({"PROJECTION", "STATE", "POSITION", "LAG (EVENTS)", "LAG (SECONDS)", "LAST ERROR"});
    for (const ProjectionStatus& p : s.projections) {
      table.add({p.name, p.state, std::to_string(p.position), std::to_string(p.lag_events),
                 fixed1(p.lag_seconds), p.last_error.value_or("-")});
    }
    table.print(std::cout);
  }
  std::cout << "pool: " << s.pool.in_use << " in use, " << s.pool.idle << " idle of " << s.pool_max
            << "; " << s.pool.waiting << " waiting, " << s.pool.timeouts << " timeouts, "
            << s.pool.connect_failures << " failed connects\n";
  if (!s.standbys.empty()) {
    Table standbys({"STANDBY", "USABLE", "REPLAYED", "LAG (BYTES)", "LAG (SECONDS)", "PROBLEM"});
    for (const storage::StandbyStatus& st : s.standbys) {
      standbys.add({st.url, st.usable ? "yes" : "no", st.replayed ? to_string(*st.replayed) : "-",
                    st.lag_bytes >= 0 ? std::to_string(st.lag_bytes) : "-",
                    st.lag_seconds >= 0 ? fixed1(st.lag_seconds) : "-",
                    st.problem.empty() ? "-" : st.problem});
    }
    standbys.print(std::cout);
  }
  std::cout << s.verdict() << "\n";
}

void print_json(const StoreStatus& s) {
  std::ostringstream o;
  o << "{\"database\":" << json_string(s.database)
    << ",\"local_server\":" << (s.local_server ? "true" : "false")
    << ",\"reachable\":" << (s.reachable ? "true" : "false");
  if (!s.error.empty()) o << ",\"error\":" << json_string(s.error);
  o << ",\"healthy\":" << (s.healthy() ? "true" : "false")
    << ",\"verdict\":" << json_string(s.verdict()) << ",\"problems\":[";
  for (std::size_t i = 0; i < s.problems.size(); ++i) {
    o << (i ? "," : "") << json_string(s.problems[i]);
  }
  o << "]";
  if (s.database_status) {
    const storage::DatabaseStatus& d = *s.database_status;
    o << ",\"schema\":{\"version\":" << s.schema_version
      << ",\"build_version\":" << s.build_schema_version << ",\"pending\":" << s.pending_migrations
      << "}"
      << ",\"log\":{\"events\":" << d.events << ",\"streams\":" << d.streams
      << ",\"last_position\":" << d.last_position << "},\"snapshots\":" << d.snapshots;
    if (d.newest_snapshot) {
      o << ",\"newest_snapshot\":{\"stream_id\":" << json_string(d.newest_snapshot->stream_id)
        << ",\"stream_version\":" << d.newest_snapshot->stream_version
        << ",\"created_at\":" << json_string(format_timestamp(d.newest_snapshot->created_at))
        << ",\"age_seconds\":" << fixed1(age_seconds(d, d.newest_snapshot->created_at)) << "}";
    }
    if (d.newest_backup) {
      o << ",\"newest_backup\":{\"backup_id\":" << json_string(d.newest_backup->backup_id)
        << ",\"file\":" << json_string(d.newest_backup->file)
        << ",\"since_position\":" << d.newest_backup->since_position
        << ",\"until_position\":" << d.newest_backup->until_position
        << ",\"events\":" << d.newest_backup->events
        << ",\"recorded_at\":" << json_string(format_timestamp(d.newest_backup->recorded_at))
        << ",\"age_seconds\":" << fixed1(age_seconds(d, d.newest_backup->recorded_at)) << "}";
    }
    o << ",\"projections\":[";
    for (std::size_t i = 0; i < s.projections.size(); ++i) {
      const ProjectionStatus& p = s.projections[i];
      o << (i ? "," : "") << "{\"name\":" << json_string(p.name)
        << ",\"state\":" << json_string(p.state) << ",\"position\":" << p.position
        << ",\"lag_events\":" << p.lag_events << ",\"lag_seconds\":" << fixed1(p.lag_seconds)
        << ",\"last_error\":" << (p.last_error ? json_string(*p.last_error) : "null") << "}";
    }
    o << "]";
  }
  o << ",\"pool\":{\"max\":" << s.pool_max << ",\"in_use\":" << s.pool.in_use
    << ",\"idle\":" << s.pool.idle << ",\"waiting\":" << s.pool.waiting
    << ",\"timeouts\":" << s.pool.timeouts << ",\"connect_failures\":" << s.pool.connect_failures
    << "},\"standbys\":[";
  for (std::size_t i = 0; i < s.standbys.size(); ++i) {
    const storage::StandbyStatus& st = s.standbys[i];
    o << (i ? "," : "") << "{\"url\":" << json_string(st.url)
      << ",\"usable\":" << (st.usable ? "true" : "false")
      << ",\"replayed\":" << (st.replayed ? json_string(to_string(*st.replayed)) : "null")
      << ",\"lag_bytes\":" << st.lag_bytes << ",\"lag_seconds\":" << fixed1(st.lag_seconds)
      << ",\"problem\":" << json_string(st.problem) << "}";
  }
  o << "]}";
  std::cout << o.str() << "\n";
}

// The options of a read-only store that does not start the local server or migrate.
StoreOptions observing_options() {
  StoreOptions options = store_options(false, Task::read);
  options.migrate_on_open = false;
  options.start_local_server = false;
  options.pool.acquire_timeout = std::chrono::milliseconds(3000);
  options.pool.connect_timeout = std::chrono::seconds(3);
  return options;
}

}  // namespace

void ObserveCommands::add_to(CLI::App& app) {
  m_status = app.add_subcommand(
      "status",
      "The store's state and a one-line health verdict: schema, log, projections and their lag, "
      "pool, newest snapshot and backup. Exit 0 healthy, 5 database unreachable, 9 unhealthy");
  m_status->add_flag("--json", m_json, "One JSON object instead of text");
  m_status
      ->add_option("--max-lag-events", m_thresholds.max_lag_events,
                   "Unhealthy when a projection is further behind (negative: off)")
      ->capture_default_str();
  m_status
      ->add_option("--max-lag-seconds", m_thresholds.max_lag_seconds,
                   "Unhealthy when a projection's oldest unapplied event is older (0: off)")
      ->capture_default_str();
  m_status
      ->add_option("--max-backup-age", m_max_backup_age_hours,
                   "Hours: unhealthy when the newest backup is older or there is none "
                   "(default: backups are not judged)")
      ->check(CLI::PositiveNumber);
  m_status->add_flag("--require-projections", m_thresholds.require_projections,
                     "Unhealthy when an asynchronous projection has never run");
  m_metrics = app.add_subcommand(
      "metrics",
      "Print the store's metrics in the Prometheus text format (for a textfile collector or a "
      "scrape); prefstore_up 0 when the database cannot be reached");
}

std::optional<int> ObserveCommands::run() {
  if (m_status != nullptr && m_status->parsed()) {
    if (m_max_backup_age_hours > 0) {
      m_thresholds.max_backup_age =
          std::chrono::seconds(static_cast<std::int64_t>(m_max_backup_age_hours * 3600));
    }
    Store store(observing_options());
    const StoreStatus status = store.status(m_thresholds);
    if (m_json) {
      print_json(status);
    } else {
      print_text(status);
    }
    if (status.healthy()) return kOk;
    return status.reachable ? kUnhealthy : kUnavailable;
  }
  if (m_metrics != nullptr && m_metrics->parsed()) {
    Store store(observing_options());
    std::cout << store.metrics();
    return kOk;
  }
  return std::nullopt;
}

}  // namespace prefstore::cli
