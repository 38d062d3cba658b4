// The fold: state = apply(state, event). Every projection, replay and as-of read uses it, so a
// user's current preferences are by definition the fold of their stream.
// Thread-safety: plain values; functions are pure.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "prefstore/definition.hpp"
#include "prefstore/event.hpp"

namespace prefstore {

// One preference a user has set (keys at their default are absent).
struct PreferenceEntry {
  Value value;
  std::int64_t version = 0;        // stream version of the event that set it
  Timestamp updated_at{};          // its recorded_at
  std::string updated_by;          // its metadata.actor
  std::int64_t last_position = 0;  // its global_position
  friend bool operator==(const PreferenceEntry&, const PreferenceEntry&) = default;
};

// A user's preferences by key.
using PreferenceState = std::map<std::string, PreferenceEntry, std::less<>>;

// PreferenceSet sets the key, PreferenceReset removes it; definition events leave it unchanged.
void apply(PreferenceState& state, const RecordedEvent& event);
// The same for non-const and temporary events. Without these, an unqualified call such as
// `apply(state, read_event())` would find std::apply through the std::map argument and fail.
inline void apply(PreferenceState& state, RecordedEvent& event) {
  apply(state, std::as_const(event));
}
inline void apply(PreferenceState& state, RecordedEvent&& event) {
  apply(state, std::as_const(event));
}

// A definition with the version of the event that produced it.
struct DefinitionEntry {
  PreferenceDefinition definition;
  std::int64_t version = 0;
  Timestamp defined_at{};
  Timestamp updated_at{};
  std::string updated_by;
  std::int64_t last_position = 0;
  friend bool operator==(const DefinitionEntry&, const DefinitionEntry&) = default;
};

using DefinitionCatalog = std::map<std::string, DefinitionEntry, std::less<>>;

// PreferenceDefined replaces the key's definition (keeping defined_at of the first one),
// PreferenceDeprecated marks it deprecated with its note; preference events leave it unchanged.
void apply(DefinitionCatalog& catalog, const RecordedEvent& event);
// Non-const and temporary events (see above: they keep std::apply out of unqualified calls).
inline void apply(DefinitionCatalog& catalog, RecordedEvent& event) {
  apply(catalog, std::as_const(event));
}
inline void apply(DefinitionCatalog& catalog, RecordedEvent&& event) {
  apply(catalog, std::as_const(event));
}

}  // namespace prefstore
