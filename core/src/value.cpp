#include "prefstore/value.hpp"

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "json.hpp"
#include "prefstore/errors.hpp"
#include "text.hpp"
#include "value_text.hpp"

namespace prefstore {
namespace {

namespace rj = detail::rj;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

constexpr std::size_t kMaxListItemsShown = 20;

// A SAX handler that accepts exactly one JSON value of the expected type and builds it.
// Numbers arrive as their text (kParseNumbersAsStringsFlag), so that they are converted exactly.
class ValueHandler : public rj::BaseReaderHandler<rj::UTF8<>, ValueHandler> {
 public:
  explicit ValueHandler(ValueType type) : m_type(type) {}

  bool Null() { return refuse("null"); }
  bool Bool(bool b) {
    if (m_type != ValueType::boolean || m_in_list) return refuse("a bool");
    m_value = b;
    return true;
  }
  bool RawNumber(const char* text, rj::SizeType length, bool /*copy*/) {
    const std::string_view number(text, length);
    if (m_in_list) return refuse("a number in the list");
    if (m_type == ValueType::integer) {
      if (auto parsed = detail::parse_int_text(number)) {
        m_value = *parsed;
        return true;
      }
      return refuse("the number " + std::string(number) + " (not a 64-bit integer)");
    }
    if (m_type == ValueType::number) {
      if (auto parsed = detail::parse_double_text(number)) {
        m_value = normalized(*parsed);
        return true;
      }
      return refuse("the number " + std::string(number) + " (out of the double range)");
    }
    return refuse("a number");
  }
  bool String(const char* text, rj::SizeType length, bool /*copy*/) {
    std::string s(text, length);
    if (s.find('\0') != std::string::npos) return refuse("a string containing NUL");
    if (m_type == ValueType::string && !m_in_list) {
      m_value = std::move(s);
      return true;
    }
    if (m_type == ValueType::string_list && m_in_list) {
      m_items.push_back(std::move(s));
      return true;
    }
    return refuse("a string");
  }
  bool StartObject() { return refuse("an object"); }
  bool StartArray() {
    if (m_type != ValueType::string_list || m_in_list) return refuse("an array");
    m_in_list = true;
    return true;
  }
  bool EndArray(rj::SizeType /*count*/) {
    m_in_list = false;
    m_value = std::move(m_items);
    return true;
  }

  [[nodiscard]] const std::string& problem() const { return m_problem; }
  [[nodiscard]] Value take() { return std::move(m_value); }

 private:
  bool refuse(std::string what) {
    m_problem = "got " + std::move(what);
    return false;
  }

