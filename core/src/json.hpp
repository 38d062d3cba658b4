// Private: cereal's JSON archive and the rapidjson it is built on, under one alias.
// Always include rapidjson through this header, so that every translation unit sees the
// rapidjson configuration cereal sets (assertions that throw, parse flags).
#pragma once

#include <cereal/archives/json.hpp>

#if __has_include(<cereal/external/rapidjson/error/en.h>)
#include <cereal/external/rapidjson/error/en.h>
#else
#include <rapidjson/error/en.h>
#endif

#include <string>
#include <string_view>

namespace prefstore::detail {

#if defined(CEREAL_RAPIDJSON_NAMESPACE)
namespace rj = CEREAL_RAPIDJSON_NAMESPACE;  // cereal's bundled copy
#else
namespace rj = RAPIDJSON_NAMESPACE;  // a system rapidjson (Debian's cereal package)
#endif

// The JSON text without the whitespace outside strings (cereal's writer puts line breaks and
// spaces between members even without indentation). Requires: json is valid JSON.
[[nodiscard]] std::string compact_json(std::string_view json);

// "offset 12: Missing a comma or ']' after an array element." for a failed parse.
[[nodiscard]] std::string describe_parse_error(const rj::ParseResult& result);

}  // namespace prefstore::detail
