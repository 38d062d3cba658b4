// Timestamp: a moment in UTC with microsecond precision (PostgreSQL's timestamptz).
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace prefstore {

using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

// ISO 8601 in UTC with microseconds: "2026-11-30T05:53:47.957123Z".
[[nodiscard]] std::string format_timestamp(Timestamp t);

// Parses ISO 8601 ("2026-11-30T05:53:47Z", with optional fraction, 'T' or ' ', and a "Z" or
// "+HH:MM"/"-HH:MM" offset; a date alone means its midnight UTC). std::nullopt when malformed.
[[nodiscard]] std::optional<Timestamp> parse_timestamp(std::string_view text);

// Microseconds since 1970-01-01 UTC, and back.
[[nodiscard]] std::int64_t to_unix_micros(Timestamp t) noexcept;
[[nodiscard]] Timestamp from_unix_micros(std::int64_t micros) noexcept;

}  // namespace prefstore
