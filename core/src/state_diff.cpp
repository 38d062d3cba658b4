#include "prefstore/state_diff.hpp"

#include <utility>

namespace prefstore {

bool KeyDiff::net_unchanged() const {
  if (before.has_value() != after.has_value()) return false;
  return !before || normalized(before->value) == normalized(after->value);
}

StateDiffBuilder::StateDiffBuilder(PreferenceState from) : m_from(std::move(from)), m_to(m_from) {}

void StateDiffBuilder::apply(const RecordedEvent& event) {
  for (const PreferenceChange& change : preference_changes(event.data)) {
    auto [it, inserted] = m_touched.try_emplace(std::string(change.key));
    KeyDiff& diff = it->second;
    if (inserted) diff.key = change.key;
    ++diff.changes;
    diff.last_version = event.stream_version;
    diff.last_position = event.global_position;
    diff.last_changed_at = event.recorded_at;
    diff.last_metadata = event.metadata;
    diff.last_event_type = event_type_name(event.data);
  }
  prefstore::apply(m_to, event);
}

std::vector<KeyDiff> StateDiffBuilder::result(bool include_unchanged) const {
  std::vector<KeyDiff> out;
  for (const auto& [key, touched] : m_touched) {
    KeyDiff diff = touched;
    if (const auto it = m_from.find(key); it != m_from.end()) diff.before = it->second;
    if (const auto it = m_to.find(key); it != m_to.end()) diff.after = it->second;
    if (!include_unchanged && diff.net_unchanged()) continue;
    out.push_back(std::move(diff));
  }
  return out;
}

std::vector<RestoredPreference> restore_changes(const PreferenceState& current,
                                                const PreferenceState& target,
                                                const std::optional<std::set<std::string>>& keys) {
  std::set<std::string> candidates;
  if (keys) {
    candidates = *keys;
  } else {
    for (const auto& [key, entry] : current) candidates.insert(key);
    for (const auto& [key, entry] : target) candidates.insert(key);
  }
  std::vector<RestoredPreference> out;
  for (const std::string& key : candidates) {
    const auto now = current.find(key);
    const auto then = target.find(key);
    if (then != target.end()) {
      if (now == current.end() || normalized(now->second.value) != normalized(then->second.value)) {
        out.push_back({key, normalized(then->second.value)});
      }
    } else if (now != current.end()) {
      out.push_back({key, std::nullopt});
    }
  }
  return out;
}

}  // namespace prefstore
