#include "json.hpp"

namespace prefstore::detail {

std::string compact_json(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  bool escaped = false;
  for (const char c : json) {
    if (in_string) {
      out += c;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
      out += c;
    }
  }
  return out;
}

std::string describe_parse_error(const rj::ParseResult& result) {
  return "offset " + std::to_string(result.Offset()) + ": " + rj::GetParseError_En(result.Code());
}

}  // namespace prefstore::detail
