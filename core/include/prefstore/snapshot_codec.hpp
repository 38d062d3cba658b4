// The snapshot codec: a user's folded state (PreferenceState) as bytes for prefstore.snapshots,
// written with cereal's portable binary archive (little-endian whatever the machine).
//
// Layout of format version 1: u64 entry count, then per entry in key order: key, value type
// (u8, ValueType order), the value (bool u8, int i64, double IEEE-754 binary64, string, or u64
// count + strings), version i64, updated_at i64 (unix microseconds), updated_by, last_position
// i64. A string is its u64 byte length and its UTF-8 bytes. A new layout gets a new format
// version; readers refuse versions they do not know. The checksum lives beside the bytes (in
// the table), not in them. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "prefstore/preference_state.hpp"

namespace prefstore {

// The snapshot format this build writes.
inline constexpr int kSnapshotFormatVersion = 1;

// Encodes state in format kSnapshotFormatVersion.
[[nodiscard]] std::string encode_snapshot_state(const PreferenceState& state);

// Decodes bytes written in format_version. Throws CorruptDataError naming the problem for an
// unknown format version, truncated bytes, bytes left over, a length longer than the data, an
// unknown value type, a key twice or out of order, a string that is not valid UTF-8 or a
// double that is not finite. Never allocates more than the input's size per item.
[[nodiscard]] PreferenceState decode_snapshot_state(std::string_view bytes, int format_version);

}  // namespace prefstore
