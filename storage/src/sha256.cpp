#include "sha256.hpp"

#include <openssl/evp.h>

#include "prefstore/errors.hpp"

namespace prefstore::storage::detail {

std::string hex_of(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += hex[b >> 4];
    out += hex[b & 0xF];
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL failed to compute a SHA-256 digest");
  }
  return hex_of(std::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace prefstore::storage::detail
