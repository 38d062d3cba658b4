#include "prefstore/storage/checkpoints.hpp"

#include <cstring>
#include <map>
#include <memory>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/storage/worker_log.hpp"

namespace prefstore::storage {
namespace {

constexpr const char* kColumns =
    "projection_name, last_transaction_id::text, last_position, state, last_error, "
    "error_position, events_processed, (extract(epoch FROM updated_at) * 1000000)::bigint";

ProjectionState parse_state(const std::string& s) {
  if (s == "idle") return ProjectionState::idle;
  if (s == "running") return ProjectionState::running;
  if (s == "stopped") return ProjectionState::stopped;
  if (s == "failed") return ProjectionState::failed;
  if (s == "rebuilding") return ProjectionState::rebuilding;
  throw CorruptDataError("projection_checkpoints.state holds unknown state \"" + s + "\"");
}

Checkpoint from_row(const SqlRow& r) {
  Checkpoint c;
  c.projection = r[0].value_or("");
  c.position.transaction_id = std::stoull(r[1].value_or("0"));
  c.position.global_position = std::stoll(r[2].value_or("0"));
  c.state = parse_state(r[3].value_or(""));
  c.last_error = r[4];
  if (r[5]) c.error_position = std::stoll(*r[5]);
  c.events_processed = std::stoll(r[6].value_or("0"));
  c.updated_at = from_unix_micros(std::stoll(r[7].value_or("0")));
  return c;
}

}  // namespace

bool is_valid_checkpoint_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63 || name[0] < 'a' || name[0] > 'z') return false;
  for (char ch : name) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
  }
  return true;
}

bool is_checkpoint_of(std::string_view checkpoint, std::string_view projection) noexcept {
  if (!checkpoint.starts_with(projection)) return false;
  const std::string_view rest = checkpoint.substr(projection.size());
  if (rest.empty()) return true;
  const std::string_view suffix(kLaneSuffix);
  return rest.size() > suffix.size() && rest.starts_with(suffix) &&
         rest.substr(suffix.size()).find_first_not_of("0123456789") == std::string_view::npos;
}

const char* to_string(ProjectionState state) noexcept {
  switch (state) {
    case ProjectionState::idle:
      return "idle";
    case ProjectionState::running:
      return "running";
    case ProjectionState::stopped:
      return "stopped";
    case ProjectionState::failed:
      return "failed";
    case ProjectionState::rebuilding:
      return "rebuilding";
  }
  return "idle";
}

std::optional<Checkpoint> lock_checkpoint(UnitOfWork& uow, std::string_view projection) {
  if (!is_valid_checkpoint_name(projection)) {
    throw ValidationError("projection name \"" + std::string(projection) +
                          "\" is invalid: 1 to 63 characters, a lowercase letter first, then "
                          "lowercase letters, digits or underscores");
  }
  const std::string name(projection);
  const auto lock = [&] {
    return uow.exec(std::string("SELECT ") + kColumns +
                        " FROM prefstore.projection_checkpoints WHERE projection_name = $1 "
                        "FOR UPDATE SKIP LOCKED",
                    {name});
  };
  auto rows = lock();
  if (rows.empty()) {
    // Not there yet (a projection's first run), or held by another session. The row is made
    // only here, not before every lock: in distributed mode the table is a reference table,
    // and even an INSERT that does nothing is a write on every node.
    (void)uow.exec(
        "INSERT INTO prefstore.projection_checkpoints (projection_name) VALUES ($1) "
        "ON CONFLICT (projection_name) DO NOTHING",
        {name});
    rows = lock();
  }
  if (rows.empty()) return std::nullopt;
  return from_row(rows[0]);
}

void save_checkpoint(UnitOfWork& uow, const Checkpoint& c) {
  (void)uow.exec(
      "UPDATE prefstore.projection_checkpoints SET last_transaction_id = $2::text::xid8, "
      "last_position = $3::bigint, state = $4, last_error = $5, error_position = $6::bigint, "
      "events_processed = $7::bigint, updated_at = now() WHERE projection_name = $1",
      {c.projection, std::to_string(c.position.transaction_id),
       std::to_string(c.position.global_position), std::string(to_string(c.state)), c.last_error,
       c.error_position ? SqlValue(std::to_string(*c.error_position)) : SqlValue(),
       std::to_string(c.events_processed)});
}

