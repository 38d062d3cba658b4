// Test support: exact, readable renderings of values and preference states, for comparisons
// and failure messages. Two things render the same exactly when they are identical: doubles
// are shown in hexadecimal too (so -0.0 and 0.0 differ, as do any two distinct doubles), text
// is quoted with quotes, backslashes and control bytes escaped. Header-only; core types only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "prefstore/event.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/timestamp.hpp"
#include "prefstore/value.hpp"

namespace prefstore::testing {

// `text` in double quotes; '"' and '\' escaped with a backslash, control bytes as \xNN, UTF-8
// (and invalid bytes) as they are.
inline std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (byte < 0x20 || byte == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", byte);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// "0.5 (0x1p-1)": 17 significant digits, then the exact bits in hexadecimal.
inline std::string render_double(double d) {
  std::ostringstream os;
  os.precision(17);
  os << d << " (" << std::hexfloat << d << ")";
  return os.str();
}

// The type and the value: "bool true", "int 7", "double 0.5 (0x1p-1)", "string \"UTC\"",
// "list [\"a\", \"b\"]".
inline std::string render(const Value& value) {
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "bool true" : "bool false";
  if (const auto* i = std::get_if<std::int64_t>(&value)) return "int " + std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return "double " + render_double(*d);
  if (const auto* s = std::get_if<std::string>(&value)) return "string " + quoted(*s);
  std::string out = "list [";
  const auto& items = std::get<StringList>(value);
  for (std::size_t i = 0; i < items.size(); ++i) out += (i > 0 ? ", " : "") + quoted(items[i]);
  return out + "]";
}

// A value or its absence (no value, no default, a reset).
inline std::string render(const std::optional<Value>& value) {
  return value ? render(*value) : std::string("(none)");
}

// One line of a key -> value listing: "\"a.minutes\" = int 2\n". Every render_values, here and
// in the tests, is made of these lines, so that listings of different sources compare.
inline std::string value_line(const std::string& key, const Value& value) {
  return quoted(key) + " = " + render(value) + "\n";
}

// Every field of every entry, one line per key.
inline std::string render(const PreferenceState& state) {
  std::string out;
  for (const auto& [key, e] : state) {
    out += quoted(key) + " = " + render(e.value) + " v" + std::to_string(e.version) + " at " +
           std::to_string(to_unix_micros(e.updated_at)) + " by " + quoted(e.updated_by) + " pos " +
           std::to_string(e.last_position) + "\n";
  }
  return out;
}

// Key -> value only (what a restore promises to bring back).
inline std::string render_values(const PreferenceState& state) {
  std::string out;
  for (const auto& [key, e] : state) out += value_line(key, e.value);
  return out;
}

// The changes of a restore, one line each: "\"a.two\" -> (none)".
inline std::string render(const std::vector<RestoredPreference>& changes) {
  std::string out;
  for (const auto& c : changes) out += quoted(c.key) + " -> " + render(c.value) + "\n";
  return out;
}

}  // namespace prefstore::testing
