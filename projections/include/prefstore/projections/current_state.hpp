// CurrentStateProjection ("preferences_current"): the current value of every preference each
// user has set, the fold of each user's stream (PreferenceSet sets, PreferenceReset removes).
// Normally this table is written inline by EventLog::append, in the append's own statement; this
// component is the same fold as a Projection, so that the table can be thrown away and rebuilt
// from the log (rebuild_projection) like any other read model. Thread-safety: as Projection.
#pragma once

#include "prefstore/projections/projection.hpp"

namespace prefstore::projections {

class CurrentStateProjection final : public Projection {
 public:
  [[nodiscard]] std::string name() const override { return "preferences_current"; }
  [[nodiscard]] std::vector<std::string> tables() const override { return {"preferences_current"}; }
  // Written inline by every append: a rebuild must hold the writers off while it swaps.
  [[nodiscard]] bool is_inline() const override { return true; }
  // Two statements per batch: the batch is folded per (user, key) first.
  void apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) override;
};

}  // namespace prefstore::projections
