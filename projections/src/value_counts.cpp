#include "prefstore/projections/value_counts.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "prefstore/value.hpp"

namespace prefstore::projections {
namespace {

// Moves each touched (user, key) from the value it held to the value it holds after the batch,
// in three statements: the deltas are read before the holders change. (One statement of CTEs
// did all three on a single server, where every CTE sees the same snapshot; Citus runs such
// CTEs one after the other, so the read of the old values saw the new ones and no count moved.)
// $1: JSON array of {"stream_id", "key", "type", "value" (absent: back to the default)}, at most
// one per (stream_id, key); $2: the users of $1, as a text array (the filter on the holders'
// distribution column keeps a distributed statement on the shards of these users: on one shard
// when they share it, a Citus router query). Returns the deltas as one JSON array of {key, type,
// value, d}.
constexpr const char* kDeltasSql = R"sql(
WITH changes AS (
  SELECT x->>'stream_id' AS stream_id, x->>'key' AS key, x->>'type' AS value_type,
         x->'value' AS value
  FROM jsonb_array_elements($1::jsonb) AS x
),
previous AS (
  SELECT h.key, h.value_type, h.value
  FROM {preference_value_holders} h
  JOIN changes c ON c.stream_id = h.stream_id AND c.key = h.key
  WHERE h.stream_id = ANY ($2::text[])
)
SELECT coalesce(jsonb_agg(jsonb_build_object('key', key, 'type', value_type, 'value', value,
                                             'd', d)), '[]')::text
FROM (SELECT key, value_type, value, sum(d)::bigint AS d
      FROM (SELECT key, value_type, value, -1 AS d FROM previous
            UNION ALL
            SELECT key, value_type, value, 1 AS d FROM changes WHERE value IS NOT NULL) AS moves
      GROUP BY key, value_type, value
      HAVING sum(d) <> 0) AS deltas
)sql";

// The holders take the changes ($1, $2 as above).
constexpr const char* kHoldersSql = R"sql(
WITH changes AS (
  SELECT x->>'stream_id' AS stream_id, x->>'key' AS key, x->>'type' AS value_type,
         x->'value' AS value
  FROM jsonb_array_elements($1::jsonb) AS x
),
removed AS (
  DELETE FROM {preference_value_holders} h USING changes c
  WHERE h.stream_id = c.stream_id AND h.key = c.key AND c.value IS NULL
    AND h.stream_id = ANY ($2::text[])
)
INSERT INTO {preference_value_holders} AS h (stream_id, key, value_type, value)
SELECT stream_id, key, value_type, value FROM changes
WHERE value IS NOT NULL AND stream_id = ANY ($2::text[])
ON CONFLICT (stream_id, key) DO UPDATE SET value_type = excluded.value_type, value = excluded.value
)sql";

// The counts move by the deltas ($1: the arrays of kDeltasSql, joined; a value may appear in
// several, each from a group of users, so they are summed first). Existing counts are updated (not
// INSERT .. ON CONFLICT: its proposed row would carry a negative delta and break the CHECK
// (users >= 0) before the conflict is seen); new values get a row, and a negative count there
// would mean the holders and the counts disagree: the CHECK fails loudly instead.
constexpr const char* kCountsSql = R"sql(
WITH deltas AS (
  SELECT x->>'key' AS key, x->>'type' AS value_type, x->'value' AS value,
         sum((x->>'d')::bigint)::bigint AS d
  FROM jsonb_array_elements($1::jsonb) AS x
  GROUP BY 1, 2, 3
  HAVING sum((x->>'d')::bigint) <> 0
),
updated AS (
  UPDATE {preference_value_counts} AS vc SET users = vc.users + d.d
  FROM deltas d
  WHERE vc.key = d.key AND vc.value_type = d.value_type AND vc.value = d.value
  RETURNING vc.key, vc.value_type, vc.value
)
INSERT INTO {preference_value_counts} (key, value_type, value, users)
SELECT d.key, d.value_type, d.value, d.d FROM deltas d
WHERE NOT EXISTS (SELECT 1 FROM updated u
                  WHERE u.key = d.key AND u.value_type = d.value_type AND u.value = d.value)
)sql";

constexpr const char* kDropZerosSql = "DELETE FROM {preference_value_counts} WHERE users = 0";

// Distributed mode: the shard of the holders table that holds each user of $1 (a text array).
// Computed on the coordinator from its metadata, without a query to the workers.
constexpr const char* kShardsSql =
    "SELECT u, pg_catalog.get_shard_id_for_distribution_column('{preference_value_holders}', "
    "u)::text FROM unnest($1::text[]) AS u";

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

