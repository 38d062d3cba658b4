// ProjectionRunner: runs asynchronous projections, catching each up from its checkpoint.
//
// For each batch it locks the projection's checkpoint row, reads the next events in commit-safe
// order (EventLog::read_all: an event whose transaction commits late is never skipped), applies
// them and advances the checkpoint in the same transaction: a crash anywhere applies nothing
// twice. A projection that fails stops at the failing event with the error in its checkpoint
// (state "failed"); the others go on, and it is retried every retry_failed_after. Several
// runners (threads or processes) may run at once: a checkpoint row lock keeps each projection
// on one runner at a time. Wakes on NOTIFY from writers and polls as a fallback.
// Thread-safety: run_once/catch_up/run from one thread at a time; on_advanced from any thread.
#pragma once

#include <boost/signals2/signal.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "prefstore/projections/projection.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/worker_log.hpp"

namespace prefstore::projections {

struct RunnerOptions {
  // Events per transaction. Larger batches amortise round trips; smaller ones hold locks for a
  // shorter time and redo less after a failure. Default 500.
  std::size_t batch_size = 500;
  // How long run() waits for a NOTIFY before looking for new events anyway: the projection
  // lag when writers do not announce their appends (StoreOptions::announce_appends, off by
  // default). Default 500 ms.
  std::chrono::milliseconds poll_interval{500};
  // How long a failed projection rests before it is tried again. Default 5 s.
  std::chrono::milliseconds retry_failed_after{5000};
  // LISTEN for writers' notifications (on a connection of its own, to the pool's conninfo).
  // Ignored, the runner only polling, when the pool has PoolOptions::transaction_pooling:
  // notifications do not pass PgBouncer in transaction mode; for prompt wake-ups give the runner
  // a pool that connects to the server directly. Default on.
  bool listen = true;
};

class ProjectionRunner {
 public:
  // Requires: pool outlives the runner and has max_size >= 2 (UsageError otherwise: a batch
  // holds one connection while the log is read on another); projections have distinct names.
  ProjectionRunner(storage::ConnectionPool& pool,
                   std::vector<std::shared_ptr<Projection>> projections,
                   RunnerOptions options = {});

  // Applies at most one batch to each projection; returns the number of events applied.
  // Throws UnavailableError when the database is unreachable (nothing half-applied).
  std::int64_t run_once();

  // Runs batches until no projection has events left (failed projections are tried once);
  // returns the number of events applied. A checkpoint locked by another session (a runner
  // inside a batch, a rebuild's swap) is waited for, up to 10 s without progress.
  std::int64_t catch_up();

  // Runs until stop is requested, then marks the checkpoints "stopped" and returns. Database
  // outages are waited out (retried every poll_interval).
  void run(std::stop_token stop);

  // Called after each committed batch with the projection's name and its new position. A slot
  // that throws is disconnected from nothing and breaks nothing: the error is swallowed.
  boost::signals2::connection on_advanced(
      std::function<void(const std::string&, storage::LogPosition)> slot);

 private:
  // Where a projection's events come from: the whole log (one lane, the projection's own
  // checkpoint), or in distributed mode one lane per Citus worker, each with its checkpoint
  // "<projection>__node<group id>" (storage/worker_log.hpp).
  struct Lane {
    std::string suffix;
    std::unique_ptr<storage::WorkerLog> worker;  // null: the whole log (m_log)
  };

  // Sets m_lanes at the first run (a query or two: the database may be down when the runner
  // is made). Throws UnavailableError.
  void find_lanes();
  std::int64_t step(Projection& projection, Lane& lane);
  std::int64_t isolate_failure(Projection& projection, const std::string& name,
                               const std::vector<RecordedEvent>& batch,
                               const std::vector<storage::LogPosition>& positions,
                               storage::LogPosition start);
  void record_failure(const std::string& name, const std::string& error);
  void mark_stopped();

  storage::ConnectionPool& m_pool;
  storage::EventLog m_log;
  std::vector<Lane> m_lanes;
  bool m_distributed = false;  // set with m_lanes: lanes per worker, tables distributed by user
  std::vector<std::shared_ptr<Projection>> m_projections;
  RunnerOptions m_options;
  std::map<std::string, std::chrono::steady_clock::time_point> m_failed_at;
  bool m_busy = false;  // run_once met a checkpoint locked by another session
  boost::signals2::signal<void(const std::string&, storage::LogPosition)> m_advanced;
};

// The live table names of a projection: each of its tables as "prefstore.<name>".
[[nodiscard]] std::map<std::string, std::string> live_tables(const Projection& projection);

}  // namespace prefstore::projections
