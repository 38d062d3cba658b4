#include "prefstore/storage/database_status.hpp"

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"

namespace prefstore::storage {
namespace {

constexpr const char* kStatusSql = R"SQL(
SELECT (SELECT coalesce(max(version), 0) FROM prefstore.schema_migrations),
       (SELECT count(*) FROM prefstore.events),
       (SELECT coalesce(max(global_position), 0) FROM prefstore.events),
       (SELECT count(*) FROM prefstore.streams WHERE version > 0),
       (SELECT count(*) FROM prefstore.snapshots),
       s.stream_id, s.stream_version,
       (extract(epoch FROM s.created_at) * 1000000)::bigint,
       b.backup_id::text, b.file, b.since_position, b.until_position, b.events,
       (extract(epoch FROM b.recorded_at) * 1000000)::bigint,
       (extract(epoch FROM now()) * 1000000)::bigint
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT stream_id, stream_version, created_at FROM prefstore.snapshots
                   ORDER BY created_at DESC, stream_id LIMIT 1) AS s ON true
LEFT JOIN LATERAL (SELECT backup_id, file, since_position, until_position, events, recorded_at
                   FROM prefstore.backup_history WHERE operation = 'created'
                   ORDER BY recorded_at DESC LIMIT 1) AS b ON true
)SQL";

}  // namespace

DatabaseStatus read_database_status(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(detail::native(handle));
    const auto schema =
        tx.exec("SELECT to_regclass('prefstore.backup_history') IS NOT NULL")[0][0].as<bool>();
    if (!schema) {
      throw MigrationError(
          "reading the store's status: prefstore's schema is missing or older than migration "
          "0003 in this database; run `prefstore migrate`");
    }
    const pqxx::row r = tx.exec1(kStatusSql);
    DatabaseStatus s;
    s.schema_version = r[0].as<int>();
    s.events = r[1].as<std::int64_t>();
    s.last_position = r[2].as<std::int64_t>();
    s.streams = r[3].as<std::int64_t>();
    s.snapshots = r[4].as<std::int64_t>();
    if (!r[5].is_null()) {
      s.newest_snapshot = NewestSnapshot{r[5].as<std::string>(), r[6].as<std::int64_t>(),
                                         from_unix_micros(r[7].as<std::int64_t>())};
    }
    if (!r[8].is_null()) {
      s.newest_backup =
          NewestBackup{r[8].as<std::string>(),   r[9].as<std::string>(),
                       r[10].as<std::int64_t>(), r[11].as<std::int64_t>(),
                       r[12].as<std::int64_t>(), from_unix_micros(r[13].as<std::int64_t>())};
    }
    s.server_time = from_unix_micros(r[14].as<std::int64_t>());
    tx.commit();
    return s;
  } catch (...) {
    detail::rethrow_translated("reading the store's status from " + pool.redacted_conninfo());
  }
}

}  // namespace prefstore::storage
