#include "prefstore/storage/distribution.hpp"

#include "distributed_mode.hpp"
#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/checkpoints.hpp"

namespace prefstore::storage {
namespace {

// Before the migrations: the extension, and the roles with LOGIN (created here when missing;
// migration 0001 creates them only when they do not exist, so it keeps these).
constexpr const char* kPrepareSql = R"sql(
DO $prepare$
DECLARE
    r text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        CREATE EXTENSION citus;
    END IF;
    FOREACH r IN ARRAY ARRAY['prefstore_owner', 'prefstore_writer', 'prefstore_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        ELSIF NOT (SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('ALTER ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$prepare$;
)sql";

// The single-shard append: one user's events, its streams row and its current-state rows in
// one call, which Citus runs on the worker holding the user's shard (create_distributed_function
// by p_stream_id). The same contract as the single-server append statement of event_log.cpp:
// p_events and p_changes as there, p_expected -1 for any version, 0 for no stream, N for
// exactly N; one row (stream, new version, last position, recorded_at in microseconds), none
// when the version check fails. Citus accepts only immutable functions in the SET of an
// upsert on a distributed table, so the clock is read into variables first.
constexpr const char* kAppendFunctionSql = R"sql(
CREATE OR REPLACE FUNCTION prefstore.append_to_stream(
    p_stream_id text, p_events jsonb, p_changes jsonb, p_expected bigint)
    RETURNS TABLE (stream_id text, new_version bigint, last_position bigint,
                   recorded_micros bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    n bigint := jsonb_array_length(p_events);
    v bigint;
    rec timestamptz;
    positions bigint[] := '{}';
    pos bigint;
    e record;
    c record;
    now_ts timestamptz := now();
    clock_ts timestamptz := clock_timestamp();
BEGIN
    IF p_expected < 0 THEN
        INSERT INTO prefstore.streams AS st
               (stream_id, version, created_at, updated_at, last_recorded_at)
        VALUES (p_stream_id, n, now_ts, now_ts, clock_ts)
        ON CONFLICT (stream_id) DO UPDATE
            SET version = st.version + excluded.version, updated_at = excluded.updated_at,
                last_recorded_at = greatest(excluded.last_recorded_at, st.last_recorded_at)
        RETURNING st.version, st.last_recorded_at INTO v, rec;
    ELSIF p_expected = 0 THEN
        INSERT INTO prefstore.streams AS st
               (stream_id, version, created_at, updated_at, last_recorded_at)
        VALUES (p_stream_id, n, now_ts, now_ts, clock_ts)
        ON CONFLICT (stream_id) DO NOTHING
        RETURNING st.version, st.last_recorded_at INTO v, rec;
    ELSE
        UPDATE prefstore.streams AS st
        SET version = st.version + n, updated_at = now_ts,
            last_recorded_at = greatest(clock_ts, st.last_recorded_at)
        WHERE st.stream_id = p_stream_id AND st.version = p_expected
        RETURNING st.version, st.last_recorded_at INTO v, rec;
    END IF;
    IF v IS NULL THEN
        RETURN;  -- the version check failed: no row
    END IF;

    -- One single-row statement per event and per change: Citus plans each as a fast-path
    -- router query executed on the local shard. (An INSERT .. SELECT from the JSON went through
    -- an intermediate result file and a local COPY: about 10 ms per append.)
    FOR e IN SELECT x, ord FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(x, ord)
             ORDER BY ord LOOP
        INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type,
                                      schema_version, payload, metadata, recorded_at)
        VALUES (p_stream_id, v - n + e.ord, (e.x->>'event_id')::uuid, e.x->>'event_type',
                (e.x->>'schema_version')::integer, e.x->'payload', e.x->'metadata', rec)
        RETURNING global_position INTO pos;
        positions := positions || pos;
    END LOOP;

    FOR c IN SELECT x FROM jsonb_array_elements(p_changes) AS t(x) LOOP
        IF c.x ? 'value' THEN
            INSERT INTO prefstore.preferences_current AS p
                   (stream_id, key, value_type, value, version, updated_at, updated_by,
                    last_position)
            VALUES (p_stream_id, c.x->>'key', c.x->>'type', c.x->'value',
                    v - n + (c.x->>'ord')::bigint, rec, NULLIF(c.x->>'actor', ''),
                    positions[(c.x->>'ord')::bigint])
            ON CONFLICT (stream_id, key) DO UPDATE
                SET value_type = excluded.value_type, value = excluded.value,
                    version = excluded.version, updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by, last_position = excluded.last_position;
        ELSE
            DELETE FROM prefstore.preferences_current
            WHERE stream_id = p_stream_id AND key = c.x->>'key';
        END IF;
    END LOOP;

