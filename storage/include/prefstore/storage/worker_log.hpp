// WorkerLog: the commit-safe reader of the events stored on one Citus worker (distributed
// mode). The commit-safe catch-up of DESIGN.md (pitfall 1) compares an event's transaction id
// with the reader's snapshot; on Citus each node has its own transaction ids, so a reader reads
// one worker's shards of the events table on a connection to that worker, where both come from
// the same node. Each worker is a lane of its own with its own checkpoint (ProjectionRunner).
// Positions are (worker transaction id, global position) pairs, meaningful on that worker only.
// Thread-safety: one object per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "prefstore/event.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::storage {

class WorkerLog {
 public:
  // Requires: coordinator outlives the log. Connects to the worker with the coordinator pool's
  // settings (user, database, TLS, role) and the worker's host and port.
  WorkerLog(ConnectionPool& coordinator, CitusWorker worker);
  ~WorkerLog();
  WorkerLog(const WorkerLog&) = delete;
  WorkerLog& operator=(const WorkerLog&) = delete;

  // Like EventLog::read_all, over the events of the shards this worker holds (asked of the
  // coordinator at each call): visits up to max_count events after `after` in (transaction id,
  // position) order, only of transactions finished before the read began, and returns the
  // position of the last one visited (after when none). Throws UnavailableError when the
  // worker or the coordinator cannot be reached.
  LogPosition read_all(LogPosition after, std::int64_t max_count,
                       const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                       std::int64_t page_size = 1000);

  // Like read_all without the commit-safe horizon: every event committed when each page is
  // read, like EventLog::read_committed. Only for a reader that holds the writers off (a
  // rebuild's swap), where no append is in flight but another transaction may hold the horizon.
  LogPosition read_committed(LogPosition after, std::int64_t max_count,
                             const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                             std::int64_t page_size = 1000);

  // The committed events of this worker after `after` and the age in seconds of the oldest of them
  // (0 when none): a projection lane's lag. Throws UnavailableError when the worker cannot be
  // reached.
  struct Lag {
    std::int64_t events = 0;
    double seconds = 0;
  };
  [[nodiscard]] Lag lag(LogPosition after);

  [[nodiscard]] const CitusWorker& worker() const noexcept { return m_worker; }

 private:
  // "(SELECT * FROM shard UNION ALL ...) AS ev" over this worker's events shards (asked of the
  // coordinator), quoted on handle's connection; empty when the worker holds none.
  std::string events_relation(PooledConnection& handle);
  LogPosition read(LogPosition after, std::int64_t max_count,
                   const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                   std::int64_t page_size, bool commit_safe);

  ConnectionPool& m_coordinator;
  CitusWorker m_worker;
  std::unique_ptr<ConnectionPool> m_pool;
};

}  // namespace prefstore::storage
