#include "prefstore/metadata.hpp"

#include <string>
#include <utility>

#include "prefstore/errors.hpp"
#include "text.hpp"

namespace prefstore {

void validate_metadata(const Metadata& metadata) {
  const std::pair<const char*, const std::string*> fields[] = {
      {"actor", &metadata.actor},
      {"source", &metadata.source},
      {"reason", &metadata.reason},
      {"correlation_id", &metadata.correlation_id},
      {"causation_id", &metadata.causation_id},
  };
  for (const auto& [name, value] : fields) {
    const std::string field = std::string("metadata field ") + name + " ";
    if (value->size() > kMaxMetadataFieldLength) {
      throw ValidationError(field + detail::quote(*value, 60) + " is " +
                            std::to_string(value->size()) + " bytes long, more than the maximum " +
                            std::to_string(kMaxMetadataFieldLength));
    }
    if (!detail::is_valid_utf8(*value)) {
      throw ValidationError(field + detail::quote(*value) + " is not valid UTF-8");
    }
    if (value->find('\0') != std::string::npos) {
      throw ValidationError(field + detail::quote(*value) + " contains a NUL character");
    }
  }
}

}  // namespace prefstore
