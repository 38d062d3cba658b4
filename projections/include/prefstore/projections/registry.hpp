// The asynchronous projections prefstore ships, by name. Thread-safety: pure functions.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "prefstore/projections/projection.hpp"

namespace prefstore::projections {

// A new instance of each shipped asynchronous projection ("preference_value_counts", and
// "snapshots", the snapshot policy with its default interval).
[[nodiscard]] std::vector<std::shared_ptr<Projection>> default_projections();

// Every read model that can be rebuilt from the log: the asynchronous ones and the inline
// current state ("preferences_current").
[[nodiscard]] std::vector<std::shared_ptr<Projection>> rebuildable_projections();

// The rebuildable projection with this name, or nullptr.
[[nodiscard]] std::shared_ptr<Projection> find_projection(std::string_view name);

}  // namespace prefstore::projections