void delete_checkpoint(UnitOfWork& uow, std::string_view projection) {
  (void)uow.exec("DELETE FROM prefstore.projection_checkpoints WHERE projection_name = $1",
                 {std::string(projection)});
}

namespace {

SqlRow values_of(const pqxx::row& row) {
  SqlRow values;
  for (int i = 0; i < 8; ++i)
    values.push_back(row[i].is_null() ? SqlValue() : SqlValue(row[i].c_str()));
  return values;
}

// Distributed mode: a lane's checkpoint (<projection>__node<group>) is compared with the events
// of its worker, on the worker; any other checkpoint (none is written in this mode) with the
// positions of the whole log.
std::vector<CheckpointStatus> distributed_checkpoint_status(ConnectionPool& pool) {
  std::vector<Checkpoint> checkpoints;
  {
    auto handle = pool.acquire();
    try {
      pqxx::nontransaction tx(detail::native(handle));
      for (const auto& row : tx.exec(std::string("SELECT ") + kColumns +
                                     " FROM prefstore.projection_checkpoints ORDER BY "
                                     "projection_name")) {
        checkpoints.push_back(from_row(values_of(row)));
      }
    } catch (...) {
      detail::rethrow_translated("reading the projections' checkpoints");
    }
  }
  std::map<int, std::unique_ptr<WorkerLog>> workers;
  for (const CitusWorker& w : citus_workers(pool)) {
    workers.emplace(w.group_id, std::make_unique<WorkerLog>(pool, w));
  }
  std::vector<CheckpointStatus> out;
  for (const Checkpoint& c : checkpoints) {
    const auto lane = c.projection.rfind(kLaneSuffix);
    WorkerLog* worker = nullptr;
    if (lane != std::string::npos) {
      const std::string group = c.projection.substr(lane + std::strlen(kLaneSuffix));
      if (!group.empty() && group.find_first_not_of("0123456789") == std::string::npos) {
        const auto it = workers.find(std::stoi(group));
        if (it != workers.end()) worker = it->second.get();
      }
    }
    if (worker) {
      const auto lag = worker->lag(c.position);
      out.push_back({c, lag.events, lag.seconds});
      continue;
    }
    auto handle = pool.acquire();
    try {
      pqxx::nontransaction tx(detail::native(handle));
      const auto r = tx.exec_params(
          "SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), "
          "0)::double precision FROM prefstore.events WHERE global_position > $1::bigint",
          c.position.global_position);
      out.push_back({c, r[0][0].as<std::int64_t>(), r[0][1].as<double>()});
    } catch (...) {
      detail::rethrow_translated("reading the lag of projection " + c.projection);
    }
  }
  return out;
}

}  // namespace

std::vector<CheckpointStatus> checkpoint_status(ConnectionPool& pool) {
  if (is_distributed(pool)) return distributed_checkpoint_status(pool);
  static const std::string sql =
      std::string("SELECT ") + kColumns +
      ", (SELECT count(*) FROM prefstore.events e WHERE (e.transaction_id, e.global_position) > "
      "(c.last_transaction_id, c.last_position)), "
      "coalesce((SELECT extract(epoch FROM now() - min(e.recorded_at)) FROM prefstore.events e "
      "WHERE (e.transaction_id, e.global_position) > (c.last_transaction_id, c.last_position)), "
      "0)::double precision "
      "FROM prefstore.projection_checkpoints c ORDER BY projection_name";
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = tx.exec(sql);
    std::vector<CheckpointStatus> out;
    for (const auto& row : r) {
      out.push_back({from_row(values_of(row)), row[8].as<std::int64_t>(), row[9].as<double>()});
    }
    return out;
  } catch (...) {
    detail::rethrow_translated("reading the projections' checkpoints");
  }
}

LogHead log_head(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r =
        tx.exec("SELECT count(*), coalesce(max(global_position), 0) FROM prefstore.events");
    return {r[0][0].as<std::int64_t>(), r[0][1].as<std::int64_t>()};
  } catch (...) {
    detail::rethrow_translated("reading the head of the log");
  }
}

}  // namespace prefstore::storage
