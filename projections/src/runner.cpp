#include "prefstore/projections/runner.hpp"

#include <set>
#include <thread>

#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/projections/projection_name.hpp"
#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/storage/notification_listener.hpp"

namespace prefstore::projections {

using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> live_tables(const Projection& projection) {
  std::map<std::string, std::string> out;
  for (const auto& t : projection.tables()) out[t] = "prefstore." + t;
  return out;
}

ProjectionRunner::ProjectionRunner(storage::ConnectionPool& pool,
                                   std::vector<std::shared_ptr<Projection>> projections,
                                   RunnerOptions options)
    : m_pool(pool), m_log(pool), m_projections(std::move(projections)), m_options(options) {
  if (m_options.batch_size == 0) throw UsageError("RunnerOptions::batch_size must be at least 1");
  if (m_pool.options().max_size < 2) {
    throw UsageError(
        "a projection runner needs a pool of at least 2 connections (one holds the "
        "batch's transaction, one reads the log); PoolOptions::max_size is " +
        std::to_string(m_pool.options().max_size));
  }
  std::set<std::string> names;
  for (const auto& p : m_projections) {
    validate_projection_name(p->name());
    if (!names.insert(p->name()).second) {
      throw UsageError("two projections are named " + p->name());
    }
  }
}

void ProjectionRunner::find_lanes() {
  if (!m_lanes.empty()) return;
  std::vector<Lane> lanes;
  m_distributed = storage::is_distributed(m_pool);
  if (m_distributed) {
    for (const storage::CitusWorker& w : storage::citus_workers(m_pool)) {
      lanes.push_back(Lane{storage::kLaneSuffix + std::to_string(w.group_id),
                           std::make_unique<storage::WorkerLog>(m_pool, w)});
    }
  } else {
    lanes.push_back(Lane{"", nullptr});
  }
  m_lanes = std::move(lanes);
}

boost::signals2::connection ProjectionRunner::on_advanced(
    std::function<void(const std::string&, storage::LogPosition)> slot) {
  return m_advanced.connect(
      [slot = std::move(slot)](const std::string& name, storage::LogPosition at) {
        try {
          slot(name, at);
        } catch (...) {
          // A subscriber's failure must not stop the projections.
        }
      });
}

std::int64_t ProjectionRunner::step(Projection& projection, Lane& lane) {
  const std::string name = projection.name() + lane.suffix;
  std::vector<RecordedEvent> batch;
  std::vector<storage::LogPosition> positions;
  storage::LogPosition start;
  bool failed = false;
  {
    storage::UnitOfWork uow(m_pool);
    auto checkpoint = storage::lock_checkpoint(uow, name);
    if (!checkpoint) {  // another session holds it: a runner inside a batch, a rebuild's swap
      m_busy = true;
      return 0;
    }
    start = checkpoint->position;
    if (checkpoint->state == storage::ProjectionState::failed) {
      auto it = m_failed_at.find(name);
      if (it != m_failed_at.end() && Clock::now() - it->second < m_options.retry_failed_after) {
        return 0;
      }
    }
    const auto collect = [&](const RecordedEvent& e, storage::LogPosition at) {
      batch.push_back(e);
      positions.push_back(at);
      return true;
    };
    const auto max = static_cast<std::int64_t>(m_options.batch_size);
    if (lane.worker) {
      (void)lane.worker->read_all(checkpoint->position, max, collect);
    } else {
      (void)m_log.read_all(checkpoint->position, max, collect);
    }
    if (batch.empty()) return 0;
    try {
      ProjectionContext ctx(uow, live_tables(projection), m_distributed);
      projection.apply(batch, ctx);
      checkpoint->position = positions.back();
      checkpoint->events_processed += static_cast<std::int64_t>(batch.size());
      checkpoint->state = storage::ProjectionState::running;
      checkpoint->last_error.reset();
      checkpoint->error_position.reset();
      storage::save_checkpoint(uow, *checkpoint);
      uow.commit();
    } catch (const TransientError&) {
      // The database went away, transactions collided, or COMMIT's outcome is unknown: the
      // checkpoint says what landed. Try the step again later; never replay it here.
      throw;
    } catch (const std::exception&) {
      failed = true;  // rolled back when uow goes
    }
  }
  // Find the event that fails, one transaction per event, and stop there.
  if (failed) return isolate_failure(projection, name, batch, positions, start);
  m_failed_at.erase(name);
  m_advanced(name, positions.back());
  if (log_enabled(LogLevel::debug)) {  // a batch is a hot path: build the fields only when asked
    log(LogLevel::debug, "projection_advanced",
        {{"projection", name},
         {"events", std::to_string(batch.size())},
         {"position", std::to_string(positions.back().global_position)}});
  }
  return static_cast<std::int64_t>(batch.size());
}

std::int64_t ProjectionRunner::isolate_failure(Projection& projection, const std::string& name,
                                               const std::vector<RecordedEvent>& batch,
                                               const std::vector<storage::LogPosition>& positions,
                                               storage::LogPosition start) {
  std::int64_t applied = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    std::string error;
    {
      storage::UnitOfWork uow(m_pool);
      auto checkpoint = storage::lock_checkpoint(uow, name);
      // Another runner may have moved on meanwhile: then this replay is not ours to make.
      const storage::LogPosition expected = i == 0 ? start : positions[i - 1];
      if (!checkpoint || !(checkpoint->position == expected)) return applied;
      try {
        ProjectionContext ctx(uow, live_tables(projection), m_distributed);
        projection.apply({batch[i]}, ctx);
        checkpoint->position = positions[i];
        checkpoint->events_processed += 1;
        checkpoint->state = storage::ProjectionState::running;
        checkpoint->last_error.reset();
        checkpoint->error_position.reset();
        storage::save_checkpoint(uow, *checkpoint);
        uow.commit();
        ++applied;
        m_advanced(name, positions[i]);
        continue;
      } catch (const TransientError&) {
        throw;
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    storage::UnitOfWork uow(m_pool);
    auto checkpoint = storage::lock_checkpoint(uow, name);
    if (!checkpoint || !(checkpoint->position == (i == 0 ? start : positions[i - 1]))) {
      return applied;
    }
    checkpoint->state = storage::ProjectionState::failed;
    checkpoint->last_error = "event at position " + std::to_string(batch[i].global_position) +
                             " (stream " + batch[i].stream_id + ", version " +
                             std::to_string(batch[i].stream_version) + ", " +
                             event_type_name(batch[i].data) + "): " + error;
    checkpoint->error_position = batch[i].global_position;
    storage::save_checkpoint(uow, *checkpoint);
    uow.commit();
    m_failed_at[name] = Clock::now();
    log(LogLevel::error, "projection_failed",
        {{"projection", name},
         {"position", std::to_string(batch[i].global_position)},
         {"error", *checkpoint->last_error}});
    return applied;
  }
  return applied;
}

std::int64_t ProjectionRunner::run_once() {
  m_busy = false;
  find_lanes();
  std::int64_t applied = 0;
  for (const auto& p : m_projections) {
    for (Lane& lane : m_lanes) {
      try {
        applied += step(*p, lane);
      } catch (const TransientError&) {
        throw;
      } catch (const std::exception& e) {
        // Reading failed (an event this build cannot decode, say): this projection (lane)
        // stops, with the reason in its checkpoint; the others go on.
        record_failure(p->name() + lane.suffix, e.what());
      }
    }
  }
  return applied;
}

void ProjectionRunner::record_failure(const std::string& name, const std::string& error) {
  storage::UnitOfWork uow(m_pool);
  auto checkpoint = storage::lock_checkpoint(uow, name);
  if (!checkpoint) return;
  checkpoint->state = storage::ProjectionState::failed;
  checkpoint->last_error = "reading the events after position " +
                           std::to_string(checkpoint->position.global_position) + ": " + error;
  checkpoint->error_position.reset();
  storage::save_checkpoint(uow, *checkpoint);
  uow.commit();
  m_failed_at[name] = Clock::now();
  log(LogLevel::error, "projection_failed",
      {{"projection", name}, {"error", *checkpoint->last_error}});
}

std::int64_t ProjectionRunner::catch_up() {
  std::int64_t total = 0;
  auto busy_since = Clock::now();
  for (;;) {
    const std::int64_t n = run_once();
    total += n;
    if (n > 0 || !m_busy) busy_since = Clock::now();
    if (n > 0) continue;
    // Nothing applied: done, unless a checkpoint was only locked by another session for a
    // moment. Wait for it, but not forever (another runner may be keeping it).
    if (!m_busy || Clock::now() - busy_since > std::chrono::seconds(10)) return total;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ProjectionRunner::mark_stopped() {
  for (const auto& p : m_projections) {
    for (const Lane& lane : m_lanes) {
      try {
        storage::UnitOfWork uow(m_pool);
        auto checkpoint = storage::lock_checkpoint(uow, p->name() + lane.suffix);
        if (!checkpoint || checkpoint->state != storage::ProjectionState::running) continue;
        checkpoint->state = storage::ProjectionState::stopped;
        storage::save_checkpoint(uow, *checkpoint);
        uow.commit();
      } catch (...) {
        // Best effort: the next runner sets the state again.
      }
    }
  }
}

void ProjectionRunner::run(std::stop_token stop) {
  std::unique_ptr<storage::NotificationListener> listener;
  // NOTIFY does not pass a transaction-pooling proxy (and a LISTEN through it would stick to
  // one of its server connections): behind one, the runner only polls.
  if (m_options.listen && !m_pool.options().transaction_pooling) {
    listener = std::make_unique<storage::NotificationListener>(
        storage::conninfo_with(
            m_pool.options().conninfo,
            {{"connect_timeout", "5"}, {"application_name", "prefstore-listener"}}),
        storage::kEventsChannel);
  }
  while (!stop.stop_requested()) {
    std::int64_t applied = 0;
    try {
      applied = run_once();
    } catch (const TransientError&) {
      applied = 0;  // the database is away; wait and try again
    }
    if (applied > 0) continue;
    if (listener) {
      (void)listener->wait(m_options.poll_interval);
    } else {
      std::this_thread::sleep_for(m_options.poll_interval);
    }
  }
  mark_stopped();
}

}  // namespace prefstore::projections
