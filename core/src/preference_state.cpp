#include "prefstore/preference_state.hpp"

#include <type_traits>

namespace prefstore {

void apply(PreferenceState& state, const RecordedEvent& event) {
  for (const PreferenceChange& change : preference_changes(event.data)) {
    if (change.value == nullptr) {
      if (const auto it = state.find(change.key); it != state.end()) state.erase(it);
      continue;
    }
    PreferenceEntry& entry = state[std::string(change.key)];
    entry.value = normalized(*change.value);
    entry.version = event.stream_version;
    entry.updated_at = event.recorded_at;
    entry.updated_by = event.metadata.actor;
    entry.last_position = event.global_position;
  }
  // Definition events do not change a user's preferences.
}

void apply(DefinitionCatalog& catalog, const RecordedEvent& event) {
  const auto touch = [&](DefinitionEntry& entry) {
    entry.version = event.stream_version;
    entry.updated_at = event.recorded_at;
    entry.updated_by = event.metadata.actor;
    entry.last_position = event.global_position;
  };
  if (const auto* defined = std::get_if<PreferenceDefined>(&event.data)) {
    const auto [it, inserted] = catalog.try_emplace(defined->definition.key);
    DefinitionEntry& entry = it->second;
    if (inserted) entry.defined_at = event.recorded_at;
    entry.definition = defined->definition;
    touch(entry);
  } else if (const auto* deprecated = std::get_if<PreferenceDeprecated>(&event.data)) {
    // Deprecating a key that was never defined leaves the catalog as it is: there is no
    // definition to mark.
    const auto it = catalog.find(deprecated->key);
    if (it == catalog.end()) return;
    it->second.definition.deprecated = true;
    it->second.definition.deprecation_note = deprecated->note;
    touch(it->second);
  }
  // Preference events do not change definitions.
}

}  // namespace prefstore