// Appends s to a PostgreSQL array literal as a quoted element.
void append_array_element(std::string& array, std::string_view s) {
  array += array.size() > 1 ? ",\"" : "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') array += '\\';
    array += c;
  }
  array += '"';
}

}  // namespace

namespace {

// The changes of one group of users, as kDeltasSql takes them.
struct ChangeGroup {
  std::string changes = "[";  // $1
  std::string users = "{";    // $2
  std::string_view last_user;
};

// Writes the batch's last word per (user, key): a value, or nullptr for back to the default.
// On a single server in one group; in distributed mode one group per shard of the holders, so
// that each statement runs on one shard (a statement over the users of many shards runs on
// every shard, as several distributed steps: about 120 ms each on the 2-core test machine).
void apply_changes(
    const std::map<std::pair<std::string_view, std::string_view>, const Value*>& last,
    ProjectionContext& ctx) {
  if (last.empty()) return;
  std::map<std::string, std::string, std::less<>> shard_of;  // user -> shard id
  if (ctx.distributed()) {
    std::string users = "{";
    std::string_view previous;
    for (const auto& entry : last) {
      if (entry.first.first == previous && users.size() > 1) continue;  // sorted by user
      previous = entry.first.first;
      append_array_element(users, previous);
    }
    for (const auto& row : ctx.exec(kShardsSql, {users + "}"})) {
      shard_of.emplace(row.at(0).value_or(""), row.at(1).value_or(""));
    }
  }
  std::map<std::string, ChangeGroup> groups;  // by shard id; "" on a single server
  for (const auto& [who, value] : last) {
    std::string shard;
    if (ctx.distributed()) {
      const auto it = shard_of.find(who.first);
      if (it != shard_of.end()) shard = it->second;
    }
    ChangeGroup& g = groups[shard];
    if (g.changes.size() > 1) g.changes += ',';
    g.changes += "{\"stream_id\":";
    append_json_string(g.changes, who.first);
    g.changes += ",\"key\":";
    append_json_string(g.changes, who.second);
    if (value != nullptr) {
      g.changes += ",\"type\":\"";
      g.changes += to_string(type_of(*value));
      g.changes += "\",\"value\":";
      g.changes += to_json(*value);
    }
    g.changes += '}';
    if (g.users.size() == 1 || who.first != g.last_user) {
      append_array_element(g.users, who.first);
      g.last_user = who.first;
    }
  }
  std::string moves;  // the groups' deltas, one JSON array
  for (auto& [shard, g] : groups) {
    g.changes += ']';
    g.users += '}';
    const auto deltas = ctx.exec(kDeltasSql, {g.changes, g.users});
    (void)ctx.exec(kHoldersSql, {g.changes, g.users});
    const std::string found = deltas.at(0).at(0).value_or("[]");
    if (found == "[]") continue;
    moves += moves.empty() ? "[" : ",";
    moves += found.substr(1, found.size() - 2);
  }
  if (!moves.empty()) (void)ctx.exec(kCountsSql, {moves + "]"});
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

namespace {

// Holders written per INSERT statement by the fold's flush, at most; and the most bytes of
// array literals per statement (values may be long: 10,000 of the longest would pass
// PostgreSQL's 1 GB limit on one parameter).
constexpr std::size_t kFlushRows = 10000;
constexpr std::size_t kFlushBytes = std::size_t{32} << 20;

// The most bytes of text (stream ids and distinct values, as stored) the fold holds before
// full() turns true, whatever its entry cap: values of up to 64 KiB would otherwise let a
// million entries take gigabytes.
constexpr std::size_t kMaxFoldTextBytes = std::size_t{64} << 20;

// The flushed holders, as four parallel text arrays: stream ids, keys, types, JSON values.
constexpr const char* kInsertHoldersSql = R"sql(
INSERT INTO {preference_value_holders} (stream_id, key, value_type, value)
SELECT s, k, t, v::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(s, k, t, v)
)sql";

// The counts of the flushed holders (the tables were empty before the flush).
constexpr const char* kCountHoldersSql = R"sql(
INSERT INTO {preference_value_counts} (key, value_type, value, users)
SELECT key, value_type, value, count(*) FROM {preference_value_holders}
GROUP BY key, value_type, value
)sql";

class ValueCountsFold final : public RebuildFold {
 public:
  explicit ValueCountsFold(std::size_t max_entries) : m_max_entries(max_entries) {}

