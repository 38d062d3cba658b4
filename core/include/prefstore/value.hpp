// Value: a typed preference value (bool, 64-bit integer, double, string or list of strings).
//
// Values are stored as JSON (in event payloads and in preferences_current.value) and read back
// identical: strings are valid UTF-8 without NUL, doubles are finite, and -0.0 is stored as 0.0
// (PostgreSQL's jsonb has no negative zero). Thread-safety: plain values; functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace prefstore {

using StringList = std::vector<std::string>;

// The alternatives' order is the order of ValueType below.
using Value = std::variant<bool, std::int64_t, double, std::string, StringList>;

// The type of a preference. Persisted names (payloads, preference_definitions.value_type):
// "bool", "int", "double", "string", "string_list" -- never change them.
enum class ValueType { boolean, integer, number, string, string_list };

[[nodiscard]] ValueType type_of(const Value& value) noexcept;
[[nodiscard]] const char* to_string(ValueType type) noexcept;
// std::nullopt when name is not one of the persisted names.
[[nodiscard]] std::optional<ValueType> parse_value_type(std::string_view name) noexcept;

// The largest value a preference may hold: a string of at most kMaxValueBytes bytes of UTF-8,
// a string_list of at most kMaxListItems items whose bytes add up to at most kMaxValueBytes.
// Preferences are small settings; the limits keep one write from bloating the log, every
// snapshot and every backup of the user.
inline constexpr std::size_t kMaxValueBytes = 64 * 1024;
inline constexpr std::size_t kMaxListItems = 1000;

// Throws ValidationError naming `key` and the value when the value cannot be stored exactly:
// a string (or list item) that is not valid UTF-8 or contains NUL, or a double that is NaN or
// infinite; or when it is over the limits above (naming the limit and the size found).
void check_storable(std::string_view key, const Value& value);

// The value with -0.0 replaced by 0.0 (what a store returns after storing it).
[[nodiscard]] Value normalized(Value value);

// Compact JSON of the plain value: true, 30, 2.5, "Europe/Berlin", ["email","push"].
// Doubles are written so that they parse back to the same double (shortest round-trip form,
// always with a '.' or an exponent). Requires: check_storable passed.
[[nodiscard]] std::string to_json(const Value& value);

// Parses the plain JSON value written by to_json (or returned by PostgreSQL's jsonb output,
// which may print numbers without exponent) as the given type. Throws CorruptDataError when the
// JSON does not hold a value of that type.
[[nodiscard]] Value value_from_json(ValueType type, std::string_view json);

// Parses operator text (command line) as the given type: bool "true"/"false" (also "on"/"off",
// "yes"/"no", "1"/"0"), int decimal, double decimal or exponent, string verbatim, string_list a
// JSON array of strings or comma-separated items. Throws ValidationError naming `key`, the text
// and the expected type.
[[nodiscard]] Value parse_value(std::string_view key, ValueType type, std::string_view text);

// Infers a type for untyped text (open mode): "true"/"false" bool, an integer int, a decimal or
// exponent number double, a JSON array of strings string_list, anything else string.
[[nodiscard]] Value infer_value(std::string_view text);

// Human-readable form for tables: true, 30, 2.5, Europe/Berlin, [email, push].
[[nodiscard]] std::string format_value(const Value& value);

}  // namespace prefstore
