// SnapshotProjection ("snapshots"): the snapshot policy. Every `every` events of a user stream
// (when an event's stream_version is a multiple of `every`) it writes a snapshot of the user's
// state at that version, loaded from the previous snapshot plus the events since. Run it
// asynchronously (ProjectionRunner: `prefstore projections run`) or inline
// (StoreOptions::inline_projections). It owns no table of its own to rebuild: snapshots are a
// cache, and `prefstore snapshot create --all` writes them on demand.
// Thread-safety: as Projection.
#pragma once

#include <cstdint>

#include "prefstore/projections/projection.hpp"

namespace prefstore::projections {

class SnapshotProjection final : public Projection {
 public:
  // Default interval: a snapshot every 100 events of a stream.
  static constexpr std::int64_t kDefaultEvery = 100;

  // Requires: every >= 1 (UsageError otherwise).
  explicit SnapshotProjection(std::int64_t every = kDefaultEvery);

  [[nodiscard]] std::string name() const override { return "snapshots"; }
  [[nodiscard]] std::vector<std::string> tables() const override { return {}; }
  // One snapshot write per event at a multiple of `every`; other events cost nothing.
  void apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) override;

  [[nodiscard]] std::int64_t every() const noexcept { return m_every; }

 private:
  std::int64_t m_every;
};

}  // namespace prefstore::projections
