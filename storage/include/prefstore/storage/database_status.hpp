// DatabaseStatus: what a health check reads from the database in one round trip: the schema
// version, the size of the log, the newest snapshot and the newest backup.
// Thread-safety: the function is reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::storage {

// The most recently written snapshot.
struct NewestSnapshot {
  std::string stream_id;
  std::int64_t stream_version = 0;  // the version it holds the state of
  Timestamp created_at{};           // when it was written
};

// The newest row of prefstore.backup_history with operation 'created'.
struct NewestBackup {
  std::string backup_id;            // from the backup file's header
  std::string file;                 // as given to create_backup
  std::int64_t since_position = 0;  // 0 for a full backup
  std::int64_t until_position = 0;  // the last position it holds
  std::int64_t events = 0;          // events written
  Timestamp recorded_at{};          // when the backup finished
};

struct DatabaseStatus {
  int schema_version = 0;          // highest migration applied, 0 before the first
  std::int64_t events = 0;         // events in the log
  std::int64_t last_position = 0;  // global position of the newest event, 0 when empty
  std::int64_t streams = 0;        // streams with at least one event (users, "$def:", "$audit")
  std::int64_t snapshots = 0;      // snapshot rows
  std::optional<NewestSnapshot> newest_snapshot;
  std::optional<NewestBackup> newest_backup;  // newest backup written from this database
  Timestamp server_time{};                    // now() on the server, to compute ages
};

// Reads the status in one read-only statement. Cost: counts the events and streams (a scan of
// their primary keys: about 60 ms per million events) and scans the snapshots table. Throws
// UnavailableError when the database cannot be reached, MigrationError when prefstore's schema
// is missing (run `prefstore migrate`), PermissionError when the role may not read it (the
// reader role may).
[[nodiscard]] DatabaseStatus read_database_status(ConnectionPool& pool);

}  // namespace prefstore::storage