    RETURN QUERY SELECT p_stream_id, v, positions[n], (extract(epoch FROM rec) * 1000000)::bigint;
END
$function$;
COMMENT ON FUNCTION prefstore.append_to_stream(text, jsonb, jsonb, bigint) IS
    'Distributed mode (Citus): appends one user''s events with its streams row and current '
    'state, on the worker holding the user''s shard. Created by prefstore migrate --distributed.';
)sql";

// Every event records the transaction id of the worker that stores it, whichever node sent the
// INSERT (a coordinator evaluates a column default itself): the per-worker commit-safe readers
// (WorkerLog) compare it with that worker's snapshot. A trigger runs on the shard's node.
constexpr const char* kNodeTransactionIdSql = R"sql(
CREATE OR REPLACE FUNCTION prefstore.set_node_transaction_id()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    -- While distribute() moves a single-server store's events to the shards, the rows get 1
    -- (the bootstrap transaction): they come before every transaction of the worker, and their
    -- old ids are another server's. The setting reaches the workers' copy (citus.propagate_set_commands).
    IF current_setting('prefstore.moving_store', true) = 'on' THEN
        NEW.transaction_id := '1'::xid8;
    ELSE
        NEW.transaction_id := pg_current_xact_id();
    END IF;
    RETURN NEW;
END
$function$;
COMMENT ON FUNCTION prefstore.set_node_transaction_id() IS
    'Distributed mode (Citus): BEFORE INSERT trigger of prefstore.events setting transaction_id '
    'to the id of the transaction on the node that stores the row (1 for the events of a '
    'single-server store moved by prefstore migrate --distributed).';
DO $trigger$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                   WHERE tgrelid = 'prefstore.events'::regclass
                     AND tgname = 'events_node_transaction_id') THEN
        SET LOCAL citus.enable_unsafe_triggers = on;
        CREATE TRIGGER events_node_transaction_id BEFORE INSERT ON prefstore.events
            FOR EACH ROW EXECUTE FUNCTION prefstore.set_node_transaction_id();
    END IF;
END
$trigger$;
)sql";

// Distributes what is not yet distributed; each call of Citus runs only when needed.
constexpr const char* kDistributeSql = R"sql(
DO $distribute$
DECLARE
    t text;
BEGIN
    -- Triggers on distributed tables (the append-only and hash-chain triggers of events) need
    -- this setting, in this session and in every later one of the database.
    SET LOCAL citus.enable_unsafe_triggers = on;
    EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                   WHERE logicalrelid = 'prefstore.streams'::regclass) THEN
        PERFORM create_distributed_table('prefstore.streams', 'stream_id');
    END IF;
    FOREACH t IN ARRAY ARRAY['prefstore.events', 'prefstore.preferences_current',
                             'prefstore.snapshots', 'prefstore.preference_value_holders'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                       WHERE logicalrelid = t::regclass) THEN
            PERFORM create_distributed_table(t, 'stream_id', colocate_with => 'prefstore.streams');
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['prefstore.preference_definitions',
                             'prefstore.preference_value_counts',
                             'prefstore.projection_checkpoints', 'prefstore.backup_history'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                       WHERE logicalrelid = t::regclass) THEN
            PERFORM create_reference_table(t);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_object
                   WHERE objid = 'prefstore.append_to_stream(text, jsonb, jsonb, bigint)'::regprocedure
                     AND distribution_argument_index IS NOT NULL) THEN
        PERFORM create_distributed_function(
            'prefstore.append_to_stream(text, jsonb, jsonb, bigint)', 'p_stream_id',
            colocate_with => 'prefstore.streams');
    END IF;
END
$distribute$;
)sql";

// The checkpoints of a single-server store, each with the number of events of the log it has not
// applied.
constexpr const char* kCheckpointsBehindSql = R"sql(
SELECT c.projection_name, c.state,
       (SELECT count(*) FROM prefstore.events e
        WHERE (e.transaction_id, e.global_position) > (c.last_transaction_id, c.last_position))
FROM prefstore.projection_checkpoints c
ORDER BY c.projection_name
)sql";

