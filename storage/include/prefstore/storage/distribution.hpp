// Distributed mode on Citus: prefstore's per-user tables become Citus tables distributed by
// stream_id and co-located, so that every statement for one user runs on one shard; the
// shared tables become reference tables. See docs/scaling.md.
// Thread-safety: free functions; each takes its own connection from the pool.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

// Prepares a Citus coordinator for prefstore's migrations: creates the citus extension when it
// is missing (a superuser's job) and prefstore's three roles with LOGIN (Citus opens its
// connections to the workers as the current role, so roles that sessions switch to with SET
// ROLE must be able to log in there; the workers' pg_hba.conf decides how). Idempotent. Throws
// UsageError when the citus library is not loaded (shared_preload_libraries) or no worker is
// registered, PermissionError when the login role may not create the extension or roles.
void prepare_distribution(ConnectionPool& pool);

struct DistributeOptions {
  // Moving a single-server store only: called, while the log is locked against writers, when
  // an asynchronous projection has not applied the whole log. It must catch the projections up
  // on connections of its own (ProjectionRunner::catch_up). Empty: such a store is refused.
  std::function<void()> catch_up;
};

// After the migrations: distributes streams, events, preferences_current, snapshots and
// preference_value_holders by stream_id (co-located with streams), makes
// preference_definitions, preference_value_counts, projection_checkpoints and backup_history
// reference tables, and installs the single-shard append function (prefstore.append_to_stream,
// run on the worker holding the user's shard). Idempotent: run it after every migration of a
// distributed store (`prefstore migrate --distributed`).
//
// On a store with events (moving a running single-server store): one transaction locks the log
// against writers (they wait, then go on, distributed), moves the rows to the shards (the moved
// events get transaction id 1: before every transaction of their worker) and turns each
// asynchronous projection's checkpoint into one per worker placed after the moved events. Every
// checkpoint must have applied the whole log first (see DistributeOptions::catch_up): UsageError
// naming those behind otherwise, or while a rebuild is under way; nothing is changed then.
void distribute(ConnectionPool& pool, const DistributeOptions& options = {});

// What distribute() has done in the database.
struct DistributionStatus {
  bool citus = false;                           // the citus extension is installed
  std::vector<std::string> distributed_tables;  // prefstore's tables distributed by stream_id
  std::vector<std::string> reference_tables;    // prefstore's reference tables
  int workers = 0;                              // active worker nodes
};
[[nodiscard]] DistributionStatus distribution_status(ConnectionPool& pool);

// Whether the database is a distributed prefstore (distribute() ran): one short query.
[[nodiscard]] bool is_distributed(ConnectionPool& pool);

// A Citus worker that holds shards, as the coordinator registered it.
struct CitusWorker {
  int group_id = 0;  // pg_dist_node.groupid: names the worker's projection checkpoints
  std::string host;
  int port = 0;
};

// The active workers that hold shards, by group id. Requires: the citus extension.
[[nodiscard]] std::vector<CitusWorker> citus_workers(ConnectionPool& pool);

}  // namespace prefstore::storage