  ValueType m_type;
  bool m_in_list = false;
  StringList m_items;
  Value m_value;
  std::string m_problem;
};

std::string lowercase_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim_ascii(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

void check_storable_string(std::string_view key, const std::string& text, const std::string& what) {
  if (!detail::is_valid_utf8(text)) {
    throw ValidationError(std::string(key) + ": " + what + " " + detail::quote(text) +
                          " is not valid UTF-8");
  }
  if (text.find('\0') != std::string::npos) {
    throw ValidationError(std::string(key) + ": " + what + " " + detail::quote(text) +
                          " contains a NUL character");
  }
}

[[noreturn]] void throw_parse_failure(std::string_view key, ValueType type, std::string_view text,
                                      std::string_view hint = {}) {
  std::string message = std::string(key) + ": expected " + detail::type_with_article(type);
  if (!hint.empty()) message += " (" + std::string(hint) + ")";
  message += ", got " + detail::quote(text);
  throw ValidationError(message);
}

}  // namespace

namespace detail {

std::string type_with_article(ValueType type) {
  const std::string name = to_string(type);
  return (type == ValueType::integer ? "an " : "a ") + name;
}

std::string describe_value(const Value& value) {
  return std::visit(Overloaded{[](bool b) -> std::string { return b ? "true" : "false"; },
                               [](std::int64_t i) -> std::string { return std::to_string(i); },
                               [](double d) -> std::string { return format_double_plain(d); },
                               [](const std::string& s) -> std::string { return quote(s); },
                               [](const StringList& items) -> std::string {
                                 std::string out = "[";
                                 for (std::size_t i = 0; i < items.size(); ++i) {
                                   if (i > 0) out += ", ";
                                   if (i == kMaxListItemsShown) {
                                     out += "... (" + std::to_string(items.size()) + " items)";
                                     break;
                                   }
                                   out += quote(items[i], 60);
                                 }
                                 return out + "]";
                               }},
                    value);
}

std::string describe_typed_value(const Value& value) {
  return std::string(to_string(type_of(value))) + " " + describe_value(value);
}

}  // namespace detail

ValueType type_of(const Value& value) noexcept {
  switch (value.index()) {
    case 0:
      return ValueType::boolean;
    case 1:
      return ValueType::integer;
    case 2:
      return ValueType::number;
    case 3:
      return ValueType::string;
    default:
      return ValueType::string_list;
  }
}

const char* to_string(ValueType type) noexcept {
  // Persisted names: never change them.
  switch (type) {
    case ValueType::boolean:
      return "bool";
    case ValueType::integer:
      return "int";
    case ValueType::number:
      return "double";
    case ValueType::string:
      return "string";
    case ValueType::string_list:
      return "string_list";
  }
  return "unknown";
}

std::optional<ValueType> parse_value_type(std::string_view name) noexcept {
  for (const ValueType type : {ValueType::boolean, ValueType::integer, ValueType::number,
                               ValueType::string, ValueType::string_list}) {
    if (name == to_string(type)) return type;
  }
  return std::nullopt;
}

void check_storable(std::string_view key, const Value& value) {
  if (const auto* d = std::get_if<double>(&value)) {
    if (!std::isfinite(*d)) {
      throw ValidationError(std::string(key) + ": " + detail::format_double_plain(*d) +
                            " is not a finite number (NaN and infinities cannot be stored)");
    }
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    if (s->size() > kMaxValueBytes) {
      throw ValidationError(std::string(key) + ": the string is " + std::to_string(s->size()) +
                            " bytes long; a value may hold at most " +
                            std::to_string(kMaxValueBytes) + " bytes");
    }
    check_storable_string(key, *s, "the string");
  } else if (const auto* items = std::get_if<StringList>(&value)) {
    if (items->size() > kMaxListItems) {
      throw ValidationError(std::string(key) + ": the list has " + std::to_string(items->size()) +
                            " items; a list may hold at most " + std::to_string(kMaxListItems) +
                            " items");
    }
    std::size_t bytes = 0;
    for (const std::string& item : *items) bytes += item.size();
    if (bytes > kMaxValueBytes) {
      throw ValidationError(std::string(key) + ": the list's items add up to " +
                            std::to_string(bytes) + " bytes; a value may hold at most " +
                            std::to_string(kMaxValueBytes) + " bytes");
    }
    for (std::size_t i = 0; i < items->size(); ++i) {
      check_storable_string(key, (*items)[i], "item " + std::to_string(i + 1));
    }
  }
}

Value normalized(Value value) {
  if (auto* d = std::get_if<double>(&value); d != nullptr && *d == 0.0) *d = 0.0;
  return value;
}

std::string to_json(const Value& value) {
  return std::visit(
      Overloaded{[](bool b) -> std::string { return b ? "true" : "false"; },
                 [](std::int64_t i) -> std::string { return std::to_string(i); },
                 [](double d) -> std::string { return detail::format_double(d == 0.0 ? 0.0 : d); },
                 [](const std::string& s) -> std::string {
                   std::string out;
                   out.reserve(s.size() + 2);
                   detail::append_json_string(out, s);
                   return out;
                 },
                 [](const StringList& items) -> std::string {
                   std::string out = "[";
                   for (std::size_t i = 0; i < items.size(); ++i) {
                     if (i > 0) out += ',';
                     detail::append_json_string(out, items[i]);
                   }
                   return out + "]";
                 }},
      value);
}

namespace {

// The stored forms jsonb prints most often, read without the JSON parser: a string of printable
// ASCII without escapes, true or false, an integer in JSON's syntax. Anything else (and anything
// malformed) is left to the parser, which validates it and names the problem.
std::optional<Value> plain_json_value(ValueType type, std::string_view json) {
  switch (type) {
    case ValueType::string: {
      if (json.size() < 2 || json.front() != '"' || json.back() != '"') return std::nullopt;
      const std::string_view inner = json.substr(1, json.size() - 2);
      for (const char c : inner) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x80 || c == '"' || c == '\\') return std::nullopt;
      }
      return Value(std::string(inner));
    }
    case ValueType::boolean:
      if (json == "true") return Value(true);
      if (json == "false") return Value(false);
      return std::nullopt;
    case ValueType::integer: {
      const std::string_view digits = json.starts_with('-') ? json.substr(1) : json;
      if (digits.empty() || (digits.front() == '0' && digits.size() > 1)) return std::nullopt;
      for (const char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
      }
      if (const auto parsed = detail::parse_int_text(json)) return Value(*parsed);
      return std::nullopt;  // out of range: the parser's path names it
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

Value value_from_json(ValueType type, std::string_view json) {
  if (auto plain = plain_json_value(type, json)) return std::move(*plain);
  const auto fail = [&](const std::string& problem) -> CorruptDataError {
    return CorruptDataError("stored JSON " + detail::quote(json) + " is not " +
                            detail::type_with_article(type) + " value: " + problem);
  };
  if (json.find('\0') != std::string_view::npos) throw fail("it contains a NUL byte");
  const std::string text(json);  // rapidjson's string stream reads up to a NUL terminator
  rj::StringStream stream(text.c_str());
  ValueHandler handler(type);
  rj::Reader reader;
  const rj::ParseResult result =
      reader.Parse<rj::kParseNumbersAsStringsFlag | rj::kParseValidateEncodingFlag>(stream,
                                                                                    handler);
  if (!result) {
    throw fail(handler.problem().empty()
                   ? "malformed JSON at " + detail::describe_parse_error(result)
                   : handler.problem());
  }
  return handler.take();
}

Value parse_value(std::string_view key, ValueType type, std::string_view text) {
  Value value;
  switch (type) {
    case ValueType::boolean: {
      const std::string word = lowercase_ascii(text);
      if (word == "true" || word == "on" || word == "yes" || word == "1") {
        value = true;
      } else if (word == "false" || word == "off" || word == "no" || word == "0") {
        value = false;
      } else {
        throw_parse_failure(key, type, text, "true/false, on/off, yes/no or 1/0");
      }
      break;
    }
    case ValueType::integer: {
      const auto parsed = detail::parse_int_text(text);
      if (!parsed) throw_parse_failure(key, type, text, "a decimal integer within 64 bits");
      value = *parsed;
      break;
    }
    case ValueType::number: {
      const auto parsed = detail::parse_double_text(text);
      if (!parsed) throw_parse_failure(key, type, text, "a finite decimal or exponent number");
      value = normalized(*parsed);
      break;
    }
    case ValueType::string:
      value = std::string(text);
      break;
    case ValueType::string_list: {
      const std::string_view trimmed = trim_ascii(text);
      if (!trimmed.empty() && trimmed.front() == '[') {
        try {
          value = value_from_json(ValueType::string_list, trimmed);
        } catch (const CorruptDataError&) {
          throw_parse_failure(key, type, text, "a JSON array of strings or comma-separated items");
        }
      } else {
        StringList items;
        if (!trimmed.empty()) {
          std::size_t start = 0;
          while (true) {
            const std::size_t comma = text.find(',', start);
            items.emplace_back(trim_ascii(text.substr(start, comma - start)));
            if (comma == std::string_view::npos) break;
            start = comma + 1;
          }
        }
        value = std::move(items);
      }
      break;
    }
  }
  check_storable(key, value);
  return value;
}

Value infer_value(std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  if (const auto i = detail::parse_int_text(text)) return *i;
  if (const auto d = detail::parse_double_text(text)) return normalized(*d);
  if (!text.empty() && text.front() == '[') {
    try {
      return value_from_json(ValueType::string_list, text);
    } catch (const CorruptDataError&) {
      // Not a JSON array of strings: plain text.
    }
  }
  return std::string(text);
}

std::string format_value(const Value& value) {
  return std::visit(
      Overloaded{[](bool b) -> std::string { return b ? "true" : "false"; },
                 [](std::int64_t i) -> std::string { return std::to_string(i); },
                 [](double d) -> std::string { return detail::format_double(d == 0.0 ? 0.0 : d); },
                 [](const std::string& s) -> std::string { return s; },
                 [](const StringList& items) -> std::string {
                   std::string out = "[";
                   for (std::size_t i = 0; i < items.size(); ++i) {
                     if (i > 0) out += ", ";
                     out += items[i];
                   }
                   return out + "]";
                 }},
      value);
}

}  // namespace prefstore
