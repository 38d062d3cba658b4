// ConsistencyToken: where a write landed in the primary's write-ahead log, so that a later read
// can be served by a standby only once the standby has replayed it (read-your-writes).
// Thread-safety: a value type; the functions are pure.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace prefstore {

struct ConsistencyToken {
  // A WAL position (PostgreSQL's pg_lsn as a number) at or after the end of the write's commit
  // record. 0 is "no write": every server has replayed it.
  std::uint64_t lsn = 0;
  friend auto operator<=>(const ConsistencyToken&, const ConsistencyToken&) = default;
};

// PostgreSQL's text of the position, two hexadecimal halves: "16/B374D848".
[[nodiscard]] std::string to_string(ConsistencyToken token);

// Parses that text (as printed by to_string, pg_current_wal_lsn() or `prefstore set`).
// Throws ValidationError naming the text when it is not "<hex>/<hex>" of at most 8 digits each.
[[nodiscard]] ConsistencyToken parse_consistency_token(std::string_view text);

}  // namespace prefstore
