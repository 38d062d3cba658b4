// ValueCountsProjection ("preference_value_counts"): how many users hold each value of each key,
// the product question "which time zones do our users pick?". Asynchronous read model over
// PreferenceSet and PreferenceReset events of user streams; users at the default are not
// counted. Tables: preference_value_counts (the answer) and preference_value_holders (which
// value each user holds, to move users between counts). An erased user (a StreamErased record
// in "$audit") is forgotten when the record is applied: their holders go, their counts drop.
// Thread-safety: as Projection.
#pragma once

#include "prefstore/projections/projection.hpp"

namespace prefstore::projections {

class ValueCountsProjection final : public Projection {
 public:
  [[nodiscard]] std::string name() const override { return "preference_value_counts"; }
  [[nodiscard]] std::vector<std::string> tables() const override {
    return {"preference_value_counts", "preference_value_holders"};
  }
  // Two statements per batch whatever its size (plus two per erasure record): the batch is
  // folded per (user, key) first.
  void apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) override;
};

}  // namespace prefstore::projections
