#include "prefstore/consistency_token.hpp"

#include <charconv>
#include <cstdio>

#include "prefstore/errors.hpp"
#include "text.hpp"

namespace prefstore {

std::string to_string(ConsistencyToken token) {
  char text[32];
  std::snprintf(text, sizeof text, "%X/%X", static_cast<unsigned>(token.lsn >> 32),
                static_cast<unsigned>(token.lsn & 0xFFFFFFFFu));
  return text;
}

ConsistencyToken parse_consistency_token(std::string_view text) {
  const auto refuse = [&]() -> ValidationError {
    return ValidationError("consistency token " + detail::quote(text) +
                           " is not a WAL position: expected two hexadecimal numbers of 1 to 8 "
                           "digits separated by '/', as in 16/B374D848");
  };
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) throw refuse();
  const auto half = [&](std::string_view part) -> std::uint64_t {
    if (part.empty() || part.size() > 8) throw refuse();
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), value, 16);
    if (error != std::errc() || end != part.data() + part.size()) throw refuse();
    return value;
  };
  return ConsistencyToken{half(text.substr(0, slash)) << 32 | half(text.substr(slash + 1))};
}

}  // namespace prefstore
