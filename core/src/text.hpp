// Private text helpers of prefstore_core: UTF-8 checks, JSON string escaping, number formatting
// and the quoting of values in error messages. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace prefstore::detail {

// True when text is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;

// The number of code points of well-formed UTF-8 text (continuation bytes are not counted).
[[nodiscard]] std::size_t count_code_points(std::string_view text) noexcept;

// Appends text as a JSON string literal (quotes included): '"', '\\' and control characters are
// escaped (\b \f \n \r \t, others \u00XX), everything else is copied byte for byte.
void append_json_string(std::string& out, std::string_view text);

// The shortest text that parses back to the same double, always with a '.' or an exponent
// ("2.0", "0.1", "1e+300"). Requires: value is finite.
[[nodiscard]] std::string format_double(double value);

// The shortest text of a double for people: "480", "2.5", "1e+300" (no ".0" added).
[[nodiscard]] std::string format_double_plain(double value);

// text quoted for an error message: escaped like JSON, bytes that are not UTF-8 as \xNN, and
// cut after max_bytes (with "...", saying how long it was).
[[nodiscard]] std::string quote(std::string_view text, std::size_t max_bytes = 200);

// Strict number grammars for operator text (no spaces, no '+', no hex, no "inf"/"nan"):
// an integer is -?[0-9]+ within int64; a double is -?(D+(.D*)?|.D+)([eE][+-]?D+)?, finite.
[[nodiscard]] std::optional<std::int64_t> parse_int_text(std::string_view text) noexcept;
[[nodiscard]] std::optional<double> parse_double_text(std::string_view text) noexcept;

}  // namespace prefstore::detail
