// AsOf: a moment in a user's history, named by time, by global position or by stream version.
// "As of T" means every event with recorded_at <= T (DESIGN pitfall 5: recorded_at never
// decreases within a stream); "as of position P" every event with global_position <= P; "as of
// version V" every event with stream_version <= V. Thread-safety: a plain value.
#pragma once

#include <cstdint>
#include <string>

#include "prefstore/event.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore {

struct AsOf {
  enum class Kind { latest, time, position, version };
  Kind kind = Kind::latest;
  Timestamp time{};         // for Kind::time
  std::int64_t number = 0;  // the position or version for Kind::position / Kind::version

  // Every event (now).
  static AsOf latest() noexcept { return {}; }
  static AsOf at_time(Timestamp t) noexcept { return {Kind::time, t, 0}; }
  static AsOf at_position(std::int64_t position) noexcept { return {Kind::position, {}, position}; }
  static AsOf at_version(std::int64_t version) noexcept { return {Kind::version, {}, version}; }

  // True when the event belongs to the state as of this moment.
  [[nodiscard]] bool includes(const RecordedEvent& event) const noexcept;

  // For messages and output: "now", "2026-11-30T08:00:00.000000Z", "position 42", "version 7".
  [[nodiscard]] std::string describe() const;

  friend bool operator==(const AsOf&, const AsOf&) = default;
};

}  // namespace prefstore
