#include "prefstore/projections/current_state.hpp"

#include <map>
#include <string>
#include <utility>

#include "prefstore/value.hpp"

namespace prefstore::projections {
namespace {

// Upserts and deletes the batch's last word per (user, key). $1: JSON array of
// {"stream_id", "key", "type", "value" (absent: reset), "version", "updated_at" (microseconds),
// "updated_by", "position"}.
constexpr const char* kUpsertSql = R"sql(
INSERT INTO {preferences_current} AS p
       (stream_id, key, value_type, value, version, updated_at, updated_by, last_position)
SELECT x->>'stream_id', x->>'key', x->>'type', x->'value', (x->>'version')::bigint,
       to_timestamp(0) + (x->>'updated_at')::bigint * interval '1 microsecond',
       NULLIF(x->>'updated_by', ''), (x->>'position')::bigint
FROM jsonb_array_elements($1::jsonb) AS x WHERE x ? 'value'
ON CONFLICT (stream_id, key) DO UPDATE
  SET value_type = excluded.value_type, value = excluded.value, version = excluded.version,
      updated_at = excluded.updated_at, updated_by = excluded.updated_by,
      last_position = excluded.last_position
)sql";

constexpr const char* kDeleteSql = R"sql(
DELETE FROM {preferences_current} AS p
USING jsonb_array_elements($1::jsonb) AS x
WHERE NOT x ? 'value' AND p.stream_id = x->>'stream_id' AND p.key = x->>'key'
)sql";

std::string quoted(std::string_view s) {
  return to_json(Value(std::string(s)));
}

}  // namespace

void CurrentStateProjection::apply(const std::vector<RecordedEvent>& batch,
                                   ProjectionContext& ctx) {
  // The last change per (user, key) decides; its event's version, time, actor and position go
  // along.
  struct Last {
    const RecordedEvent* event = nullptr;
    const Value* value = nullptr;  // nullptr: back to the default
  };
  std::map<std::pair<std::string_view, std::string_view>, Last> last;
  for (const auto& event : batch) {
    for (const PreferenceChange& change : preference_changes(event.data)) {
      last[{event.stream_id, change.key}] = {&event, change.value};
    }
  }
  if (last.empty()) return;
  std::string changes = "[";
  for (const auto& [who, change] : last) {
    const RecordedEvent* event = change.event;
    if (changes.size() > 1) changes += ',';
    changes += "{\"stream_id\":" + quoted(who.first) + ",\"key\":" + quoted(who.second);
    if (change.value != nullptr) {
      changes += ",\"type\":\"" + std::string(to_string(type_of(*change.value))) +
                 "\",\"value\":" + to_json(*change.value);
    }
    changes += ",\"version\":" + std::to_string(event->stream_version) +
               ",\"updated_at\":" + std::to_string(to_unix_micros(event->recorded_at)) +
               ",\"updated_by\":" + quoted(event->metadata.actor) +
               ",\"position\":" + std::to_string(event->global_position) + "}";
  }
  changes += ']';
  (void)ctx.exec(kUpsertSql, {changes});
  (void)ctx.exec(kDeleteSql, {changes});
}

}  // namespace prefstore::projections
