// StoreStatus: a store's state for operators and health checks (`prefstore status`), with a
// verdict judged against HealthThresholds.
// Thread-safety: plain values; judge() is reentrant.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/database_status.hpp"
#include "prefstore/storage/standby_router.hpp"

namespace prefstore {

// When a store counts as unhealthy. The defaults suit a service whose projector runs
// continuously; a store without a running projector should raise the lag limits.
struct HealthThresholds {
  // An asynchronous projection further behind than this many events is unhealthy. Default
  // 10,000; a negative value turns the check off.
  std::int64_t max_lag_events = 10000;
  // ... or whose oldest unapplied event is older than this. Default 300 s; 0 or less: off.
  double max_lag_seconds = 300;
  // The newest backup written from this database must be younger than this (a store never
  // backed up fails it). Default std::nullopt: backups are reported but not judged.
  std::optional<std::chrono::seconds> max_backup_age;
  // Judge projections that have never run (no checkpoint yet)? Default false: a store may run
  // without asynchronous projectors; they are listed as "never run".
  bool require_projections = false;
};

// One asynchronous projection as status() sees it.
struct ProjectionStatus {
  std::string name;
  // idle, running, stopped, failed, rebuilding; "never run" without a checkpoint.
  std::string state;
  std::int64_t position = 0;              // global position applied up to
  std::int64_t lag_events = 0;            // events of the log not applied yet
  double lag_seconds = 0;                 // age of the oldest of them; 0 when caught up
  std::optional<std::string> last_error;  // while failed: the event and the error
  bool never_run = false;                 // no checkpoint yet (lag_events is the whole log)
};

// What status() found, and its verdict.
struct StoreStatus {
  std::string database;          // connection string, password hidden
  bool local_server = false;     // prefstore's own local server
  bool reachable = false;        // the status could be read from the database
  std::string error;             // why not, when !reachable (or why the schema could not be read)
  int schema_version = 0;        // applied in the database
  int build_schema_version = 0;  // newest migration this build knows
  int pending_migrations = 0;    // known to this build, not applied
  std::optional<storage::DatabaseStatus> database_status;
  std::vector<ProjectionStatus> projections;
  storage::PoolStats pool;
  std::size_t pool_max = 0;
  // The standbys that may serve reads (StoreOptions::standbys), each just asked for its replay
  // position and lag. A standby that is down or too far behind is skipped by reads (the primary
  // serves them), so it does not make the store unhealthy; its problem says why.
  std::vector<storage::StandbyStatus> standbys;
  // The verdict: problems empty means healthy.
  std::vector<std::string> problems;

  [[nodiscard]] bool healthy() const noexcept { return problems.empty(); }
  // One line: "healthy" or "unhealthy: problem; problem".
  [[nodiscard]] std::string verdict() const;
};

// Fills status.problems from the rest of status and thresholds: unreachable database, schema
// missing, pending or newer than this build, a failed projection, a projection past a lag
// limit, a missing or too old backup (when judged).
void judge(StoreStatus& status, const HealthThresholds& thresholds);

}  // namespace prefstore
