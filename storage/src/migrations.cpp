#include "prefstore/storage/migrations.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "sha256.hpp"

namespace prefstore::storage {
namespace detail {
// Defined in the generated embedded_migrations.cpp (cmake/EmbedMigrations.cmake).
struct EmbeddedFile {
  const char* file_name;
  const unsigned char* bytes;
  std::size_t size;
};
const std::vector<EmbeddedFile>& embedded_migration_files();
}  // namespace detail

namespace {

// Key of the session-level advisory lock that serialises migration runners ("prefstor" in
// ASCII). Persisted in running deployments' behaviour: never change it.
constexpr long long kMigrationLockKey = 0x7072656673746f72LL;

// Creates what the runner needs before the first migration. Idempotent; run under the lock.
constexpr const char* kBootstrapSql = R"sql(
CREATE SCHEMA IF NOT EXISTS prefstore;
CREATE TABLE IF NOT EXISTS prefstore.schema_migrations (
  version     integer PRIMARY KEY CHECK (version > 0),
  name        text NOT NULL CHECK (name ~ '^[0-9]{4}_[a-z0-9_]+\.sql$'),
  checksum    text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
  applied_at  timestamptz NOT NULL DEFAULT now(),
  duration_ms double precision NOT NULL CHECK (duration_ms >= 0)
);
)sql";

struct AppliedRow {
  std::string name;
  std::string checksum;
  std::string applied_at;
  double duration_ms = 0;
};

std::map<int, AppliedRow> read_applied(pqxx::transaction_base& tx) {
  std::map<int, AppliedRow> out;
  const auto exists = tx.exec("SELECT to_regclass('prefstore.schema_migrations') IS NOT NULL");
  if (!exists[0][0].as<bool>()) return out;
  const auto rows = tx.exec(
      "SELECT version, name, checksum, "
      "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), duration_ms "
      "FROM prefstore.schema_migrations ORDER BY version");
  for (const auto& r : rows) {
    out[r[0].as<int>()] = {r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                           r[4].as<double>()};
  }
  return out;
}

std::string pad4(int v) {
  std::string s = std::to_string(v);
  return std::string(s.size() < 4 ? 4 - s.size() : 0, '0') + s;
}

// Migrations run with the login role's privileges, not those of a role the pool switched to
// (PoolOptions::role). From 0005 on, prefstore_owner owns the schema (0004 hands it over), so
// later files run as prefstore_owner when the login role is a member of it: what they create
// is owned by it too.
constexpr int kFirstMigrationAsOwner = 5;
constexpr const char* kAsLoginRoleSql = "SET LOCAL ROLE NONE";
constexpr const char* kAsOwnerSql = R"sql(
SELECT CASE WHEN pg_catalog.pg_has_role(session_user, 'prefstore_owner', 'MEMBER')
            THEN pg_catalog.set_config('role', 'prefstore_owner', true)
            ELSE pg_catalog.set_config('role', 'none', true) END
)sql";

// Releases the session-level advisory lock when the runner is done (or fails).
class MigrationLock {
 public:
  explicit MigrationLock(pqxx::connection& conn) : m_conn(conn) {
    pqxx::nontransaction tx(m_conn);
    tx.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
  }
  ~MigrationLock() {
    try {
      if (m_conn.is_open()) {
        pqxx::nontransaction tx(m_conn);
        tx.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
      }
    } catch (...) {
      // The lock dies with the session anyway.
    }
  }
  MigrationLock(const MigrationLock&) = delete;
  MigrationLock& operator=(const MigrationLock&) = delete;

 private:
  pqxx::connection& m_conn;
};

}  // namespace

int migration_version_from_file_name(const std::string& file_name) {
  static const std::regex pattern(R"(^([0-9]{4})_[a-z0-9_]+\.sql$)");
  std::smatch m;
  if (!std::regex_match(file_name, m, pattern) || std::stoi(m[1].str()) == 0) {
    throw UsageError("migration file name \"" + file_name +
                     "\" is malformed: expected NNNN_name.sql (four digits from 0001, then a "
                     "lowercase name of letters, digits and underscores)");
  }
  return std::stoi(m[1].str());
}

