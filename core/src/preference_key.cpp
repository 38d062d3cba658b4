#include "prefstore/preference_key.hpp"

#include <string>

#include "prefstore/errors.hpp"
#include "text.hpp"

namespace prefstore {
namespace {

bool is_lower(char c) noexcept {
  return c >= 'a' && c <= 'z';
}
bool is_segment_char(char c) noexcept {
  return is_lower(c) || (c >= '0' && c <= '9') || c == '_';
}

// Why key breaks the grammar, or "" when it does not.
std::string key_problem(std::string_view key) {
  if (key.empty()) return "it is empty";
  if (key.size() > kMaxKeyLength) {
    return "it is " + std::to_string(key.size()) + " characters long, more than the maximum " +
           std::to_string(kMaxKeyLength);
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = key.find('.', start);
    const std::string_view segment = key.substr(start, dot - start);
    const std::string position = " at position " + std::to_string(start + 1);
    if (segment.empty()) {
      return "it has an empty segment" + position +
             " (segments are separated by single dots, with none at either end)";
    }
    if (!is_lower(segment.front())) {
      return "segment " + detail::quote(segment) + " must start with a lowercase letter a-z";
    }
    for (std::size_t i = 1; i < segment.size(); ++i) {
      if (!is_segment_char(segment[i])) {
        return "segment " + detail::quote(segment) + " contains " +
               detail::quote(segment.substr(i, 1)) +
               " (allowed: lowercase letters a-z, digits 0-9 and '_')";
      }
    }
    if (dot == std::string_view::npos) return {};
    start = dot + 1;
  }
}

// True for C0 controls, DEL and C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F).
bool has_control_character(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < text.size()) {
      const auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return true;
    }
  }
  return false;
}

}  // namespace

bool is_valid_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  bool segment_start = true;
  for (const char c : key) {
    if (c == '.') {
      if (segment_start) return false;
      segment_start = true;
    } else if (segment_start) {
      if (!is_lower(c)) return false;
      segment_start = false;
    } else if (!is_segment_char(c)) {
      return false;
    }
  }
  return !segment_start;
}

void validate_key(std::string_view key) {
  if (is_valid_key(key)) return;
  throw ValidationError("invalid preference key " + detail::quote(key) + ": " + key_problem(key) +
                        "; a key is dotted lowercase segments such as "
                        "\"calendar.working_hours.start\"");
}

void validate_user_id(std::string_view user_id) {
  const auto refuse = [&](const std::string& why) {
    throw ValidationError("invalid user id " + detail::quote(user_id) + ": " + why);
  };
  if (user_id.empty()) refuse("it is empty");
  if (!detail::is_valid_utf8(user_id)) refuse("it is not valid UTF-8");
  const std::size_t length = detail::count_code_points(user_id);
  if (length > kMaxUserIdLength) {
    refuse("it is " + std::to_string(length) + " characters long, more than the maximum " +
           std::to_string(kMaxUserIdLength));
  }
  if (has_control_character(user_id)) refuse("it contains a control character");
  if (user_id.front() == '$') {
    refuse("ids starting with '$' are reserved for prefstore's own streams");
  }
}

std::string definition_stream_id(std::string_view key) {
  return "$def:" + std::string(key);
}

}  // namespace prefstore