// The single-server checkpoints (name, state) once every one has applied the whole log, which
// is locked against writers. Their positions mean nothing on the workers: a projection behind
// the log could not tell which moved events it has applied. Calls options.catch_up (a few
// times, if another session holds a checkpoint) while some are behind; throws UsageError
// naming them if they stay behind, and while a rebuild is under way or was interrupted.
std::vector<std::pair<std::string, std::string>> caught_up_checkpoints(
    pqxx::work& tx, const DistributeOptions& options) {
  for (int attempt = 0;; ++attempt) {
    std::vector<std::pair<std::string, std::string>> out;
    std::string behind;
    for (const auto& row : tx.exec(kCheckpointsBehindSql)) {
      const auto name = row[0].as<std::string>();
      const auto state = row[1].as<std::string>();
      const auto missing = row[2].as<std::int64_t>();
      if (state == "rebuilding" || name.ends_with("__rebuild")) {
        throw UsageError("cannot move the store to distributed mode while a rebuild of " + name +
                         " is under way or was interrupted: finish it (prefstore projections "
                         "rebuild) first; nothing was changed");
      }
      if (missing > 0) {
        behind += (behind.empty() ? "" : ", ") + name + " (" + std::to_string(missing) +
                  " events not applied" + (state == "failed" ? ", failed" : "") + ")";
      }
      out.emplace_back(name, state);
    }
    if (behind.empty()) return out;
    if (!options.catch_up || attempt >= 3) {
      throw UsageError(
          "cannot move the store to distributed mode: asynchronous projections are behind the "
          "log: " +
          behind +
          ". Run prefstore projections catch-up (writers may keep running), then migrate "
          "--distributed again; nothing was changed");
    }
    options.catch_up();
  }
}

// Each single-server checkpoint becomes one per worker (<projection>__node<group>), placed after
// every moved event (transaction id 1, the last moved position), with its state; the old row
// goes. A projection with no checkpoint starts from zero on every worker, moved events included.
void seed_lanes(pqxx::work& tx, const std::vector<std::pair<std::string, std::string>>& checkpoints,
                std::int64_t moved_up_to) {
  for (const auto& [name, state] : checkpoints) {
    if (moved_up_to > 0) {
      tx.exec_params(
          "INSERT INTO prefstore.projection_checkpoints "
          "(projection_name, last_transaction_id, last_position, state) "
          "SELECT $1 || $4 || n.groupid, '1'::xid8, $2::bigint, $3 "
          "FROM pg_catalog.pg_dist_node n WHERE n.isactive AND n.noderole = 'primary' "
          "AND n.shouldhaveshards AND n.groupid > 0",
          name, moved_up_to, state, std::string(kLaneSuffix));
    }
    tx.exec_params("DELETE FROM prefstore.projection_checkpoints WHERE projection_name = $1", name);
  }
}

// Each worker's position sequence goes past the largest position of its range in the log, so
// its appends do not repeat them. Citus gives worker group g the positions from g * 2^48, and a
// moved log holds such positions when it is a restored backup of a distributed store. Run on
// the workers (each computes its own range) once the move has committed: the moved rows are
// visible there only then. A no-op when nothing was moved (a sequence is never behind the
// positions it drew).
void advance_worker_positions(PooledConnection& handle) {
  pqxx::nontransaction tx(detail::native(handle));
  const auto results = tx.exec(R"sql(
SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers($command$
SELECT pg_catalog.setval('prefstore.events_global_position_seq', m)
FROM (SELECT max(global_position) AS m FROM prefstore.events, pg_catalog.pg_dist_local_group g
      WHERE global_position >= g.groupid::bigint << 48
        AND global_position < (g.groupid::bigint + 1) << 48) AS r
WHERE m > (SELECT last_value FROM prefstore.events_global_position_seq)
$command$)
)sql");
  for (const auto& row : results) {
    if (!row[2].as<bool>()) {
      throw Error("the move committed, but advancing the position sequence of worker " +
                  row[0].as<std::string>() + ":" + row[1].as<std::string>() +
                  " failed: " + row[3].as<std::string>() +
                  "; run prefstore migrate --distributed again before writing");
    }
  }
}

}  // namespace

