#include "prefstore/projections/value_counts.hpp"

#include <map>
#include <optional>
#include <utility>

#include "prefstore/value.hpp"

namespace prefstore::projections {
namespace {

// Moves each touched (user, key) from the value it held to the value it holds after the batch.
// $1: JSON array of {"stream_id", "key", "type", "value" (absent: back to the default)}, at most
// one per (stream_id, key). The CTEs all see the holders as they were before the statement.
constexpr const char* kApplySql = R"sql(
WITH changes AS (
  SELECT x->>'stream_id' AS stream_id, x->>'key' AS key, x->>'type' AS value_type,
         x->'value' AS value
  FROM jsonb_array_elements($1::jsonb) AS x
),
previous AS (
  SELECT h.stream_id, h.key, h.value_type, h.value
  FROM {preference_value_holders} h
  JOIN changes c ON c.stream_id = h.stream_id AND c.key = h.key
),
removed AS (
  DELETE FROM {preference_value_holders} h USING changes c
  WHERE h.stream_id = c.stream_id AND h.key = c.key AND c.value IS NULL
),
held AS (
  INSERT INTO {preference_value_holders} AS h (stream_id, key, value_type, value)
  SELECT stream_id, key, value_type, value FROM changes WHERE value IS NOT NULL
  ON CONFLICT (stream_id, key) DO UPDATE SET value_type = excluded.value_type, value = excluded.value
),
deltas AS (
  SELECT key, value_type, value, sum(d)::bigint AS d
  FROM (SELECT key, value_type, value, -1 AS d FROM previous
        UNION ALL
        SELECT key, value_type, value, 1 AS d FROM changes WHERE value IS NOT NULL) AS moves
  GROUP BY key, value_type, value
  HAVING sum(d) <> 0
),
-- Existing counts move by their delta. (Not INSERT .. ON CONFLICT: its proposed row would carry
-- a negative delta and break the CHECK (users >= 0) before the conflict is seen.)
updated AS (
  UPDATE {preference_value_counts} AS vc SET users = vc.users + d.d
  FROM deltas d
  WHERE vc.key = d.key AND vc.value_type = d.value_type AND vc.value = d.value
  RETURNING vc.key, vc.value_type, vc.value
)
-- New values get a row. A negative count here would mean the holders and the counts disagree:
-- the CHECK fails loudly instead.
INSERT INTO {preference_value_counts} (key, value_type, value, users)
SELECT d.key, d.value_type, d.value, d.d FROM deltas d
WHERE NOT EXISTS (SELECT 1 FROM updated u
                  WHERE u.key = d.key AND u.value_type = d.value_type AND u.value = d.value)
)sql";

constexpr const char* kDropZerosSql = "DELETE FROM {preference_value_counts} WHERE users = 0";

// An erased user ($1) no longer holds any value: their holders go and their counts drop.
constexpr const char* kForgetSql = R"sql(
WITH gone AS (
  DELETE FROM {preference_value_holders} WHERE stream_id = $1
  RETURNING key, value_type, value
),
lost AS (
  SELECT key, value_type, value, count(*)::bigint AS n FROM gone GROUP BY key, value_type, value
)
UPDATE {preference_value_counts} AS vc SET users = vc.users - lost.n
FROM lost
WHERE vc.key = lost.key AND vc.value_type = lost.value_type AND vc.value = lost.value
)sql";

void append_json_string(std::string& out, std::string_view s) {
  out += to_json(Value(std::string(s)));  // core's JSON string escaping
}

}  // namespace

namespace {

// Writes the batch's last word per (user, key): a value, or nullptr for back to the default.
void apply_changes(
    const std::map<std::pair<std::string_view, std::string_view>, const Value*>& last,
    ProjectionContext& ctx) {
  if (last.empty()) return;
  std::string changes = "[";
  for (const auto& [who, value] : last) {
    if (changes.size() > 1) changes += ',';
    changes += "{\"stream_id\":";
    append_json_string(changes, who.first);
    changes += ",\"key\":";
    append_json_string(changes, who.second);
    if (value != nullptr) {
      changes += ",\"type\":\"";
      changes += to_string(type_of(*value));
      changes += "\",\"value\":";
      changes += to_json(*value);
    }
    changes += '}';
  }
  changes += ']';
  (void)ctx.exec(kApplySql, {changes});
  (void)ctx.exec(kDropZerosSql);
}

}  // namespace

void ValueCountsProjection::apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) {
  std::map<std::pair<std::string_view, std::string_view>, const Value*> last;
  for (const auto& event : batch) {
    if (const auto* erased = std::get_if<StreamErased>(&event.data)) {
      // Changes before the erasure land first, then the user is forgotten.
      apply_changes(last, ctx);
      last.clear();
      (void)ctx.exec(kForgetSql, {erased->stream_id});
      (void)ctx.exec(kDropZerosSql);
      continue;
    }
    if (!event.stream_id.empty() && event.stream_id[0] == '$') continue;  // prefstore's own streams
    for (const PreferenceChange& change : preference_changes(event.data)) {
      last[{event.stream_id, change.key}] = change.value;
    }
  }
  apply_changes(last, ctx);
}

}  // namespace prefstore::projections
