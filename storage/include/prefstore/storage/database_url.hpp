// Connection strings: which database prefstore uses, and how to show one without its password.
//
// prefstore reads connection settings from the environment (PREFSTORE_DATABASE_URL, libpq's PG*
// variables, a password file or a service file), never from code. When none is given it uses
// its own local server (LocalServer). Thread-safety: all functions are reentrant.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prefstore::storage {

// The database the environment names: PREFSTORE_DATABASE_URL when set and not empty; "" (libpq's
// defaults, which read the PG* variables) when any of PGHOST, PGHOSTADDR, PGPORT, PGDATABASE,
// PGUSER or PGSERVICE is set; std::nullopt when none is, meaning "use the local server".
[[nodiscard]] std::optional<std::string> configured_database_url();

// The standbys the environment names: PREFSTORE_STANDBY_URLS, connection strings (URIs or
// key=value) separated by ';', blanks around each ignored. Empty when unset.
[[nodiscard]] std::vector<std::string> configured_standby_urls();

// The connection string with every password replaced by "***", in URI form
// (postgresql://user:secret@host/db?password=secret) and key=value form (password='se cret').
// Safe for messages and logs. Never throws.
[[nodiscard]] std::string redact_conninfo(std::string_view conninfo) noexcept;

// Quotes a value for a key=value connection string: 'it''s' style (libpq's rules: backslash
// and single quote escaped with a backslash, the whole in single quotes).
[[nodiscard]] std::string quote_conninfo_value(std::string_view value);

// The connection string with the given parameters added or replaced (e.g. connect_timeout),
// returned in key=value form. Accepts both URI and key=value input.
// Throws ValidationError when the string cannot be parsed; the message is redacted.
[[nodiscard]] std::string conninfo_with(
    std::string_view conninfo, const std::vector<std::pair<std::string, std::string>>& overrides);

}  // namespace prefstore::storage
