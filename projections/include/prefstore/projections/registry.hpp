// The asynchronous projections prefstore ships, by name. Thread-safety: pure functions.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "prefstore/projections/projection.hpp"

namespace prefstore::projections {

// A new instance of each shipped asynchronous projection ("preference_value_counts").
[[nodiscard]] std::vector<std::shared_ptr<Projection>> default_projections();

// The shipped projection with this name, or nullptr.
[[nodiscard]] std::shared_ptr<Projection> find_projection(std::string_view name);

}  // namespace prefstore::projections
