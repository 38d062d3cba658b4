// SHA-256 through OpenSSL, and hex text of bytes. Private to storage.
#pragma once

#include <string>
#include <string_view>

namespace prefstore::storage::detail {

// The bytes in lowercase hex, two digits each.
[[nodiscard]] std::string hex_of(std::string_view bytes);

// Lowercase hex SHA-256 of the bytes.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

}  // namespace prefstore::storage::detail