const std::vector<Migration>& embedded_migrations() {
  static const std::vector<Migration> migrations = [] {
    std::vector<Migration> out;
    for (const auto& f : detail::embedded_migration_files()) {
      out.push_back({migration_version_from_file_name(f.file_name), f.file_name,
                     std::string(reinterpret_cast<const char*>(f.bytes), f.size)});
    }
    std::sort(out.begin(), out.end(),
              [](const Migration& a, const Migration& b) { return a.version < b.version; });
    return out;
  }();
  return migrations;
}

std::string migration_checksum(const Migration& migration) {
  return detail::sha256_hex(migration.sql);
}

const char* to_string(MigrationState state) noexcept {
  switch (state) {
    case MigrationState::applied:
      return "applied";
    case MigrationState::pending:
      return "pending";
    case MigrationState::changed:
      return "CHANGED";
    case MigrationState::unknown:
      return "unknown";
  }
  return "?";
}

MigrationRunner::MigrationRunner(ConnectionPool& pool, std::vector<Migration> migrations)
    : m_pool(pool), m_migrations(std::move(migrations)) {
  std::sort(m_migrations.begin(), m_migrations.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  std::set<int> seen;
  for (const auto& m : m_migrations) {
    if (migration_version_from_file_name(m.file_name) != m.version) {
      throw UsageError("migration " + m.file_name + " has version " + std::to_string(m.version) +
                       ", which does not match its file name");
    }
    if (!seen.insert(m.version).second) {
      throw UsageError("two migrations share version " + pad4(m.version) + " (one is " +
                       m.file_name + ")");
    }
  }
}

std::vector<MigrationStatus> MigrationRunner::status() {
  std::map<int, AppliedRow> applied;
  {
    auto handle = m_pool.acquire();
    try {
      pqxx::read_transaction tx(detail::native(handle));
      applied = read_applied(tx);
    } catch (...) {
      detail::rethrow_translated("reading the migration status of " + m_pool.redacted_conninfo());
    }
  }
  std::map<int, MigrationStatus> by_version;
  for (const auto& m : m_migrations) {
    MigrationStatus s{m.version, m.file_name, MigrationState::pending,
                      {},        {},          migration_checksum(m)};
    if (auto it = applied.find(m.version); it != applied.end()) {
      s.state =
          it->second.checksum == s.checksum ? MigrationState::applied : MigrationState::changed;
      s.applied_at = it->second.applied_at;
      s.duration_ms = it->second.duration_ms;
    }
    by_version[m.version] = s;
  }
  for (const auto& [version, row] : applied) {
    if (by_version.count(version) == 0) {
      by_version[version] = {version,        row.name,        MigrationState::unknown,
                             row.applied_at, row.duration_ms, row.checksum};
    }
  }
  std::vector<MigrationStatus> out;
  for (auto& [v, s] : by_version) out.push_back(std::move(s));
  return out;
}

int MigrationRunner::current_version() {
  int version = 0;
  for (const auto& s : status()) {
    if (s.state != MigrationState::pending) version = std::max(version, s.version);
  }
  return version;
}

std::vector<MigrationStatus> MigrationRunner::migrate() {
  std::vector<MigrationStatus> done;
  auto handle = m_pool.acquire();
  pqxx::connection& conn = detail::native(handle);
  const std::string where = m_pool.redacted_conninfo();
  try {
    {
      // The common case, a current schema, needs no lock and no privilege beyond reading
      // schema_migrations: a service's login role (a member of prefstore_writer or
      // prefstore_reader) may open the store without being allowed to migrate it.
      pqxx::read_transaction tx(conn);
      const auto applied = read_applied(tx);
      const bool current =
          applied.size() == m_migrations.size() &&
          std::all_of(m_migrations.begin(), m_migrations.end(), [&](const Migration& m) {
            const auto it = applied.find(m.version);
            return it != applied.end() && it->second.checksum == migration_checksum(m);
          });
      if (current) return done;
      if (m_pool.options().transaction_pooling) {
        std::string pending;
        for (const auto& m : m_migrations) {
          const auto it = applied.find(m.version);
          if (it != applied.end() && it->second.checksum == migration_checksum(m)) continue;
          pending += (pending.empty() ? "" : ", ") + m.file_name;
        }
        throw MigrationError(
            "the schema of " + where + " is not current (" + std::to_string(applied.size()) +
            " migration(s) recorded, this build has " + std::to_string(m_migrations.size()) +
            (pending.empty() ? std::string() : "; pending or changed: " + pending) +
            "), and migrations are not run through a transaction-pooling proxy "
            "(PoolOptions::transaction_pooling): their session-level advisory lock would not "
            "hold across the proxy's server connections; run `prefstore migrate` against the "
            "server directly (not through PgBouncer), then open the store again");
      }
    }
    MigrationLock lock(conn);
    {
      pqxx::work tx(conn, "prefstore_migration_bootstrap");
      tx.exec(kBootstrapSql);
      tx.commit();
    }
    std::map<int, AppliedRow> applied;
    {
      pqxx::read_transaction tx(conn);
      applied = read_applied(tx);
    }
    std::map<int, const Migration*> known;
    for (const auto& m : m_migrations) known[m.version] = &m;
    int highest_applied = 0;
    for (const auto& [version, row] : applied) {
      highest_applied = std::max(highest_applied, version);
      auto it = known.find(version);
      if (it == known.end()) {
        throw MigrationError("the database holds migration " + row.name + " (applied at " +
                             row.applied_at +
                             "), which this build of prefstore does not know: the database was "
                             "migrated by a newer prefstore; run that version instead");
      }
      const std::string checksum = migration_checksum(*it->second);
      if (checksum != row.checksum) {
        throw MigrationError("migration file " + it->second->file_name +
                             " was changed after it was applied (applied checksum " +
                             row.checksum.substr(0, 12) + "..., file checksum " +
                             checksum.substr(0, 12) +
                             "...): applied migrations must never be edited; put the change in a "
                             "new migration file and restore the original");
      }
    }
    for (const auto& m : m_migrations) {
      if (applied.count(m.version) != 0) continue;
      if (m.version < highest_applied) {
        throw MigrationError("migration " + m.file_name +
                             " is not applied but the later migration " + pad4(highest_applied) +
                             " is: migrations must be applied in order; renumber the new file "
                             "after the last applied one");
      }
      const auto started = std::chrono::steady_clock::now();
      pqxx::work tx(conn, "prefstore_migration");
      try {
        tx.exec(m.version >= kFirstMigrationAsOwner ? kAsOwnerSql : kAsLoginRoleSql);
        tx.exec(m.sql);
      } catch (const pqxx::broken_connection&) {
        throw;
      } catch (const pqxx::sql_error& e) {
        std::string what = e.what();
        while (!what.empty() && what.back() == '\n') what.pop_back();
        throw MigrationError("migration file " + m.file_name +
                                 " failed and was rolled back (the schema stays at version " +
                                 std::to_string(highest_applied) + "): " + what +
                                 (e.sqlstate().empty() ? "" : " (SQLSTATE " + e.sqlstate() + ")"),
                             e.sqlstate());
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
              .count();
      const std::string checksum = migration_checksum(m);
      tx.exec_params(
          "INSERT INTO prefstore.schema_migrations (version, name, checksum, duration_ms) "
          "VALUES ($1, $2, $3, $4)",
          m.version, m.file_name, checksum, ms);
      const auto when =
          tx.exec1("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
      tx.commit();
      highest_applied = m.version;
      done.push_back({m.version, m.file_name, MigrationState::applied, when[0].as<std::string>(),
                      ms, checksum});
    }
  } catch (...) {
    detail::rethrow_translated("running migrations on " + where);
  }
  return done;
}

}  // namespace prefstore::storage
