#include "prefstore/projections/projection_name.hpp"

#include <string>

#include "prefstore/errors.hpp"

namespace prefstore::projections {

bool is_valid_projection_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

void validate_projection_name(std::string_view name) {
  if (is_valid_projection_name(name)) return;
  throw ValidationError("projection name \"" + std::string(name) +
                        "\" is invalid: it must be 1 to 63 characters, a lowercase letter first, "
                        "then lowercase letters, digits or underscores");
}

}  // namespace prefstore::projections
