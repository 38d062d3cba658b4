// Translation of libpqxx and PostgreSQL errors into prefstore's error hierarchy. Private to
// storage: no pqxx exception leaves this layer. See docs/errors.md for the table.
#pragma once

#include <string>

namespace prefstore::storage::detail {

// Call inside a catch block only. Rethrows the exception in flight as a prefstore::Error
// subclass whose message starts with `context` ("appending to stream user-17") and carries the
// database's message and SQLSTATE. prefstore errors and std::bad_alloc pass through unchanged.
[[noreturn]] void rethrow_translated(const std::string& context);

}  // namespace prefstore::storage::detail
