// Logical backups of a store: create_backup writes the log and the snapshots to a backup file
// (backup_file.hpp) from one consistent database snapshot while writes go on; restore_backup
// puts a file back into a database in one transaction, keeping positions, event ids, versions
// and times. Memory is bounded by a chunk on both sides.
//
// Consistency: a backup covers every event with global_position in (since, until]. To make that
// true under out-of-order commits (DESIGN pitfall 1), create_backup holds new appends off for a
// moment (a SHARE lock on prefstore.events, which waits for the appends in flight to finish),
// takes its REPEATABLE READ snapshot while no append is in flight, and lets appends go on. So
// an incremental backup `--since until` of a later moment misses nothing and repeats nothing.
// Thread-safety: functions may be called from any thread; one restore per database at a time
// (it locks the log).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/storage/backup_file.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::storage {

struct BackupProgress {
  std::int64_t events = 0;        // events written (or restored) so far
  std::int64_t snapshots = 0;     // snapshots written (or restored) so far
  std::int64_t total_events = 0;  // events the backup holds
  std::int64_t total_snapshots = 0;
};

struct BackupOptions {
  // Incremental backup: only events with global_position > since_position (the until_position
  // of the previous backup of the chain), and snapshots ending in that range. Default 0: full.
  std::int64_t since_position = 0;
  // Records per chunk of the file. Default 1000.
  std::size_t chunk_records = 1000;
  // Longest wait for the appends in flight to finish (lock_timeout of the SHARE lock; new
  // appends queue behind the waiting lock, so keep it short). Default 2 s; then the backup fails
  // with a transient error and nothing is written: try again. The SHARE lock needs a role with
  // UPDATE, DELETE or TRUNCATE on prefstore.events (the owner).
  std::chrono::milliseconds settle_timeout{2000};
  // Called every chunk and at the end. Default: none.
  std::function<void(const BackupProgress&)> progress;
};

struct BackupSummary {
  BackupHeader header;
  BackupTrailer trailer;
  std::int64_t bytes = 0;  // size of the file
};

// Writes a backup of the database to `file` (replacing it only once complete) and records it in
// prefstore.backup_history. Throws UsageError when since_position is negative or past the log's
// end, UnavailableError when the database or the file cannot be used (no partial file stays).
BackupSummary create_backup(ConnectionPool& pool, const std::filesystem::path& file,
                            const BackupOptions& options = {});

struct BackupRestoreOptions {
  // Restore only events recorded at or before this moment (and snapshots ending by then): the
  // database then holds the state as of that moment. Default: all.
  std::optional<Timestamp> until_time;
  // Restore only events with global_position <= this. Default: all.
  std::optional<std::int64_t> until_position;
  // A full backup is refused when the database holds events, unless this is set; the events of
  // the file are then added (a clash of stream version, event id or position is a ConflictError
  // and nothing is written). Default false.
  bool allow_non_empty = false;
  // Events per batch while inserting and while replaying to `on_events`. Default 2000.
  std::size_t batch_size = 2000;
  // Asynchronous projections started again from the beginning of the log (DESIGN pitfall 9):
  // their checkpoints are deleted, and their tables (unqualified, schema prefstore) emptied, in
  // the restore's transaction. Other checkpoints stay: the restored events get a transaction id
  // newer than any they hold, so those projections simply read them next.
  std::vector<std::string> reset_projections;
  std::vector<std::string> reset_tables;
  // Called in the restore's transaction with the restored events, in position order, one batch
  // at a time: the inline read models write their rows here (preference_definitions is written
  // by the restore itself). Throwing aborts the restore. Default: none.
  InlineHook on_events;
  // Called every batch and at the end. Default: none.
  std::function<void(const BackupProgress&)> progress;
};

struct BackupRestoreSummary {
  BackupHeader header;
  std::int64_t events = 0;          // events restored
  std::int64_t snapshots = 0;       // snapshots restored
  std::int64_t skipped_events = 0;  // events of the file past until_time / until_position
  std::int64_t until_position = 0;  // every event of the file up to here is restored
};

// Restores `file` in one transaction that holds appends off: checks the whole file while
// inserting (a bad chunk aborts the transaction: nothing is written), keeps each event's
// position, id, version and time, writes them with the restore's transaction id (pitfall 9),
// moves the position sequence past them, rebuilds preference_definitions, calls on_events, resets
// the projections of reset_projections and records the restore in prefstore.backup_history.
// An incremental file (since_position > 0) is accepted only on top of the chain it continues: the
// newest restore recorded here must end at its since_position.
// Throws CorruptDataError for a bad file, UsageError for a refused target (non-empty database,
// broken chain) saying what to do, ConflictError for a clash, UnavailableError.
BackupRestoreSummary restore_backup(ConnectionPool& pool, const std::filesystem::path& file,
                                    const BackupRestoreOptions& options = {});

}  // namespace prefstore::storage
