#include "prefstore/projections/projection_name.hpp"

#include <string>

#include "prefstore/errors.hpp"
#include "prefstore/storage/checkpoints.hpp"

namespace prefstore::projections {

bool is_valid_projection_name(std::string_view name) noexcept {
  return storage::is_valid_checkpoint_name(name);  // a projection is named by its checkpoint
}

void validate_projection_name(std::string_view name) {
  if (is_valid_projection_name(name)) return;
  throw ValidationError("projection name \"" + std::string(name) +
                        "\" is invalid: it must be 1 to 63 characters, a lowercase letter first, "
                        "then lowercase letters, digits or underscores");
}

}  // namespace prefstore::projections
