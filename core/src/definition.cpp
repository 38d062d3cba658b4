// GCC 12 reports a false -Wmaybe-uninitialized inside std::regex's std::function members when
// optimising with sanitizers (GCC bug 105562); the state is by location, so silence it before
// the first standard header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "prefstore/definition.hpp"

#include <algorithm>
#include <cmath>
#include <regex>
#include <string>
#include <unordered_map>

#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "text.hpp"
#include "value_text.hpp"

namespace prefstore {
namespace {

constexpr double kTwoTo63 = 9223372036854775808.0;

// The longest string matched against a pattern. libstdc++'s std::regex matches recursively, one
// stack frame per character or more (about 700 bytes a character for "([a-z]|[0-9])*"), so a
// long value would overflow the stack and crash the process instead of failing validation.
// Patterns describe short things (time zones, e-mail addresses, identifiers).
constexpr std::size_t kMaxPatternInputBytes = 1024;

// value < bound, exactly (no rounding of value to double). Requires: bound is not NaN.
bool int_below(std::int64_t value, double bound) {
  if (bound >= kTwoTo63) return true;
  if (bound < -kTwoTo63) return false;
  // bound is in [-2^63, 2^63); doubles that large are integers, so ceil(bound) fits.
  return value < static_cast<std::int64_t>(std::ceil(bound));
}

// value > bound, exactly. Requires: bound is not NaN.
bool int_above(std::int64_t value, double bound) {
  if (bound >= kTwoTo63) return false;
  if (bound < -kTwoTo63) return true;
  return value > static_cast<std::int64_t>(std::floor(bound));
}

std::string describe_values(const std::vector<Value>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    if (i == 20) {
      out += "... (" + std::to_string(values.size()) + " values)";
      break;
    }
    out += detail::describe_value(values[i]);
  }
  return out + "]";
}

std::regex compile_pattern(const std::string& key, const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ValidationError(key + ": the pattern " + detail::quote(pattern) +
                          " is not a valid ECMAScript regular expression (" + e.what() + ")");
  }
}

// The compiled pattern, from a small per-thread cache: compiling a std::regex costs about
// 60 µs (bench/core_bench.cpp), a hundred times the rest of a value's validation, and a store
// validates values of the same few definitions again and again. Bounded: emptied when it holds
// kMaxCachedPatterns patterns. Throws as compile_pattern (an invalid pattern is never cached).
const std::regex& cached_pattern(const std::string& key, const std::string& pattern) {
  constexpr std::size_t kMaxCachedPatterns = 256;
  thread_local std::unordered_map<std::string, std::regex> cache;
  if (const auto it = cache.find(pattern); it != cache.end()) return it->second;
  std::regex compiled = compile_pattern(key, pattern);
  if (cache.size() >= kMaxCachedPatterns) cache.clear();
  return cache.emplace(pattern, std::move(compiled)).first->second;
}

bool is_allowed(const Constraints& constraints, const Value& value) {
  if (!constraints.allowed_values) return true;
  const auto& allowed = *constraints.allowed_values;
  return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

// Checks one string (the value, or an item of a list): length, pattern, allowed values.
// label is "" for the value itself and "item 2 " for a list item.
void check_text(const PreferenceDefinition& definition, const std::string& text,
                const std::regex* pattern, const std::string& label) {
  const Constraints& c = definition.constraints;
  const std::string subject = definition.key + ": " + label + detail::quote(text);
  if (c.max_length) {
    const auto length = static_cast<std::int64_t>(detail::count_code_points(text));
    if (length > *c.max_length) {
      throw ValidationError(subject + " is " + std::to_string(length) +
                            " characters long, longer than the maximum length " +
                            std::to_string(*c.max_length));
    }
  }
  if (pattern != nullptr && text.size() > kMaxPatternInputBytes) {
    throw ValidationError(subject + " is " + std::to_string(text.size()) +
                          " bytes long, too long to check against the pattern " +
                          detail::quote(*c.pattern) + " (at most " +
                          std::to_string(kMaxPatternInputBytes) + " bytes)");
  }
  if (pattern != nullptr && !std::regex_match(text, *pattern)) {
    throw ValidationError(subject + " does not match the pattern " + detail::quote(*c.pattern));
  }
  if (!is_allowed(c, Value(text))) {
    throw ValidationError(subject + " is not one of the allowed values " +
                          describe_values(*c.allowed_values));
  }
}

template <class Number>
void check_range(const PreferenceDefinition& definition, Number value) {
  const Constraints& c = definition.constraints;
  bool below = false;
  bool above = false;
  if constexpr (std::is_same_v<Number, std::int64_t>) {
    below = c.min && int_below(value, *c.min);
    above = c.max && int_above(value, *c.max);
  } else {
    below = c.min && value < *c.min;
    above = c.max && value > *c.max;
  }
  if (below) {
    throw ValidationError(definition.key + ": " + detail::describe_value(Value(value)) +
                          " is below the minimum " + detail::format_double_plain(*c.min));
  }
  if (above) {
    throw ValidationError(definition.key + ": " + detail::describe_value(Value(value)) +
                          " is above the maximum " + detail::format_double_plain(*c.max));
  }
}

// The type of allowed values: the item type for lists, the value type otherwise.
ValueType element_type(ValueType type) {
  return type == ValueType::string_list ? ValueType::string : type;
}

void check_text_field(const std::string& key, const std::string& field, const std::string& text) {
  if (!detail::is_valid_utf8(text) || text.find('\0') != std::string::npos) {
    throw ValidationError("definition of " + key + ": the " + field + " " + detail::quote(text) +
                          " is not valid UTF-8 without NUL");
  }
}

}  // namespace

