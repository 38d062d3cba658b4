// PreferenceDefinition: the schema of one preference key (type, default, constraints,
// description, deprecation), and the validation of values against it.
//
// Definitions change through events (PreferenceDefined, PreferenceDeprecated), so the schema has
// its own audit trail. Thread-safety: plain values; functions are pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/value.hpp"

namespace prefstore {

// Constraints on values. Each is optional; an absent one does not constrain.
struct Constraints {
  std::optional<double> min;               // int and double: value >= min
  std::optional<double> max;               // int and double: value <= max
  std::optional<std::int64_t> max_length;  // string, and each string_list item: code points
  std::optional<std::string> pattern;      // string, and each item: ECMAScript regex, full match
  std::optional<std::vector<Value>> allowed_values;  // value (or each item) must be one of these
  std::optional<std::int64_t> max_items;             // string_list: number of items

  friend bool operator==(const Constraints&, const Constraints&) = default;
};

struct PreferenceDefinition {
  std::string key;
  ValueType type = ValueType::string;
  std::optional<Value> default_value;  // returned by reads when the user has no value
  Constraints constraints;
  std::string description;
  bool deprecated = false;
  std::string deprecation_note;  // why, and what to use instead

  friend bool operator==(const PreferenceDefinition&, const PreferenceDefinition&) = default;
};

// Throws ValidationError when the definition itself is incoherent: invalid key, min > max,
// negative max_length or max_items, a pattern that does not compile, allowed values or a
// default of another type, a default that breaks the constraints, or a constraint that does not
// apply to the type (e.g. max_items on an int).
void validate_definition(const PreferenceDefinition& definition);

// Throws ValidationError when value does not satisfy the definition. The message names the key,
// the value and the broken constraint: `calendar.default_meeting_minutes: 500 is above the
// maximum 480`, `calendar.timezone: expected a string, got int 5`.
// Also applies check_storable.
void validate_value(const PreferenceDefinition& definition, const Value& value);

}  // namespace prefstore
