// SHA-256 through OpenSSL. Private to storage.
#pragma once

#include <string>
#include <string_view>

namespace prefstore::storage::detail {

// Lowercase hex SHA-256 of the bytes.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

}  // namespace prefstore::storage::detail
