// Projection names: how a read model is named in projection_checkpoints and on the command line.
//
// A name is 1 to 63 characters: a lowercase letter, then lowercase letters, digits and
// underscores (the CHECK constraint of prefstore.projection_checkpoints.projection_name).
// Names are persisted: a projection's name never changes once released.
// Thread-safety: pure functions.
#pragma once

#include <string_view>

namespace prefstore::projections {

// True when name follows the grammar above.
[[nodiscard]] bool is_valid_projection_name(std::string_view name) noexcept;

// Throws ValidationError naming the value and the rule it breaks when name is not valid.
void validate_projection_name(std::string_view name);

}  // namespace prefstore::projections