void validate_definition(const PreferenceDefinition& definition) {
  validate_key(definition.key);
  const std::string& key = definition.key;
  const std::string prefix = "definition of " + key + ": ";
  const Constraints& c = definition.constraints;
  const ValueType type = definition.type;
  const std::string type_name = to_string(type);
  const bool numeric = type == ValueType::integer || type == ValueType::number;
  const bool textual = type == ValueType::string || type == ValueType::string_list;

  const auto refuse = [&](const std::string& why) { throw ValidationError(prefix + why); };
  const auto not_for_type = [&](const char* constraint) {
    refuse(std::string(constraint) + " does not apply to type " + type_name);
  };

  if (c.min) {
    if (!numeric) not_for_type("min");
    if (!std::isfinite(*c.min))
      refuse("min " + detail::format_double_plain(*c.min) + " is not finite");
  }
  if (c.max) {
    if (!numeric) not_for_type("max");
    if (!std::isfinite(*c.max))
      refuse("max " + detail::format_double_plain(*c.max) + " is not finite");
  }
  if (c.min && c.max && *c.min > *c.max) {
    refuse("min " + detail::format_double_plain(*c.min) + " is greater than max " +
           detail::format_double_plain(*c.max));
  }
  if (c.max_length) {
    if (!textual) not_for_type("max_length");
    if (*c.max_length < 0) refuse("max_length " + std::to_string(*c.max_length) + " is negative");
  }
  if (c.pattern) {
    if (!textual) not_for_type("pattern");
    check_text_field(key, "pattern", *c.pattern);
    (void)compile_pattern(key, *c.pattern);
  }
  if (c.max_items) {
    if (type != ValueType::string_list) not_for_type("max_items");
    if (*c.max_items < 0) refuse("max_items " + std::to_string(*c.max_items) + " is negative");
  }
  if (c.allowed_values) {
    if (c.allowed_values->empty()) {
      refuse("allowed_values is empty, so no value could be set (leave it absent instead)");
    }
    // Each allowed value must itself pass the other constraints of one value (or one item).
    PreferenceDefinition element = definition;
    element.type = element_type(type);
    element.constraints.allowed_values.reset();
    element.constraints.max_items.reset();
    for (const Value& allowed : *c.allowed_values) {
      if (type_of(allowed) != element.type) {
        refuse("the allowed value " + detail::describe_typed_value(allowed) + " is not " +
               detail::type_with_article(element.type));
      }
      try {
        validate_value(element, allowed);
      } catch (const ValidationError& e) {
        refuse("the allowed value " + detail::describe_value(allowed) +
               " breaks the other constraints (" + e.what() + ")");
      }
    }
  }
  if (definition.default_value) {
    const Value& value = *definition.default_value;
    if (type_of(value) != type) {
      refuse("the default " + detail::describe_typed_value(value) + " is not " +
             detail::type_with_article(type));
    }
    try {
      validate_value(definition, value);
    } catch (const ValidationError& e) {
      refuse("the default " + detail::describe_value(value) + " breaks the constraints (" +
             e.what() + ")");
    }
  }
  check_text_field(key, "description", definition.description);
  check_text_field(key, "deprecation note", definition.deprecation_note);
}

void validate_value(const PreferenceDefinition& definition, const Value& value) {
  const std::string& key = definition.key;
  if (type_of(value) != definition.type) {
    throw ValidationError(key + ": expected " + detail::type_with_article(definition.type) +
                          ", got " + detail::describe_typed_value(value));
  }
  check_storable(key, value);
  const Constraints& c = definition.constraints;
  const std::regex* pattern_ptr = nullptr;
  if (c.pattern &&
      (definition.type == ValueType::string || definition.type == ValueType::string_list)) {
    pattern_ptr = &cached_pattern(key, *c.pattern);
  }

  switch (definition.type) {
    case ValueType::boolean:
    case ValueType::integer:
    case ValueType::number:
      if (const auto* i = std::get_if<std::int64_t>(&value)) check_range(definition, *i);
      if (const auto* d = std::get_if<double>(&value)) check_range(definition, *d);
      if (!is_allowed(c, value)) {
        throw ValidationError(key + ": " + detail::describe_value(value) +
                              " is not one of the allowed values " +
                              describe_values(*c.allowed_values));
      }
      break;
    case ValueType::string:
      check_text(definition, std::get<std::string>(value), pattern_ptr, "");
      break;
    case ValueType::string_list: {
      const auto& items = std::get<StringList>(value);
      if (c.max_items && static_cast<std::int64_t>(items.size()) > *c.max_items) {
        throw ValidationError(key + ": " + detail::describe_value(value) + " has " +
                              std::to_string(items.size()) + " items, more than the maximum " +
                              std::to_string(*c.max_items));
      }
      for (std::size_t i = 0; i < items.size(); ++i) {
        check_text(definition, items[i], pattern_ptr, "item " + std::to_string(i + 1) + " ");
      }
      break;
    }
  }
}

}  // namespace prefstore
