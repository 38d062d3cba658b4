// Preference keys and stream (user) ids: what names are accepted, and why a name is refused.
//
// A key is dotted lowercase segments, each a lowercase letter followed by lowercase letters,
// digits or underscores, at most kMaxKeyLength characters: "calendar.working_hours.start".
// A user id is 1 to kMaxUserIdLength characters of valid UTF-8 without control characters, and
// does not start with '$' (reserved for prefstore's own streams, such as "$def:<key>").
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace prefstore {

inline constexpr std::size_t kMaxKeyLength = 128;
inline constexpr std::size_t kMaxUserIdLength = 200;

[[nodiscard]] bool is_valid_key(std::string_view key) noexcept;
// Throws ValidationError naming the key and the rule it breaks.
void validate_key(std::string_view key);

// Throws ValidationError naming the id and the rule it breaks.
void validate_user_id(std::string_view user_id);

// The stream holding the definition events of one key: "$def:" + key.
[[nodiscard]] std::string definition_stream_id(std::string_view key);

}  // namespace prefstore