void prepare_distribution(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto loaded = tx.exec(
        "SELECT 'citus' = ANY (string_to_array(replace(current_setting("
        "'shared_preload_libraries'), ' ', ''), ','))");
    if (!loaded.at(0).at(0).as<bool>()) {
      throw UsageError(
          "distributed mode needs Citus: the server does not load it (add citus to "
          "shared_preload_libraries and restart it; Citus is installed from its package "
          "repository, or by scripts/install-citus.sh here)");
    }
    tx.exec(kPrepareSql);
    const auto workers = tx.exec("SELECT count(*) FROM pg_catalog.citus_get_active_worker_nodes()");
    if (workers.at(0).at(0).as<std::int64_t>() == 0) {
      throw UsageError(
          "distributed mode needs Citus workers: none is registered on this coordinator "
          "(SELECT citus_add_node(host, port) for each)");
    }
  } catch (...) {
    detail::rethrow_translated("preparing the database for distributed mode (Citus)");
  }
}

void distribute(ConnectionPool& pool, const DistributeOptions& options) {
  auto handle = pool.acquire();
  try {
    pqxx::work tx(detail::native(handle));
    // Moving a single-server store: lock the log against writers first (before this
    // transaction takes an id, which would hold back the projectors' commit-safe horizon).
    // SHARE mode, not EXCLUSIVE: the catch-up's inserts check their foreign keys to streams
    // with row locks, which EXCLUSIVE would make wait for this transaction.
    const bool moving = !tx.exec(
                               "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition "
                               "WHERE logicalrelid = 'prefstore.events'::regclass)")
                             .at(0)
                             .at(0)
                             .as<bool>();
    std::int64_t moved_up_to = 0;
    std::vector<std::pair<std::string, std::string>> checkpoints;  // name, state
    if (moving) {
      tx.exec("LOCK TABLE prefstore.streams, prefstore.events IN SHARE MODE");
      checkpoints = caught_up_checkpoints(tx, options);
      moved_up_to = tx.exec("SELECT coalesce(max(global_position), 0) FROM prefstore.events")[0][0]
                        .as<std::int64_t>();
      // The workers' copy of the rows marks them as moved (set_node_transaction_id).
      tx.exec("SET LOCAL citus.propagate_set_commands = 'local'");
      tx.exec("SET LOCAL prefstore.moving_store = 'on'");
    }
    tx.exec(kAppendFunctionSql);
    tx.exec(kNodeTransactionIdSql);
    tx.exec("SELECT prefstore.assign_owner()");
    tx.exec(kDistributeSql);
    if (moving) {
      tx.exec("SET LOCAL prefstore.moving_store = 'off'");
      seed_lanes(tx, checkpoints, moved_up_to);
    }
    tx.commit();
    // Idempotent, so every call repairs what an interrupted one left.
    advance_worker_positions(handle);
  } catch (...) {
    detail::rethrow_translated("distributing prefstore's tables (Citus)");
  }
}

DistributionStatus distribution_status(ConnectionPool& pool) {
  DistributionStatus out;
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    out.citus = tx.exec(
                      "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = "
                      "'citus')")
                    .at(0)
                    .at(0)
                    .as<bool>();
    if (!out.citus) return out;
    for (const auto& row : tx.exec(
             "SELECT logicalrelid::regclass::text, partmethod FROM pg_catalog.pg_dist_partition "
             "WHERE logicalrelid::regclass::text LIKE 'prefstore.%' ORDER BY 1")) {
      (row[1].as<std::string>() == "n" ? out.reference_tables : out.distributed_tables)
          .push_back(row[0].as<std::string>());
    }
    out.workers =
        static_cast<int>(tx.exec("SELECT count(*) FROM pg_catalog.citus_get_active_worker_nodes()")
                             .at(0)
                             .at(0)
                             .as<std::int64_t>());
  } catch (...) {
    detail::rethrow_translated("reading the distribution (Citus)");
  }
  return out;
}

bool is_distributed(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    return detail::distributed_on(detail::native(handle));
  } catch (...) {
    detail::rethrow_translated("asking whether the store is distributed");
  }
}

std::vector<CitusWorker> citus_workers(ConnectionPool& pool) {
  std::vector<CitusWorker> out;
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    for (const auto& row :
         tx.exec("SELECT groupid, nodename, nodeport FROM pg_catalog.pg_dist_node "
                 "WHERE isactive AND noderole = 'primary' AND shouldhaveshards AND groupid > 0 "
                 "ORDER BY groupid")) {
      out.push_back({row[0].as<int>(), row[1].as<std::string>(), row[2].as<int>()});
    }
  } catch (...) {
    detail::rethrow_translated("listing the Citus workers");
  }
  return out;
}

}  // namespace prefstore::storage
