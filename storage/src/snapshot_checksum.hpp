// Storage-internal: the checksum of a snapshot row, shared by snapshots.cpp and verify.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace prefstore::storage::detail {

// Hex SHA-256 of "stream_id\nstream_version\nformat_version\nlast_position\nlast_recorded_at
// (unix micros)\n" followed by the state bytes: it covers where the state belongs, not only the
// state. kChecksumSql in snapshots.cpp computes the same in SQL.
[[nodiscard]] std::string snapshot_checksum(std::string_view stream_id, std::int64_t version,
                                            int format, std::int64_t position,
                                            std::int64_t recorded_at_micros,
                                            std::string_view state);

}  // namespace prefstore::storage::detail
