#include "prefstore/projections/snapshot_writer.hpp"

#include "prefstore/errors.hpp"
#include "prefstore/storage/snapshots.hpp"

namespace prefstore::projections {

SnapshotProjection::SnapshotProjection(std::int64_t every) : m_every(every) {
  if (every < 1) {
    throw UsageError("snapshot interval must be at least 1 event, not " + std::to_string(every));
  }
}

void SnapshotProjection::apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) {
  for (const RecordedEvent& event : batch) {
    if (event.stream_version % m_every != 0) continue;
    if (!event.stream_id.empty() && event.stream_id[0] == '$') continue;  // prefstore's own
    const auto state = storage::load_state(ctx.unit_of_work(), event.stream_id,
                                           AsOf::at_version(event.stream_version));
    (void)storage::save_snapshot(ctx.unit_of_work(), event.stream_id, state);
  }
}

}  // namespace prefstore::projections
