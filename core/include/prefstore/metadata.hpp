// Metadata: who changed a preference, from where and why. Stored with every event (the
// `metadata` column) and shown by audit queries. Thread-safety: a plain value.
#pragma once

#include <cstddef>
#include <string>

namespace prefstore {

inline constexpr std::size_t kMaxMetadataFieldLength = 1024;

struct Metadata {
  std::string actor;           // the person or system that made the change, e.g. "ada@example.com"
  std::string source;          // the service that wrote it, e.g. "calendar-web"
  std::string reason;          // free text: why
  std::string correlation_id;  // ties the events of one request or workflow together
  std::string causation_id;    // the event or command that caused this one

  friend bool operator==(const Metadata&, const Metadata&) = default;
};

// Throws ValidationError naming the field when one is longer than kMaxMetadataFieldLength
// bytes, is not valid UTF-8 or contains NUL.
void validate_metadata(const Metadata& metadata);

}  // namespace prefstore
