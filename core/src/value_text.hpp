// Private: how values and types appear in error messages.
#pragma once

#include <string>

#include "prefstore/value.hpp"

namespace prefstore::detail {

// "a bool", "an int", "a double", "a string", "a string_list".
[[nodiscard]] std::string type_with_article(ValueType type);

// The value as shown in messages: true, 30, 2.5, "Europe/Berlin" (quoted and escaped),
// ["email", "push"]; long strings and lists are cut.
[[nodiscard]] std::string describe_value(const Value& value);

// "int 5", "string \"Europe/Berlin\"": the type name and the value.
[[nodiscard]] std::string describe_typed_value(const Value& value);

}  // namespace prefstore::detail