  void add(const std::vector<RecordedEvent>& batch) override {
    for (const auto& event : batch) {
      if (const auto* erased = std::get_if<StreamErased>(&event.data)) {
        if (const auto it = m_holders.find(erased->stream_id); it != m_holders.end()) {
          m_holder_count -= it->second.size();
          m_text_bytes -= it->first.size();
          m_holders.erase(it);
        }
        continue;
      }
      if (!event.stream_id.empty() && event.stream_id[0] == '$') continue;  // as apply
      const auto changes = preference_changes(event.data);
      if (changes.empty()) continue;
      auto [user, added] = m_holders.try_emplace(event.stream_id);
      if (added) m_text_bytes += event.stream_id.size();
      auto& held = user->second;
      for (const PreferenceChange& change : changes) {
        const std::uint32_t key = intern_key(change.key);
        auto it = held.begin();
        while (it != held.end() && it->key != key) ++it;
        if (change.value == nullptr) {
          if (it != held.end()) {
            *it = held.back();
            held.pop_back();
            --m_holder_count;
          }
        } else if (it != held.end()) {
          it->value = intern_value(*change.value);
        } else {
          held.push_back({key, intern_value(*change.value)});
          ++m_holder_count;
        }
      }
    }
  }

  [[nodiscard]] bool full() const override {
    return m_holders.size() + m_holder_count + m_values.size() >= m_max_entries ||
           m_text_bytes >= kMaxFoldTextBytes;
  }

  void flush(ProjectionContext& ctx) override {
    // Stream ids, keys, types and JSON values, as array literals.
    std::array<std::string, 4> columns;
    std::size_t rows = 0;
    const auto start = [&] {
      for (auto& c : columns) {
        c.clear();
        c.push_back('{');
      }
      rows = 0;
    };
    const auto write = [&] {
      if (rows == 0) return;
      for (auto& c : columns) c.push_back('}');
      (void)ctx.exec(kInsertHoldersSql, {columns[0], columns[1], columns[2], columns[3]});
      start();
    };
    start();
    for (const auto& [stream, held] : m_holders) {
      for (const Holder& h : held) {
        const auto& [type, json] = m_values[h.value];
        append_array_element(columns[0], stream);
        append_array_element(columns[1], m_keys[h.key]);
        append_array_element(columns[2], type);
        append_array_element(columns[3], json);
        const std::size_t bytes =
            columns[0].size() + columns[1].size() + columns[2].size() + columns[3].size();
        if (++rows == kFlushRows || bytes >= kFlushBytes) write();
      }
    }
    write();
    (void)ctx.exec(kCountHoldersSql);
    m_holders.clear();
    m_holder_count = 0;
  }

 private:
  struct Holder {
    std::uint32_t key;    // index into m_keys
    std::uint32_t value;  // index into m_values
  };

  std::uint32_t intern_key(std::string_view key) {
    auto [it, added] = m_key_ids.try_emplace(std::string(key), 0);
    if (added) {
      it->second = static_cast<std::uint32_t>(m_keys.size());
      m_keys.push_back(it->first);
    }
    return it->second;
  }

  std::uint32_t intern_value(const Value& value) {
    std::string type = to_string(type_of(value));
    std::string json = to_json(value);
    std::string id = type + '\n' + json;
    auto [it, added] = m_value_ids.try_emplace(std::move(id), 0);
    if (added) {
      it->second = static_cast<std::uint32_t>(m_values.size());
      m_text_bytes += it->first.size() + type.size() + json.size();  // kept twice
      m_values.emplace_back(std::move(type), std::move(json));
    }
    return it->second;
  }

  std::size_t m_max_entries;
  // Entries, for full(): users, holders and distinct values. Each user's holders: (key, value)
  // pairs, one per key; users keep a handful of keys.
  std::unordered_map<std::string, std::vector<Holder>> m_holders;
  std::size_t m_holder_count = 0;
  std::size_t m_text_bytes = 0;  // stream ids and distinct values held, for full()
  std::unordered_map<std::string, std::uint32_t> m_key_ids;
  std::vector<std::string> m_keys;
  std::unordered_map<std::string, std::uint32_t> m_value_ids;  // "type\njson" -> index
  std::vector<std::pair<std::string, std::string>> m_values;   // (type, json)
};

}  // namespace

std::unique_ptr<RebuildFold> ValueCountsProjection::rebuild_fold(std::size_t max_entries) const {
  return std::make_unique<ValueCountsFold>(max_entries);
}

}  // namespace prefstore::projections
