// Shared pieces of prefstore's benchmark programs: a child process per measured step (so its
// peak memory is its own), a throwaway local server, and the calendar log used as data.
#pragma once

#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/storage/migrations.hpp"

namespace prefstore::bench {

using Clock = std::chrono::steady_clock;

struct Measure {
  std::string name;
  double seconds = 0;
  long peak_kib = 0;
  std::int64_t events = 0;
};

// Runs job in a child process; returns its wall time and peak resident memory.
inline Measure in_child(const std::string& name, std::int64_t events,
                        const std::function<void()>& job) {
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

inline storage::PoolOptions pool_options(const std::string& url) {
  storage::PoolOptions o;
  o.conninfo = url;
  o.max_size = 4;
  return o;
}

// Options of a throwaway, non-durable local server in a new folder under /tmp (which the caller
// removes, with the cluster, when done).
inline storage::LocalServerOptions throwaway_server(const std::string& name) {
  std::string dir = "/tmp/prefstore-" + name + "-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  chmod(dir.c_str(), 0755);
  auto local = storage::local_server_options_from_environment();
  local.home = dir;
  local.durable = false;
  local.settings = {{"shared_buffers", "512MB"}, {"max_wal_size", "4GB"}};
  return local;
}

// Runs a benchmark program's body against a throwaway, migrated local server (folder `dir`),
// then stops the server and removes its folders. Returns the program's exit code: 1 (with the
// message on stderr) when the body throws.
inline int with_throwaway_server(
    const std::string& program,
    const std::function<void(storage::LocalServer&, const std::filesystem::path& dir)>& body) {
  const auto local = throwaway_server(program);
  storage::LocalServer server(local);
  int rc = 0;
  try {
    server.start();
    {
      storage::ConnectionPool pool(pool_options(server.url()));
      (void)storage::MigrationRunner(pool).migrate();
    }
    body(server, local.home);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prefstore_%s: %s\n", program.c_str(), e.what());
    rc = 1;
  }
  try {
    server.stop(storage::StopMode::immediate);
  } catch (...) {
  }
  std::error_code ec;
  std::filesystem::remove_all(server.cluster_dir(), ec);
  std::filesystem::remove_all(local.home, ec);
  return rc;
}

// Event i of the calendar log: users changing their time zone, meeting length and reminder
// channels.
inline storage::BulkEvent calendar_event(std::int64_t i, const std::string& user) {
  static const std::vector<std::string> zones = {"Europe/London", "Europe/Berlin",
                                                 "Asia/Tokyo",    "America/New_York",
                                                 "UTC",           "Australia/Sydney"};
  switch (i % 4) {
    case 0:
      return {user, {{}, PreferenceSet{"calendar.timezone", zones[i % 6]}}, {}};
    case 1:
      return {
          user,
          {{}, PreferenceSet{"calendar.default_meeting_minutes", std::int64_t{15 * (1 + i % 4)}}},
          {}};
    case 2:
      return {user,
              {{}, PreferenceSet{"notifications.channels", StringList{i % 3 ? "email" : "push"}}},
              {}};
    default:
      return {user, {{}, PreferenceReset{"calendar.timezone"}}, {}};
  }
}

// Imports `events` events of 20,000 users in bulk, `per_statement` at a time.
inline void import_calendar_log(storage::EventLog& log, std::int64_t events,
                                std::int64_t per_statement = 50000) {
  for (std::int64_t start = 0; start < events; start += per_statement) {
    std::vector<storage::BulkEvent> chunk;
    for (std::int64_t i = start; i < std::min(events, start + per_statement); ++i) {
      chunk.push_back(calendar_event(i, "user-" + std::to_string((i * 7919) % 20000)));
    }
    (void)log.append_bulk(chunk);
  }
}

// The raw baseline of a log scan: runs `COPY (select) TO STDOUT` and reads every row on the
// client, as a program reading the log without prefstore would. Throws when the row count is not
// `expected_rows`.
inline void copy_to_client(const std::string& url, const std::string& select,
                           std::int64_t expected_rows) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, ("COPY (" + select + ") TO STDOUT").c_str());
  PQclear(r);
  char* row = nullptr;
  std::int64_t rows = 0;
  while (PQgetCopyData(conn, &row, 0) > 0) {
    ++rows;
    PQfreemem(row);
  }
  PQclear(PQgetResult(conn));
  PQfinish(conn);
  if (rows != expected_rows) {
    throw std::runtime_error("COPY returned " + std::to_string(rows) + " rows, not " +
                             std::to_string(expected_rows));
  }
}

// A Markdown table of measures, each with its rate as a ratio to the first one's (the baseline).
inline std::string results_table(const std::vector<Measure>& measures, const char* first_column) {
  const double baseline_rate = static_cast<double>(measures.at(0).events) / measures[0].seconds;
  std::string table = std::string("| ") + first_column +
                      " | events | seconds | events/s | ratio to baseline | peak memory (MiB) |\n"
                      "| --- | --- | --- | --- | --- | --- |\n";
  char line[512];
  for (const auto& m : measures) {
    const double rate = static_cast<double>(m.events) / m.seconds;
    std::snprintf(line, sizeof line, "| %s | %lld | %.1f | %.0f | %.2f | %.1f |\n", m.name.c_str(),
                  static_cast<long long>(m.events), m.seconds, rate, rate / baseline_rate,
                  static_cast<double>(m.peak_kib) / 1024.0);
    table += line;
  }
  return table;
}

// Prints one "ratio:" line per measure after the first (the baseline) on stderr: its rate as a
// ratio to the baseline's against `target`, and its peak memory against `max_mib`.
inline void print_ratios(const std::vector<Measure>& measures, double target, double max_mib) {
  const double baseline_rate = static_cast<double>(measures.at(0).events) / measures[0].seconds;
  for (std::size_t i = 1; i < measures.size(); ++i) {
    const auto& m = measures[i];
    const double ratio = static_cast<double>(m.events) / m.seconds / baseline_rate;
    const double mib = static_cast<double>(m.peak_kib) / 1024.0;
    std::fprintf(
        stderr,
        "ratio: %-45s %.2f of the ordered scan (target %.2f): %s; peak %.0f MiB (under %.0f): %s\n",
        m.name.c_str(), ratio, target, ratio >= target ? "met" : "MISSED", mib, max_mib,
        mib < max_mib ? "met" : "MISSED");
  }
}

}  // namespace prefstore::bench
