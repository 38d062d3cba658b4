// Store: a service's handle on prefstore. Set and read a user's preferences; every change is
// appended as an immutable event and the current state is projected in the same transaction,
// so a read after a successful write sees it. Opening it chooses the database, starts the local
// server when none is configured, builds the connection pool and (by default) migrates.
// Thread-safety: every member function may be called from any thread at once.
#pragma once

#include <boost/signals2/signal.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "prefstore/append_options.hpp"
#include "prefstore/as_of.hpp"
#include "prefstore/audit.hpp"
#include "prefstore/definition.hpp"
#include "prefstore/event.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/storage/backup.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/erasure.hpp"
#include "prefstore/storage/migrations.hpp"
#include "prefstore/storage/retention.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/store_options.hpp"
#include "prefstore/store_status.hpp"
#include "prefstore/time_travel.hpp"
#include "prefstore/value.hpp"
#include "prefstore/verify.hpp"

namespace prefstore {

// What a successful write appended, as told to on_appended subscribers.
struct AppendedEvents {
  std::string stream_id;
  AppendResult result;
  std::vector<EventData> events;
};

// A preference as a read returns it: the user's value, or the definition's default.
struct ResolvedPreference {
  Value value;
  bool is_default = false;               // true: the user has no value; this is the default
  std::optional<PreferenceEntry> entry;  // when set by the user: version, time, actor, position
};

class Store {
 public:
  // Opens the store. Throws UnavailableError when the database cannot be reached or the local
  // server cannot start, MigrationError when migrate_on_open is set and the schema cannot be
  // brought to this build's version, UsageError for invalid options.
  explicit Store(StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- writes: each validates everything first; on any error nothing is written ---

  // Sets one preference of a user. One round trip when the definitions are cached.
  // Throws ValidationError (bad user id, key, value or metadata; unknown key in strict mode),
  // VersionConflictError, ConflictError (reused event id), UnavailableError,
  // CommitInDoubtError (retry with the same options.event_ids is safe).
  AppendResult set(std::string_view user, std::string_view key, Value value,
                   const Metadata& metadata = {}, const AppendOptions& options = {});

  // Sets several preferences of a user atomically: all land or none does. Throws as set();
  // ValidationError when values is empty or names a key twice.
  AppendResult set_many(std::string_view user,
                        const std::vector<std::pair<std::string, Value>>& values,
                        const Metadata& metadata = {}, const AppendOptions& options = {});

  // Puts one preference of a user back to its default (appends PreferenceReset). Throws as set().
  AppendResult reset(std::string_view user, std::string_view key, const Metadata& metadata = {},
                     const AppendOptions& options = {});

  // Creates or replaces a definition (appends PreferenceDefined to the stream "$def:<key>", so
  // the schema has its own audit trail). Values already stored are not re-validated.
  // Throws ValidationError for an incoherent definition, and as set().
  AppendResult define(const PreferenceDefinition& definition, const Metadata& metadata = {},
                      const AppendOptions& options = {});

  // Marks a definition deprecated, with a note saying why and what to use instead. Values can
  // still be read and written. Throws ValidationError when the key has no definition.
  AppendResult deprecate(std::string_view key, std::string_view note, const Metadata& metadata = {},
                         const AppendOptions& options = {});

  // --- reads ---

  // The user's value of key, else the definition's default, else std::nullopt. One round trip.
  // Like every read below that takes ReadOptions, served by a standby when the store has one
  // that qualifies (StoreOptions::standbys, ReadOptions::after), else by the primary.
  [[nodiscard]] std::optional<Value> get(std::string_view user, std::string_view key,
                                         const ReadOptions& read = {});

  // Every preference of the user: the values the user set, and the defaults of every other
  // defined key that has one.
  [[nodiscard]] std::map<std::string, ResolvedPreference> get_all(std::string_view user,
                                                                  const ReadOptions& read = {});

  // The definition of key (freshly read), or std::nullopt.
  [[nodiscard]] std::optional<DefinitionEntry> definition(std::string_view key);

  // Every definition, by key (freshly read).
  [[nodiscard]] DefinitionCatalog definitions();

  // The user's events, oldest first, at most `limit` of them starting after version
  // `after_version`. Definition streams can be read with definition_stream_id(key).
  [[nodiscard]] std::vector<RecordedEvent> history(std::string_view user, std::int64_t limit = 1000,
                                                   std::int64_t after_version = 0,
                                                   const ReadOptions& read = {});

  // The stream's current version, 0 when it has no events.
  [[nodiscard]] std::int64_t version(std::string_view user, const ReadOptions& read = {});

  // One page of the audit trail: the events matching every filter of query, newest or oldest
  // first, with the cursor of the next page (absent at the end). Pages never repeat or skip an
  // event while writers append (audit.hpp). Throws ValidationError naming the field for a bad
  // filter, limit or cursor (also a cursor of other filters); UnavailableError. Read-only.
  [[nodiscard]] AuditPage audit(const AuditQuery& query, const ReadOptions& read = {});

  // --- time travel (see as_of.hpp for what a moment includes) ---

  // The user's own values as of a moment, from the newest intact snapshot at or before it plus
  // the events after it (the cost grows with those events, not with the history). Snapshots
  // found unusable are listed in bad_snapshots and rewritten from the events (best effort: a
  // failure to rewrite is not an error of the read).
  [[nodiscard]] storage::StreamState state_as_of(std::string_view user, const AsOf& as_of,
                                                 const ReadOptions& read = {});

  // get() and get_all() as of a moment: the user's values then, and for other keys the default
  // of the key's current definition.
  [[nodiscard]] std::optional<Value> get(std::string_view user, std::string_view key,
                                         const AsOf& as_of, const ReadOptions& read = {});
  [[nodiscard]] std::map<std::string, ResolvedPreference> get_all(std::string_view user,
                                                                  const AsOf& as_of,
                                                                  const ReadOptions& read = {});

  // What changed between two moments (from before to): per key, the values at both moments,
  // how many events touched it and the last one's time, actor and reason. Keys that changed
  // and came back are left out unless include_unchanged. Throws ValidationError when `to` is
  // before `from`.
  [[nodiscard]] StateDiff diff(std::string_view user, const AsOf& from, const AsOf& to,
                               bool include_unchanged = false, const ReadOptions& read = {});

  // Point-in-time restore: appends one PreferencesRestored event that puts the user's
  // preferences (or options.keys) back as they were at `to`; the history in between stays and
  // the restore is in the audit trail. Nothing is appended when nothing differs, or with
  // dry_run. Restored values are validated against today's definitions: a value that no longer
  // fits is a ValidationError naming the key (leave it out with options.keys). The plan is made
  // against the current version and appended with that expected version (re-planned up to 3
  // times when another write comes in between). Throws as set().
  RestorePlan restore(std::string_view user, const AsOf& to, const RestoreOptions& options = {});

  // Restores every user (not prefstore's own "$..." streams) to `to`, one user at a time in
  // stream id order, so memory stays bounded; a user whose restore fails is counted and listed
  // and the run goes on. progress is called every 100 users and at the end.
  RestoreAllProgress restore_all(
      const AsOf& to, const RestoreOptions& options = {},
      const std::function<void(const RestoreAllProgress&)>& progress = {});

  // --- snapshots ---

  // Takes a snapshot of the user's current state (unless one exists at that version); true when
  // one was written.
  bool snapshot(std::string_view user);
  // Takes a snapshot of every user; see storage::snapshot_all_streams.
  storage::SnapshotRunProgress snapshot_all(
      const std::function<void(const storage::SnapshotRunProgress&)>& progress = {});

  // --- notifications ---

  // Calls slot after every write of this Store that appended events (not for a retry that found
  // them stored), in the writing thread, after the commit. A slot that throws breaks nothing:
  // the write has succeeded and its result is returned; the exception is swallowed. Keep slots
  // short; disconnect through the returned connection. (Other processes' writes are announced
  // by NOTIFY on storage::kEventsChannel; asynchronous projections use that.)
  boost::signals2::connection on_appended(std::function<void(const AppendedEvents&)> slot);

  // --- backups (storage/backup.hpp) ---

  // Writes a logical backup of the log and the snapshots to `file`; see storage::create_backup.
  storage::BackupSummary backup(const std::filesystem::path& file,
                                const storage::BackupOptions& options = {});

  // Restores a backup file into this store's database in one transaction; see
  // storage::restore_backup. The store fills in the read models: preferences_current and this
  // store's inline projections are written in the restore's transaction, and the tables of the
  // asynchronous projections are emptied with their checkpoints (run `prefstore projections
  // catch-up` to fill them again). Fields reset_tables and on_events of options are ignored.
  storage::BackupRestoreSummary restore_backup(const std::filesystem::path& file,
                                               const storage::BackupRestoreOptions& options = {});

  // --- erasure (storage/erasure.hpp) ---

  // Right to erasure: removes the user's events, snapshots and current preferences through the
  // one privileged path and records who (options.actor), when, why (reason), how many events
  // and the chain head in a StreamErased record of the stream "$audit". Asynchronous read
  // models forget the user when they catch up. Backups taken afterwards do not contain the
  // user; older backups still do (docs/operations.md). Requires: the store's role may erase
  // (prefstore_owner). Throws ValidationError (invalid user id, blank reason, unknown user),
  // PermissionError, and the errors of any write; a retry with the same options.event_id
  // returns the first result with already_erased true.
  storage::ErasureRecord erase_user(std::string_view user, std::string_view reason,
                                    const storage::EraseOptions& options = {});

  // --- tamper evidence ---

  // Recomputes every stream's hash chain and checks versions, stream rows, decoding, baselines,
  // erasures and (unless options.check_projections is false) the read models against the fold
  // of the log, in one read-only snapshot; see storage/verify.hpp. Damage is reported, not
  // thrown. Throws MigrationError when the schema predates the chain (migration 0004),
  // PermissionError, UnavailableError (safe to retry: it writes nothing).
  [[nodiscard]] VerifyReport verify(const VerifyOptions& options = {});

  // --- retention (storage/retention.hpp) ---

  // Opt-in retention: compacts each user's events recorded before options.policy's cut-off into
  // one PreferencesBaseline event (the state then), recording who, when, why, how many events
  // and the chain head in a StreamCompacted record of "$audit"; the current state, reads as of a
  // moment at or after the baseline, rebuilds and backups are unchanged; reads as of an earlier
  // moment throw ValidationError. See storage::compact_streams for what is skipped and thrown.
  // Requires: the store's role may compact (prefstore_owner), unless options.dry_run.
  storage::CompactReport compact(const storage::CompactOptions& options);

  // --- administration ---

  // Applies pending migrations; returns those applied. See MigrationRunner::migrate().
  std::vector<storage::MigrationStatus> migrate();
  // Every migration with its state. See MigrationRunner::status().
  [[nodiscard]] std::vector<storage::MigrationStatus> migration_status();
  // --- observability ---

  // The store's state and a health verdict against thresholds: the schema (applied, pending),
  // the log (events, streams, head), the asynchronous projections with their lag and state,
  // the pool, the newest snapshot and backup. Never throws for an unreachable database or a
  // missing schema: they are reported (reachable false, problems). Reads as the store's role
  // (the reader role suffices); two round trips plus one per migration check.
  [[nodiscard]] StoreStatus status(const HealthThresholds& thresholds = {});

  // The store's metrics in the Prometheus text format (0.0.4): calls by operation (duration
  // histogram, errors by kind), retries, events appended, idempotent duplicates, the pool
  // (connections, waits, timeouts, failures), and, read from the database at this call,
  // prefstore_up, the schema, the log head and each projection's lag. The database part costs
  // what status() costs; when the database cannot be reached it is left out and prefstore_up
  // is 0. docs/operations.md, "Monitoring", lists each metric and its alert threshold.
  [[nodiscard]] std::string metrics();

  // True when the store runs on prefstore's own local server.
  [[nodiscard]] bool uses_local_server() const noexcept;
  // The connection string in use, password hidden.
  [[nodiscard]] std::string redacted_database_url() const;
  // The pool the store uses (for status output and advanced use).
  [[nodiscard]] storage::ConnectionPool& pool() noexcept;
  [[nodiscard]] const StoreOptions& options() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore
