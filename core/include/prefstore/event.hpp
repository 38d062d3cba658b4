// Events: the immutable facts of the log, their persisted names and schema versions, and their
// JSON encoding (cereal's JSON archive, named fields) with an upcasting hook for old versions.
//
// Persisted names never change: event type names ("PreferenceSet", ...), field names and
// schema versions are part of the stored data. A golden test decodes bytes written by earlier
// versions. Thread-safety: plain values; encode/decode are reentrant; an UpcasterRegistry is
// immutable once shared.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "prefstore/definition.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/timestamp.hpp"
#include "prefstore/value.hpp"

namespace prefstore {

// A user set a preference. Type "PreferenceSet", schema version 1.
// Payload: {"key": "...", "type": "int", "value": 30}
struct PreferenceSet {
  std::string key;
  Value value;
  friend bool operator==(const PreferenceSet&, const PreferenceSet&) = default;
};

// A user's preference went back to its default. Type "PreferenceReset", schema version 1.
// Payload: {"key": "..."}
struct PreferenceReset {
  std::string key;
  friend bool operator==(const PreferenceReset&, const PreferenceReset&) = default;
};

// A definition was created or replaced. Type "PreferenceDefined", schema version 1.
// Payload: {"key", "type", "default" (null or value), "min", "max", "max_length", "pattern",
// "allowed_values" (null or array), "max_items" (each null when absent), "description",
// "deprecated", "deprecation_note"}
struct PreferenceDefined {
  PreferenceDefinition definition;
  friend bool operator==(const PreferenceDefined&, const PreferenceDefined&) = default;
};

// A definition was marked deprecated. Type "PreferenceDeprecated", schema version 1.
// Payload: {"key": "...", "note": "..."}
struct PreferenceDeprecated {
  std::string key;
  std::string note;
  friend bool operator==(const PreferenceDeprecated&, const PreferenceDeprecated&) = default;
};

// One key of a point-in-time restore: the value it had at the restore's moment, or
// std::nullopt when it was at its default then (the restore resets it).
struct RestoredPreference {
  std::string key;
  std::optional<Value> value;
  friend bool operator==(const RestoredPreference&, const RestoredPreference&) = default;
};

// A point-in-time restore put some of a user's preferences back as they were at `as_of`.
// Type "PreferencesRestored", schema version 1. Each change acts like a PreferenceSet (value)
// or a PreferenceReset (no value), all in this one event, so the audit trail shows the restore
// as one fact with its moment.
// Payload: {"as_of": "2026-11-30T08:00:00.000000Z",
//           "changes": [{"key": "...", "type": "int", "value": 30}, {"key": "...", "reset": true}]}
// Keys are unique within changes.
struct PreferencesRestored {
  Timestamp as_of{};
  std::vector<RestoredPreference> changes;
  friend bool operator==(const PreferencesRestored&, const PreferencesRestored&) = default;
};

// A user's stream was erased (right to erasure): its events, snapshots and read-model rows are
// gone. Type "StreamErased", schema version 1. Written only into prefstore's audit stream
// "$audit" by prefstore.erase_stream() (migration 0004), in the erasing transaction; who and
// why are the event's metadata (actor, reason).
// Payload: {"stream_id": "alice", "events": 12, "stream_version": 12, "first_position": 3,
//           "last_position": 907, "chain_head": "<64 hex digits>"}
struct StreamErased {
  std::string stream_id;
  std::int64_t events = 0;          // events removed
  std::int64_t stream_version = 0;  // the stream's last version when erased
  std::int64_t first_position = 0;  // global positions of its first and last event (0 if none)
  std::int64_t last_position = 0;
  std::string chain_head;  // chain hash of its last event, 64 lower-case hex digits
  friend bool operator==(const StreamErased&, const StreamErased&) = default;
};

// Retention compacted the events of a user's stream up to a version into a baseline event
// (PreferencesBaseline) at that version. Type "StreamCompacted", schema version 1. Written only
// into "$audit", in the compacting transaction; who and why are the metadata.
// Payload: {"stream_id": "alice", "up_to_version": 40, "events": 40,
//           "older_than": "2025-11-30T00:00:00.000000Z", "chain_head": "<64 hex digits>"}
struct StreamCompacted {
  std::string stream_id;
  std::int64_t up_to_version = 0;  // the baseline's version: events 1..up_to_version are gone
  std::int64_t events = 0;         // events removed (the baseline replaced the last of them)
  Timestamp older_than{};          // the retention cut-off: events recorded before it went
  std::string chain_head;          // chain hash at up_to_version, kept by the baseline
  friend bool operator==(const StreamCompacted&, const StreamCompacted&) = default;
};

// The preferences of a user as they were at this event's version, standing in for the events up
// to it, which retention removed. Type "PreferencesBaseline", schema version 1. Stored at the
// version, position, time and transaction of the event it replaces, and keeps that event's chain
// hash (so the next event's link holds). Acts like one PreferenceSet per preference; it is the
// first event of its stream.
// Payload: {"chain_head": "<64 hex digits>", "compacted_events": 40,
//           "preferences": [{"key": "...", "type": "int", "value": 30}, ...]}
struct PreferencesBaseline {
  std::string chain_head;
  std::int64_t compacted_events = 0;
  std::vector<PreferenceSet> preferences;  // keys unique
  friend bool operator==(const PreferencesBaseline&, const PreferencesBaseline&) = default;
};

using EventData =
    std::variant<PreferenceSet, PreferenceReset, PreferenceDefined, PreferenceDeprecated,
                 PreferencesRestored, StreamErased, StreamCompacted, PreferencesBaseline>;

// The stream holding prefstore's own audit records (StreamErased, StreamCompacted).
inline constexpr std::string_view kAuditStreamId = "$audit";

// One effect of an event on a user's preferences: key set to *value, or reset (value nullptr).
// Points into the event it came from.
struct PreferenceChange {
  std::string_view key;
  const Value* value = nullptr;
};

// The effects of an event on the preferences of its stream, in order: one for PreferenceSet and
// PreferenceReset, one per key for PreferencesRestored and PreferencesBaseline, none for
// definition events and audit records. The fold,
// the append's current-state rows and every read model use this one list.
[[nodiscard]] std::vector<PreferenceChange> preference_changes(const EventData& event);

// The persisted type name of the event ("PreferenceSet", ...).
[[nodiscard]] const char* event_type_name(const EventData& event) noexcept;

// The schema version this build writes for an event type; 0 when the type is unknown.
[[nodiscard]] int current_schema_version(std::string_view event_type) noexcept;

// An event as stored: type name, schema version and JSON payload.
struct EncodedEvent {
  std::string event_type;
  int schema_version = 0;
  std::string payload_json;
  friend bool operator==(const EncodedEvent&, const EncodedEvent&) = default;
};

// Encodes with cereal's JSON archive (named fields). Requires: the event's values passed
// check_storable.
[[nodiscard]] EncodedEvent encode(const EventData& event);

// Turns a stored payload of an older schema version (or an old type name) into a newer one.
// Each upcaster takes one step; decode() applies them until the type and version are current.
using Upcaster = std::function<EncodedEvent(const EncodedEvent&)>;

class UpcasterRegistry {
 public:
  // Registers the step from (event_type, from_version). Requires: none registered there yet.
  void add(std::string event_type, int from_version, Upcaster upcaster);
  // The step from (event_type, version), or nullptr.
  [[nodiscard]] const Upcaster* find(std::string_view event_type, int version) const;

 private:
  std::map<std::pair<std::string, int>, Upcaster, std::less<>> m_steps;
};

// The upcasters of this build (none yet: every type is at version 1).
[[nodiscard]] const UpcasterRegistry& default_upcasters();

// Decodes a stored event, upcasting older versions first. Throws CorruptDataError naming the
// type, version and problem when the payload is malformed, the type unknown, the version newer
// than this build's, or no upcaster leads from it to a current version.
[[nodiscard]] EventData decode(const EncodedEvent& stored,
                               const UpcasterRegistry& upcasters = default_upcasters());

// Metadata as a JSON object with named fields (actor, source, reason, correlation_id,
// causation_id); empty fields are written too. decode_metadata accepts missing fields (empty)
// and throws CorruptDataError on malformed JSON.
[[nodiscard]] std::string encode_metadata(const Metadata& metadata);
[[nodiscard]] Metadata decode_metadata(std::string_view json);

// A new random event id (UUID version 4, lowercase, 36 characters).
[[nodiscard]] std::string new_event_id();

// An event read back from the log.
struct RecordedEvent {
  std::string stream_id;
  std::int64_t stream_version = 0;
  std::int64_t global_position = 0;
  std::string event_id;
  EventData data;
  Metadata metadata;
  Timestamp recorded_at{};
  friend bool operator==(const RecordedEvent&, const RecordedEvent&) = default;
};

}  // namespace prefstore
