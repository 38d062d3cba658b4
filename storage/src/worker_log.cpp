#include "prefstore/storage/worker_log.hpp"

#include "error_translation.hpp"
#include "event_rows.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"

namespace prefstore::storage {

WorkerLog::WorkerLog(ConnectionPool& coordinator, CitusWorker worker)
    : m_coordinator(coordinator), m_worker(std::move(worker)) {
  PoolOptions options = coordinator.options();
  options.conninfo = conninfo_with(
      options.conninfo, {{"host", m_worker.host}, {"port", std::to_string(m_worker.port)}});
  options.max_size = 1;
  options.application_name = "prefstore-worker-reader";
  options.on_acquired = nullptr;
  m_pool = std::make_unique<ConnectionPool>(options);
}

WorkerLog::~WorkerLog() = default;

std::string WorkerLog::events_relation(PooledConnection& handle) {
  std::vector<std::string> shards;
  {
    auto coordinator = m_coordinator.acquire();
    try {
      pqxx::nontransaction tx(detail::native(coordinator));
      // From Citus's metadata tables, not the citus_shards view: that view also asks every
      // worker for the size of every shard (citus_shard_sizes()), which made each projector
      // step cost hundreds of milliseconds.
      for (const auto& row : tx.exec_params(
               "SELECT pg_catalog.shard_name(s.logicalrelid, s.shardid) "
               "FROM pg_catalog.pg_dist_shard s "
               "JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid "
               "WHERE s.logicalrelid = 'prefstore.events'::regclass AND p.shardstate = 1 "
               "AND p.groupid = $1 ORDER BY 1",
               m_worker.group_id)) {
        shards.push_back(row[0].as<std::string>());
      }
    } catch (...) {
      detail::rethrow_translated("listing the events shards of worker " + m_worker.host + ":" +
                                 std::to_string(m_worker.port));
    }
  }
  if (shards.empty()) return {};
  std::string sql = "(";
  pqxx::nontransaction quoting(detail::native(handle));
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const auto dot = shards[i].find('.');
    sql += (i ? " UNION ALL " : "") + std::string("SELECT * FROM ") +
           quoting.quote_name(shards[i].substr(0, dot)) + "." +
           quoting.quote_name(shards[i].substr(dot + 1));
  }
  return sql + ") AS ev";
}

LogPosition WorkerLog::read_all(LogPosition after, std::int64_t max_count,
                                const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                                std::int64_t page_size) {
  return read(after, max_count, visit, page_size, true);
}

LogPosition WorkerLog::read_committed(
    LogPosition after, std::int64_t max_count,
    const std::function<bool(const RecordedEvent&, LogPosition)>& visit, std::int64_t page_size) {
  return read(after, max_count, visit, page_size, false);
}

LogPosition WorkerLog::read(LogPosition after, std::int64_t max_count,
                            const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                            std::int64_t page_size, bool commit_safe) {
  if (page_size <= 0) throw UsageError("WorkerLog::read_all: page_size must be positive");
  auto handle = m_pool->acquire();
  const std::string events = events_relation(handle);
  if (events.empty()) return after;
  // Rows and the horizon from one statement, so from one snapshot of this worker.
  const std::string sql =
      std::string("SELECT ") + detail::kEventColumns +
      ", ev.transaction_id::text AS transaction_id_text FROM " + events +
      " WHERE (ev.transaction_id, ev.global_position) > ($1::text::xid8, $2::bigint)" +
      (commit_safe ? " AND ev.transaction_id < pg_snapshot_xmin(pg_current_snapshot())" : "") +
      " ORDER BY ev.transaction_id, ev.global_position LIMIT $3";
  try {
    return detail::visit_pages(
        after, max_count, page_size,
        [&](LogPosition position, std::int64_t limit) {
          pqxx::nontransaction tx(detail::native(handle));
          return tx.exec_params(sql, std::to_string(position.transaction_id),
                                position.global_position, limit);
        },
        [](const pqxx::row& row) { return detail::decode_event_row(row); }, visit);
  } catch (...) {
    detail::rethrow_translated("reading the events of worker " + m_worker.host + ":" +
                               std::to_string(m_worker.port) + " after position " +
                               std::to_string(after.global_position));
  }
}

WorkerLog::Lag WorkerLog::lag(LogPosition after) {
  auto handle = m_pool->acquire();
  const std::string events = events_relation(handle);
  if (events.empty()) return {};
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = tx.exec_params(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(ev.recorded_at)), 0)::double "
        "precision FROM " +
            events +
            " WHERE (ev.transaction_id, ev.global_position) > ($1::text::xid8, $2::bigint)",
        std::to_string(after.transaction_id), after.global_position);
    return {r[0][0].as<std::int64_t>(), r[0][1].as<double>()};
  } catch (...) {
    detail::rethrow_translated("reading the projection lag on worker " + m_worker.host + ":" +
                               std::to_string(m_worker.port));
  }
}

}  // namespace prefstore::storage
