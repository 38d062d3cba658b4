#include "prefstore/storage/database_url.hpp"

#include <libpq-fe.h>

#include <cctype>
#include <cstdlib>
#include <memory>
#include <regex>

#include "prefstore/errors.hpp"

namespace prefstore::storage {
namespace {

// A URI query keyword as libpq reads it: %XX sequences decoded.
std::string percent_decoded(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) != 0 &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2])) != 0) {
      out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

std::optional<std::string> configured_database_url() {
  if (const char* url = std::getenv("PREFSTORE_DATABASE_URL"); url != nullptr && *url != '\0') {
    return std::string(url);
  }
  for (const char* name : {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return std::string();
  }
  return std::nullopt;
}

std::vector<std::string> configured_standby_urls() {
  std::vector<std::string> out;
  const char* list = std::getenv("PREFSTORE_STANDBY_URLS");
  if (list == nullptr) return out;
  std::string_view rest(list);
  while (!rest.empty()) {
    const auto end = rest.find(';');
    std::string_view item = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    const auto first = item.find_first_not_of(" \t\n");
    if (first == std::string_view::npos) continue;
    item = item.substr(first, item.find_last_not_of(" \t\n") - first + 1);
    out.emplace_back(item);
  }
  return out;
}

std::string redact_conninfo(std::string_view conninfo) noexcept {
  try {
    std::string s(conninfo);
    // URI user info: scheme://user:password@host. The password may hold '/', '?' or '@', so
    // everything from the first ':' after "://" to the last '@' is hidden.
    static const std::regex uri_scheme(R"(^[a-zA-Z][a-zA-Z0-9+.-]*://)");
    std::smatch scheme;
    if (std::regex_search(s, scheme, uri_scheme)) {
      const std::size_t start = static_cast<std::size_t>(scheme.length(0));
      const std::size_t at = s.rfind('@');
      if (at != std::string::npos && at > start) {
        const std::size_t colon = s.find(':', start);
        if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
      }
    }
    // URI query parameter: ?password=... or &password=..., the keyword possibly percent-encoded
    // (libpq decodes it, so ?pass%77ord=secret sets the password too).
    for (std::size_t i = s.find_first_of("?&"); i != std::string::npos;
         i = s.find_first_of("?&", i + 1)) {
      const std::size_t eq = s.find('=', i + 1);
      if (eq == std::string::npos) break;
      const std::string keyword = s.substr(i + 1, eq - i - 1);
      if (keyword.find_first_of("?&#") != std::string::npos) continue;
      if (lowercase(percent_decoded(keyword)) != "password") continue;
      const std::size_t end = s.find_first_of("&#", eq + 1);
      s.replace(eq + 1, (end == std::string::npos ? s.size() : end) - eq - 1, "***");
    }
    // key=value form: password=secret or password = 'se cr\'et'
    static const std::regex kv_password(R"((^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*))",
                                        std::regex::icase);
    s = std::regex_replace(s, kv_password, "$1$2***");
    return s;
  } catch (...) {
    return "(connection string hidden)";
  }
}

std::string quote_conninfo_value(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string conninfo_with(std::string_view conninfo,
                          const std::vector<std::pair<std::string, std::string>>& overrides) {
  char* err = nullptr;
  const std::string input(conninfo);
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
      PQconninfoParse(input.c_str(), &err), &PQconninfoFree);
  if (!options) {
    std::string reason = err != nullptr ? err : "out of memory";
    if (err != nullptr) PQfreemem(err);
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
    // libpq quotes the offending token, which may be (part of) the password: hide every quoted
    // token, and never echo the string itself.
    static const std::regex quoted_token(R"("[^"]*")");
    reason = std::regex_replace(reason, quoted_token, "\"...\"");
    throw ValidationError("invalid database connection string (" + reason +
                          "); quoted parts and passwords are not shown");
  }
  std::string out;
  auto add = [&out](const std::string& key, std::string_view value) {
    if (!out.empty()) out += ' ';
    out += key + "=" + quote_conninfo_value(value);
  };
  for (PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    bool overridden = false;
    for (const auto& [k, v] : overrides) overridden = overridden || k == o->keyword;
    if (!overridden) add(o->keyword, o->val);
  }
  for (const auto& [k, v] : overrides) add(k, v);
  return out;
}

}  // namespace prefstore::storage
