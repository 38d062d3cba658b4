// Shared pieces of prefstore's benchmark programs: a child process per measured step (so its
// peak memory is its own), a throwaway local server, and the calendar log used as data.
#pragma once

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

}  // namespace prefstore::bench
