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
  // A fold keeping the value each user holds for each key, values stored once each; an entry is
  // a user, a holder (user, key) or a distinct value: about 130 bytes per entry at worst (values
  // or stream ids of more than 15 bytes add their length). Erasure records forget
  // the user's holders (the user's distinct values stay counted until the flush). The flush
  // writes the holders in multi-row INSERTs of 10,000 rows and derives the counts from them in
  // one statement (the database's jsonb equality, as apply's). Requires: max_entries >= 1.
  [[nodiscard]] std::unique_ptr<RebuildFold> rebuild_fold(std::size_t max_entries) const override;
};

}  // namespace prefstore::projections
