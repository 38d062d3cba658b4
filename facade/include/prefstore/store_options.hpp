// StoreOptions: the settings a service gives when it opens a Store. Every field has a default;
// an empty StoreOptions opens the database named by the environment, or the local server.
// Thread-safety: a plain value.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/projections/projection.hpp"
#include "prefstore/retry_policy.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/storage/standby_router.hpp"

namespace prefstore {

struct StoreOptions {
  // libpq connection string. Default std::nullopt: PREFSTORE_DATABASE_URL, else libpq's PG*
  // variables or service file, else prefstore's own local server (see `local`). Prefer the
  // environment over putting a password here.
  std::optional<std::string> database_url;
  // Connection pool settings; `pool.conninfo` is filled from the database chosen above. Behind
  // PgBouncer in transaction mode set pool.transaction_pooling (and leave pool.role empty).
  storage::PoolOptions pool;
  // Settings of the local server used when no database is configured. Default: from the
  // environment (PREFSTORE_HOME, PREFSTORE_LOCAL_USER, PREFSTORE_PG_BINDIR).
  storage::LocalServerOptions local = storage::local_server_options_from_environment();
  // Start the local server when it is the database and is not running. Default true; false
  // (for health checks, which must not start what they check) leaves it stopped: the store
  // opens, and calls fail with UnavailableError.
  bool start_local_server = true;
  // Apply pending migrations when the store opens (under the advisory lock, so several service
  // instances may start at once). Default true; false leaves the schema to `prefstore migrate`.
  // With pool.transaction_pooling (PgBouncer in transaction mode) a current schema is only
  // checked; pending migrations are refused with MigrationError (the lock is session-level):
  // run `prefstore migrate` against the server directly first.
  bool migrate_on_open = true;
  // Strict mode (default): writing a key that has no definition is a ValidationError.
  // Open mode (false): such keys are accepted as untyped (any value type, no constraints).
  bool strict = true;
  // How long the store trusts its cached copy of the definitions before reloading them (one
  // query). A key missing from the cache triggers a reload at once (at most every 100 ms).
  // Definitions written through this Store update the cache immediately. Default 5 s.
  std::chrono::milliseconds definitions_refresh{5000};
  // How writes (set, set_many, reset, define, deprecate) and the reads get, get_all, version
  // and history retry transient errors (retry_policy.hpp). Default: 6 attempts within 10 s.
  RetryPolicy retry;
  // Projections to run inline, in every write's transaction (their tables are current when the
  // write returns; a failing one fails the write). Each write then costs two round trips more.
  // Do not also run them asynchronously. Default: none (preferences_current is always inline).
  std::vector<std::shared_ptr<projections::Projection>> inline_projections;
  // Announce every write with a NOTIFY (channel prefstore_events), so that listening
  // asynchronous projection runners wake at once instead of at their next poll
  // (RunnerOptions::poll_interval, 500 ms). Default false: PostgreSQL serialises the commits of
  // notifying transactions, which halved the appends per second of 8 writers in
  // docs/performance.md. Turn it on when projection lag must stay well under the poll interval
  // and writes are few.
  bool announce_appends = false;
  // Distributed mode on Citus (docs/scaling.md): migrate() (and migrate_on_open) first prepares
  // the coordinator (the citus extension, LOGIN on prefstore's roles), then distributes the
  // per-user tables by stream_id and makes the shared ones reference tables. Requires a Citus
  // coordinator with workers as database_url. Default false. A store that is distributed
  // already is used as such whatever this says; this only decides what migrate() does.
  bool distributed = false;
  // Streaming standbys that may serve reads (get, get_all, history, version, audit, the as-of
  // reads): see storage/standby_router.hpp and docs/scaling.md. Writes, projectors and
  // migrations always use database_url, the primary. Default: none (PREFSTORE_STANDBY_URLS,
  // space-separated, fills urls when this is left empty).
  storage::StandbyOptions standbys;
  // Whether writes return AppendResult::consistency_token (one short statement more per write,
  // after the commit). Default std::nullopt: on when standbys are configured. Turn it on in a
  // service without standbys whose tokens are read by one with standbys.
  std::optional<bool> consistency_tokens;
};

// How a read may be served when the store has standbys (StoreOptions::standbys).
struct ReadOptions {
  // The read must see every write up to this token (AppendResult::consistency_token): a standby
  // serves it only once it has replayed the token's position (waiting up to
  // StandbyOptions::token_wait), else the primary does. Default none: any standby whose replay
  // lag is within StandbyOptions::max_lag may serve it (possibly missing the latest writes).
  std::optional<ConsistencyToken> after;
};

}  // namespace prefstore
