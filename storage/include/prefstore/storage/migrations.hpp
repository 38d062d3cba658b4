// Schema migrations: numbered SQL files from migrations/, compiled into the library.
//
// MigrationRunner applies the pending ones in order, each in its own transaction, under a
// PostgreSQL advisory lock (so that several processes starting at once apply each file exactly
// once), and records version, name, checksum, applied_at and duration in
// prefstore.schema_migrations. It refuses to run when an applied file's checksum changed, naming
// the file. Thread-safety: a runner may be used from one thread at a time; any number of runners
// (in any number of processes) may run against one database at once.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

// One migration file. Its file name is `NNNN_name.sql` (four digits, lowercase name).
struct Migration {
  int version = 0;        // NNNN
  std::string file_name;  // e.g. "0001_initial_schema.sql"
  std::string sql;        // the file's bytes; run as one multi-statement transaction
};

// The migrations compiled into this build, in version order.
[[nodiscard]] const std::vector<Migration>& embedded_migrations();

// Hex SHA-256 of a migration's SQL, as stored in schema_migrations.checksum.
[[nodiscard]] std::string migration_checksum(const Migration& migration);

enum class MigrationState {
  applied,  // recorded in the database with the same checksum
  pending,  // known to this build, not applied yet
  changed,  // applied, but the file in this build has a different checksum
  unknown,  // applied in the database, unknown to this build (the database is newer)
};

// The name of a state as printed by `prefstore migrate --status`.
[[nodiscard]] const char* to_string(MigrationState state) noexcept;

struct MigrationStatus {
  int version = 0;
  std::string file_name;
  MigrationState state = MigrationState::pending;
  std::optional<std::string> applied_at;  // ISO 8601, from the database, when applied
  std::optional<double> duration_ms;      // how long applying took, when applied
  std::string checksum;                   // this build's checksum, or the stored one if unknown
};

class MigrationRunner {
 public:
  // Requires: migrations have distinct versions. Throws UsageError naming a malformed or
  // duplicated file name. The pool must outlive the runner.
  explicit MigrationRunner(ConnectionPool& pool,
                           std::vector<Migration> migrations = embedded_migrations());

  // Applies every pending migration in version order and returns the ones it applied (empty
  // when the schema was current). Throws MigrationError naming the file when an applied file
  // changed, when the database holds a migration this build does not know, or when a file fails
  // (that file's transaction is rolled back: the schema stays as the previous file left it).
  // Throws UnavailableError when the database cannot be reached. Safe to call again.
  std::vector<MigrationStatus> migrate();

  // Every migration known to this build or recorded in the database, in version order.
  // Changes nothing. Throws UnavailableError when the database cannot be reached.
  [[nodiscard]] std::vector<MigrationStatus> status();

  // The highest applied version, 0 when none.
  [[nodiscard]] int current_version();

 private:
  ConnectionPool& m_pool;
  std::vector<Migration> m_migrations;
};

// Parses "NNNN_name.sql" into its version; throws UsageError naming the file when malformed.
[[nodiscard]] int migration_version_from_file_name(const std::string& file_name);

}  // namespace prefstore::storage
