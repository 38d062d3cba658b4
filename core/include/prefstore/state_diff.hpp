// Differences between two states of one user: what changed between two moments (and who
// changed it), and the changes that bring a current state back to a past one (a point-in-time
// restore). Thread-safety: plain values; a StateDiffBuilder belongs to one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "prefstore/event.hpp"
#include "prefstore/preference_state.hpp"

namespace prefstore {

// One key whose preference changed between two moments.
struct KeyDiff {
  std::string key;
  std::optional<PreferenceEntry> before;  // std::nullopt: at its default then
  std::optional<PreferenceEntry> after;   // std::nullopt: at its default now
  std::int64_t changes = 0;               // events that touched the key in between
  // The last event that touched the key in between: who, when, why.
  std::int64_t last_version = 0;
  std::int64_t last_position = 0;
  Timestamp last_changed_at{};
  Metadata last_metadata;
  std::string last_event_type;

  // True when the key ends where it started (changed and changed back).
  [[nodiscard]] bool net_unchanged() const;
};

// Folds the events after a starting state and records, per key, what touched it.
class StateDiffBuilder {
 public:
  // from: the state at the first moment.
  explicit StateDiffBuilder(PreferenceState from);

  // Applies the next event of the stream (in version order, after the first moment).
  void apply(const RecordedEvent& event);

  // The state after the events applied so far.
  [[nodiscard]] const PreferenceState& state() const noexcept { return m_to; }

  // Every key touched by an applied event, by key. With include_unchanged false, keys that
  // ended where they started are left out.
  [[nodiscard]] std::vector<KeyDiff> result(bool include_unchanged = false) const;

 private:
  PreferenceState m_from;
  PreferenceState m_to;
  std::map<std::string, KeyDiff, std::less<>> m_touched;
};

// The changes that turn `current` into `target` (values compared after normalized()): a value
// for each key whose target value differs from the current one, a reset for each key set now but
// at its default in target. With `keys`, only those keys are considered. Sorted by key; empty
// when nothing differs.
[[nodiscard]] std::vector<RestoredPreference> restore_changes(
    const PreferenceState& current, const PreferenceState& target,
    const std::optional<std::set<std::string>>& keys = std::nullopt);

}  // namespace prefstore
