// Checkpoints of asynchronous projections (prefstore.projection_checkpoints): how far each has
// read the log, its run state and its last error. A projector locks its checkpoint row, writes
// its read model and advances the checkpoint in one transaction (exactly-once effect).
// Thread-safety: the functions are reentrant; a UnitOfWork belongs to one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/unit_of_work.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::storage {

// Persisted state names (projection_checkpoints.state): never change them.
enum class ProjectionState { idle, running, stopped, failed, rebuilding };
[[nodiscard]] const char* to_string(ProjectionState state) noexcept;

struct Checkpoint {
  std::string projection;
  LogPosition position;  // the last event applied
  ProjectionState state = ProjectionState::idle;
  std::optional<std::string> last_error;       // set while failed
  std::optional<std::int64_t> error_position;  // global_position of the event that failed
  std::int64_t events_processed = 0;
  Timestamp updated_at{};
};

// A checkpoint with the log's progress beyond it, for status output.
struct CheckpointStatus {
  Checkpoint checkpoint;
  std::int64_t lag_events = 0;  // events in the log not yet applied
  double lag_seconds = 0;       // age of the oldest event not yet applied; 0 when caught up
};

// True when name fits projection_checkpoints.projection_name's CHECK: 1 to 63 characters, a
// lowercase letter, then lowercase letters, digits or underscores. The one copy of that rule.
[[nodiscard]] bool is_valid_checkpoint_name(std::string_view name) noexcept;

// Distributed mode: the checkpoint of a projection's lane on one worker is
// "<projection>__node<group id>" (ProjectionRunner, WorkerLog).
inline constexpr const char* kLaneSuffix = "__node";

// Whether `checkpoint` names the projection's own checkpoint or one of its lanes.
[[nodiscard]] bool is_checkpoint_of(std::string_view checkpoint,
                                    std::string_view projection) noexcept;

// Locks the projection's checkpoint row in uow, creating it at the start of the log if it does
// not exist. Returns std::nullopt (without waiting) when another transaction holds it: another
// runner is at work. Throws ValidationError for an invalid name.
[[nodiscard]] std::optional<Checkpoint> lock_checkpoint(UnitOfWork& uow,
                                                        std::string_view projection);

// Writes the checkpoint (position, state, error, count) in uow. Requires: locked in uow.
void save_checkpoint(UnitOfWork& uow, const Checkpoint& checkpoint);

// Deletes the projection's checkpoint row in uow (a rebuild's scratch checkpoint).
void delete_checkpoint(UnitOfWork& uow, std::string_view projection);

// Every checkpoint with its lag, ordered by name. One round trip.
[[nodiscard]] std::vector<CheckpointStatus> checkpoint_status(ConnectionPool& pool);

// The log's head: the number of events and the position of the newest one (0 when empty).
struct LogHead {
  std::int64_t events = 0;
  std::int64_t last_position = 0;
};
[[nodiscard]] LogHead log_head(ConnectionPool& pool);

}  // namespace prefstore::storage
