#include "prefstore/storage/event_log.hpp"

// cereal's JSON archive configures rapidjson (assertions that throw): it comes first, in a
// block of its own, which clang-format does not reorder (tests/json_include_check.sh).
#include <cereal/archives/json.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <regex>
#include <set>

#include "definitions_projection.hpp"
#include "distributed_mode.hpp"
#include "error_translation.hpp"
#include "event_rows.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"

namespace prefstore::storage {
namespace {

// --- SQL ------------------------------------------------------------------------------------
// One statement appends a batch of events to one or more streams and projects current state.
// $1: the events, a JSON array of {stream_id, ord (1-based within its stream), event_id,
//     event_type, schema_version, payload, metadata}, in append order.
// $2: the current-state changes, a JSON array of {stream_id, key, ord (the event that made the
//     change), type, value (absent for a reset), actor}; at most one per (stream_id, key).
// $3 (exact variant only): the expected version.
// Returns one row per stream that was appended to: stream_id, new version, last position,
// recorded_at in microseconds since the epoch. No row for a stream whose version check failed.
// When the log announces appends (EventLog::set_announce), the statement also calls
// pg_notify on the channel prefstore_events (one notification per transaction, delivered at
// commit: identical notifications are merged). Off by default: a NOTIFY takes a lock that
// serialises the commits of all notifying transactions (docs/performance.md).

constexpr const char* kInputSql = R"sql(
WITH input AS (
  SELECT x->>'stream_id' AS stream_id, (x->>'ord')::bigint AS ord,
         (x->>'event_id')::uuid AS event_id, x->>'event_type' AS event_type,
         (x->>'schema_version')::integer AS schema_version, x->'payload' AS payload,
         x->'metadata' AS metadata, t.seq
  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, seq)
),
counts AS (
  SELECT stream_id, count(*)::bigint AS n FROM input GROUP BY stream_id
),
)sql";

// Expected version "any": create the stream or add to it.
constexpr const char* kStreamAnySql = R"sql(
s AS (
  INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at, last_recorded_at)
  SELECT stream_id, n, now(), now(), clock_timestamp() FROM counts ORDER BY stream_id
  ON CONFLICT (stream_id) DO UPDATE
    SET version = st.version + excluded.version, updated_at = now(),
        last_recorded_at = greatest(clock_timestamp(), st.last_recorded_at)
  RETURNING st.stream_id, st.version AS new_version, st.last_recorded_at AS recorded_at
),
)sql";

// Expected version "no stream": only a new stream row may be created.
constexpr const char* kStreamNoneSql = R"sql(
s AS (
  INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at, last_recorded_at)
  SELECT stream_id, n, now(), now(), clock_timestamp() FROM counts ORDER BY stream_id
  ON CONFLICT (stream_id) DO NOTHING
  RETURNING st.stream_id, st.version AS new_version, st.last_recorded_at AS recorded_at
),
)sql";

// Expected version "exactly N" (N > 0): the row lock of the UPDATE serialises writers, and
// READ COMMITTED re-checks the version on the row as the previous writer left it.
constexpr const char* kStreamExactSql = R"sql(
s AS (
  UPDATE prefstore.streams AS st
  SET version = st.version + c.n, updated_at = now(),
      last_recorded_at = greatest(clock_timestamp(), st.last_recorded_at)
  FROM counts c
  WHERE st.stream_id = c.stream_id AND st.version = $3::bigint
  RETURNING st.stream_id, st.version AS new_version, st.last_recorded_at AS recorded_at
),
)sql";

constexpr const char* kEventsAndProjectionSql = R"sql(
e AS (
  INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, schema_version,
                                payload, metadata, recorded_at)
  SELECT i.stream_id, s.new_version - c.n + i.ord, i.event_id, i.event_type, i.schema_version,
         i.payload, i.metadata, s.recorded_at
  FROM input i JOIN s ON s.stream_id = i.stream_id JOIN counts c ON c.stream_id = i.stream_id
  ORDER BY i.seq
  RETURNING stream_id, stream_version, global_position
),
changes AS (
  SELECT x->>'stream_id' AS stream_id, x->>'key' AS key, (x->>'ord')::bigint AS ord,
         x->>'type' AS value_type, x->'value' AS value, x->>'actor' AS actor
  FROM jsonb_array_elements($2::jsonb) AS x
),
located AS (
  SELECT ch.stream_id, ch.key, ch.value_type, ch.value, ch.actor, e.stream_version,
         e.global_position, s.recorded_at
  FROM changes ch
  JOIN s ON s.stream_id = ch.stream_id
  JOIN counts c ON c.stream_id = ch.stream_id
  JOIN e ON e.stream_id = ch.stream_id AND e.stream_version = s.new_version - c.n + ch.ord
),
upserted AS (
  INSERT INTO prefstore.preferences_current AS p
         (stream_id, key, value_type, value, version, updated_at, updated_by, last_position)
  SELECT stream_id, key, value_type, value, stream_version, recorded_at, NULLIF(actor, ''),
         global_position
  FROM located WHERE value IS NOT NULL
  ON CONFLICT (stream_id, key) DO UPDATE
    SET value_type = excluded.value_type, value = excluded.value, version = excluded.version,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by,
        last_position = excluded.last_position
),
deleted AS (
  DELETE FROM prefstore.preferences_current AS p USING located l
  WHERE p.stream_id = l.stream_id AND p.key = l.key AND l.value IS NULL
),
last AS (
  SELECT stream_id, max(global_position) AS global_position FROM e GROUP BY stream_id
)
SELECT s.stream_id, s.new_version, last.global_position,
       (extract(epoch FROM s.recorded_at) * 1000000)::bigint)sql";

// The removals of an append ($1: its changes JSON) again, in a statement of its own after the
// append statement, in its transaction. The append statement's DELETE sees the snapshot taken
// when that statement began: while it waited for the stream row lock, a concurrent append of the
// same user may have inserted the row and committed, and that row stays invisible to it (READ
// COMMITTED re-checks only rows it can see). This statement's snapshot is taken with the lock
// held, so it sees that row; a later append of the user waits for the lock, so nothing newer
// can be there. Found by BackupConcurrency.BackupsDuringFourWritersMissNothingAndRepeatNothing
// (a reset racing a set of the same key left the set's row in place, about 1 run in 15).
constexpr const char* kRemoveCurrentSql = R"sql(
DELETE FROM prefstore.preferences_current AS p
USING jsonb_array_elements($1::jsonb) AS x
WHERE NOT x ? 'value' AND p.stream_id = x->>'stream_id' AND p.key = x->>'key'
)sql";

constexpr const char* kAnnounceSql = ",\n       pg_notify('prefstore_events', '')";

constexpr const char* kFromStreamsSql = R"sql(
FROM s JOIN last ON last.stream_id = s.stream_id
)sql";

// Distributed mode (Citus, storage/distribution.hpp): one user's append as one call of the
// function that Citus runs on the worker holding the user's shard; same result columns.
constexpr const char* kDistributedAppendSql =
    "SELECT * FROM prefstore.append_to_stream($1, $2::jsonb, $3::jsonb, $4::bigint)";

// Which of an append's event ids ($1, all of stream $2) are stored already, and whether with
// the same content. The stream as a parameter keeps the statement on one shard in distributed
// mode (a join on the JSON's stream ids would read every shard).
constexpr const char* kFindStoredSql = R"sql(
SELECT t.ord, ev.stream_version, ev.global_position,
       (ev.event_type = t.x->>'event_type' AND ev.payload = t.x->'payload') AS same,
       (extract(epoch FROM ev.recorded_at) * 1000000)::bigint
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, ord)
JOIN prefstore.events ev ON ev.stream_id = $2 AND ev.event_id = (t.x->>'event_id')::uuid
ORDER BY t.ord
)sql";

constexpr const char* kDefineSql = R"sql(
INSERT INTO prefstore.preference_definitions AS d
       (key, value_type, default_value, min_value, max_value, max_length, pattern, allowed_values,
        max_items, description, deprecated, deprecation_note, version, defined_at, updated_at,
        updated_by, last_position)
SELECT $1, $2, $3::jsonb, $4::double precision, $5::double precision, $6::integer, $7, $8::jsonb,
       $9::integer, $10, $11::boolean, $12, ev.stream_version, ev.recorded_at, ev.recorded_at,
       NULLIF($13, ''), ev.global_position
FROM prefstore.events ev WHERE ev.stream_id = $14 AND ev.stream_version = $15::bigint
ON CONFLICT (key) DO UPDATE
  SET value_type = excluded.value_type, default_value = excluded.default_value,
      min_value = excluded.min_value, max_value = excluded.max_value,
      max_length = excluded.max_length, pattern = excluded.pattern,
      allowed_values = excluded.allowed_values, max_items = excluded.max_items,
      description = excluded.description, deprecated = excluded.deprecated,
      deprecation_note = excluded.deprecation_note, version = excluded.version,
      updated_at = excluded.updated_at, updated_by = excluded.updated_by,
      last_position = excluded.last_position
)sql";

constexpr const char* kDeprecateSql = R"sql(
UPDATE prefstore.preference_definitions AS d
SET deprecated = true, deprecation_note = $2, version = ev.stream_version,
    updated_at = ev.recorded_at, updated_by = NULLIF($3, ''), last_position = ev.global_position
FROM prefstore.events ev
WHERE d.key = $1 AND ev.stream_id = $4 AND ev.stream_version = $5::bigint
)sql";

// The append statement for an expected-version kind, with or without the announcement.
const std::string& append_sql(ExpectedVersion::Kind kind, bool announce) {
  auto make = [](const char* stream_sql, bool notify) {
    return std::string(kInputSql) + stream_sql + kEventsAndProjectionSql +
           (notify ? kAnnounceSql : "") + kFromStreamsSql;
  };
  static const std::string sql[3][2] = {
      {make(kStreamAnySql, false), make(kStreamAnySql, true)},
      {make(kStreamNoneSql, false), make(kStreamNoneSql, true)},
      {make(kStreamExactSql, false), make(kStreamExactSql, true)}};
  switch (kind) {
    case ExpectedVersion::Kind::any:
      return sql[0][announce];
    case ExpectedVersion::Kind::no_stream:
      return sql[1][announce];
    case ExpectedVersion::Kind::exact:
      return sql[2][announce];
  }
  return sql[0][announce];
}

// The prepared statement's name of append_sql(kind, announce).
std::string append_statement_name(ExpectedVersion::Kind kind, bool announce) {
  std::string name = "prefstore_append_any";
  if (kind == ExpectedVersion::Kind::no_stream) name = "prefstore_append_no_stream";
  if (kind == ExpectedVersion::Kind::exact) name = "prefstore_append_exact";
  return announce ? name + "_announced" : name;
}

// --- building the statement's JSON parameters --------------------------------------------------

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void write_string(JsonWriter& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void write_raw(JsonWriter& w, std::string_view json, rapidjson::Type type) {
  w.RawValue(json.data(), json.size(), type);
}

struct Change {
  std::int64_t ord = 0;
  const Value* value = nullptr;  // nullptr: a reset
};

// Adds one stream's events to the batch documents.
class BatchBuilder {
 public:
  BatchBuilder() : m_events(m_events_buffer), m_changes(m_changes_buffer) {
    m_events.StartArray();
    m_changes.StartArray();
  }

  void add_stream(std::string_view stream_id, const std::vector<const NewEvent*>& events,
                  const std::vector<const Metadata*>& metadata, std::vector<std::string>& ids) {
    std::map<std::string_view, Change> changes;  // last change per key wins
    std::int64_t ord = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      ++ord;
      const NewEvent& ev = *events[i];
      const EncodedEvent encoded = encode(ev.data);
      m_events.StartObject();
      m_events.Key("stream_id");
      write_string(m_events, stream_id);
      m_events.Key("ord");
      m_events.Int64(ord);
      m_events.Key("event_id");
      write_string(m_events, ids[i]);
      m_events.Key("event_type");
      write_string(m_events, encoded.event_type);
      m_events.Key("schema_version");
      m_events.Int(encoded.schema_version);
      m_events.Key("payload");
      write_raw(m_events, encoded.payload_json, rapidjson::kObjectType);
      m_events.Key("metadata");
      write_raw(m_events, encode_metadata(*metadata[i]), rapidjson::kObjectType);
      m_events.EndObject();

      if (std::holds_alternative<PreferenceDefined>(ev.data) ||
          std::holds_alternative<PreferenceDeprecated>(ev.data)) {
        has_definition_events = true;
      }
      for (const PreferenceChange& change : preference_changes(ev.data)) {
        changes[change.key] = {ord, change.value};
      }
      m_actor_by_ord[ord] = &metadata[i]->actor;
    }
    for (const auto& [key, change] : changes) {
      m_changes.StartObject();
      m_changes.Key("stream_id");
      write_string(m_changes, stream_id);
      m_changes.Key("key");
      write_string(m_changes, key);
      m_changes.Key("ord");
      m_changes.Int64(change.ord);
      m_changes.Key("actor");
      write_string(m_changes, *m_actor_by_ord[change.ord]);
      if (change.value != nullptr) {
        m_changes.Key("type");
        write_string(m_changes, to_string(type_of(*change.value)));
        m_changes.Key("value");
        const std::string json = to_json(*change.value);
        write_raw(m_changes, json, rapidjson::kNullType);
      }
      m_changes.EndObject();
      if (change.value == nullptr) has_removals = true;
    }
    m_actor_by_ord.clear();
  }

  std::pair<std::string, std::string> finish() {
    m_events.EndArray();
    m_changes.EndArray();
    return {m_events_buffer.GetString(), m_changes_buffer.GetString()};
  }

  bool has_definition_events = false;
  bool has_removals = false;  // a change takes a user's value away (a reset)

 private:
  rapidjson::StringBuffer m_events_buffer;
  rapidjson::StringBuffer m_changes_buffer;
  JsonWriter m_events;
  JsonWriter m_changes;
  std::map<std::int64_t, const std::string*> m_actor_by_ord;
};

bool is_uuid(std::string_view s) {
  static const std::regex pattern(
      "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
  return std::regex_match(s.begin(), s.end(), pattern);
}

// The rules of the streams table's CHECK constraints, checked before the database: 1 to 256
// characters, no control characters (C0, DEL, C1).
void check_stream_id(std::string_view stream_id) {
  if (stream_id.empty()) throw ValidationError("stream id must not be empty");
  std::size_t characters = 0;
  for (std::size_t i = 0; i < stream_id.size(); ++i) {
    const auto c = static_cast<unsigned char>(stream_id[i]);
    if ((c & 0xC0) != 0x80) ++characters;
    const bool c1 = c == 0xC2 && i + 1 < stream_id.size() &&
                    static_cast<unsigned char>(stream_id[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(stream_id[i + 1]) <= 0x9F;
    if (c < 0x20 || c == 0x7F || c1) {
      throw ValidationError("stream id \"" + std::string(stream_id.substr(0, 64)) +
                            "\" contains a control character at byte " + std::to_string(i));
    }
  }
  if (characters > 256) {
    throw ValidationError("stream id is " + std::to_string(characters) +
                          " characters long; the limit is 256");
  }
}

// Fills in missing event ids and checks the given ones.
std::vector<std::string> event_ids_for(const std::vector<const NewEvent*>& events,
                                       std::set<std::string>& seen) {
  std::vector<std::string> ids;
  ids.reserve(events.size());
  for (const NewEvent* ev : events) {
    std::string id = ev->event_id.empty() ? new_event_id() : ev->event_id;
    if (!is_uuid(id)) {
      throw ValidationError("event id \"" + id + "\" is not a UUID (8-4-4-4-12 hex digits)");
    }
    std::transform(id.begin(), id.end(), id.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!seen.insert(id).second) {
      throw ValidationError("event id " + id + " appears twice in one append");
    }
    ids.push_back(std::move(id));
  }
  return ids;
}

bool is_event_id_violation(const pqxx::sql_error& e) {
  return std::string_view(e.what()).find("events_stream_id_event_id_key") != std::string_view::npos;
}

std::string expected_text(ExpectedVersion expected) {
  switch (expected.kind) {
    case ExpectedVersion::Kind::any:
      return "any version";
    case ExpectedVersion::Kind::no_stream:
      return "no stream (version 0)";
    case ExpectedVersion::Kind::exact:
      return "version " + std::to_string(expected.version);
  }
  return "?";
}

const char* nullable(const std::optional<std::string>& s) {
  return s ? s->c_str() : nullptr;
}

template <typename T>
std::optional<std::string> optional_text(const std::optional<T>& v) {
  if (!v) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *v);
    return std::string(buf, end);
  } else {
    return std::to_string(*v);
  }
}

// Projects definition events into preference_definitions, inside the append's transaction.
void project_definitions(pqxx::transaction_base& tx, const PooledConnection& handle,
                         std::string_view stream_id, const std::vector<NewEvent>& events,
                         std::int64_t first_version, const Metadata& metadata) {
  const std::string stream(stream_id);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const std::string version = std::to_string(first_version + static_cast<std::int64_t>(i));
    if (const auto* defined = std::get_if<PreferenceDefined>(&events[i].data)) {
      const PreferenceDefinition& d = defined->definition;
      std::optional<std::string> default_json;
      if (d.default_value) default_json = to_json(*d.default_value);
      std::optional<std::string> allowed_json;
      if (d.constraints.allowed_values) {
        std::string a = "[";
        for (const auto& v : *d.constraints.allowed_values)
          a += (a.size() > 1 ? "," : "") + to_json(v);
        allowed_json = a + "]";
      }
      const auto min = optional_text(d.constraints.min);
      const auto max = optional_text(d.constraints.max);
      const auto max_length = optional_text(d.constraints.max_length);
      const auto max_items = optional_text(d.constraints.max_items);
      std::optional<std::string> note;
      if (d.deprecated) note = d.deprecation_note;
      detail::exec_statement(tx, handle, "prefstore_define", kDefineSql, d.key, to_string(d.type),
                             nullable(default_json), nullable(min), nullable(max),
                             nullable(max_length), nullable(d.constraints.pattern),
                             nullable(allowed_json), nullable(max_items), d.description,
                             d.deprecated, nullable(note), metadata.actor, stream, version);
    } else if (const auto* deprecated = std::get_if<PreferenceDeprecated>(&events[i].data)) {
      detail::exec_statement(tx, handle, "prefstore_deprecate", kDeprecateSql, deprecated->key,
                             deprecated->note, metadata.actor, stream, version);
    }
  }
}

}  // namespace

namespace detail {
void project_definition_events(pqxx::transaction_base& tx, const PooledConnection& handle,
                               std::string_view stream_id, const std::vector<NewEvent>& events,
                               std::int64_t first_version, const Metadata& metadata) {
  project_definitions(tx, handle, stream_id, events, first_version, metadata);
}
}  // namespace detail

EventLog::EventLog(ConnectionPool& pool) : m_pool(pool) {}

void EventLog::set_announce(bool announce) noexcept {
  m_announce = announce;
}

bool EventLog::is_distributed(const PooledConnection& handle) {
  const int known = m_distributed.load(std::memory_order_relaxed);
  if (known >= 0) return known == 1;
  const bool yes = detail::distributed_on(detail::native(handle));
  m_distributed.store(yes ? 1 : 0, std::memory_order_relaxed);
  return yes;
}

void EventLog::set_consistency_tokens(bool tokens) noexcept {
  m_tokens = tokens;
}

AppendResult EventLog::with_token(const PooledConnection& handle, AppendResult result) const {
  if (!m_tokens) return result;
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_wal_position",
                                          "SELECT pg_catalog.pg_current_wal_insert_lsn()::text");
    result.consistency_token = parse_consistency_token(r.at(0).at(0).c_str());
  } catch (...) {
    // The write is committed; its retry with the same event ids finds it and reads the token.
    detail::rethrow_translated(
        "reading the consistency token of an append that landed (retry "
        "with the same event ids to get it)");
  }
  return result;
}

void EventLog::set_inline_hook(InlineHook hook) {
  m_inline = std::move(hook);
}

namespace {

// The events this transaction appended after `after_position`, for inline projections.
std::vector<RecordedEvent> appended_in_transaction(pqxx::transaction_base& tx,
                                                   const PooledConnection& handle,
                                                   std::int64_t after_position) {
  static const std::string sql =
      std::string("SELECT ") + detail::kEventColumns +
      " FROM prefstore.events WHERE transaction_id = pg_current_xact_id() AND global_position > "
      "$1 ORDER BY global_position";
  std::vector<RecordedEvent> out;
  for (const auto& row :
       detail::exec_statement(tx, handle, "prefstore_appended_here", sql, after_position)) {
    out.push_back(detail::decode_event_row(row));
  }
  return out;
}

void run_inline(const InlineHook& hook, pqxx::transaction_base& tx, const PooledConnection& handle,
                std::int64_t& after_position) {
  auto events = appended_in_transaction(tx, handle, after_position);
  if (events.empty()) return;
  after_position = events.back().global_position;
  detail::BorrowedTransaction borrowed{tx};
  UnitOfWork uow(borrowed);
  hook(uow, events);
}

}  // namespace

AppendResult EventLog::append(std::string_view stream_id, const std::vector<NewEvent>& events,
                              ExpectedVersion expected, const Metadata& metadata) {
  check_stream_id(stream_id);
  if (stream_id == kAuditStreamId) {
    throw ValidationError("stream " + std::string(kAuditStreamId) +
                          " is written only by erasure and retention (prefstore erase, "
                          "prefstore compact), not by appends");
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    const EventData& data = events[i].data;
    if (std::holds_alternative<StreamErased>(data) ||
        std::holds_alternative<StreamCompacted>(data) ||
        std::holds_alternative<PreferencesBaseline>(data)) {
      throw ValidationError(std::string("event ") + std::to_string(i) + " is a " +
                            event_type_name(data) +
                            ", which only erasure and retention write, not appends");
    }
  }
  if (events.empty()) {
    throw ValidationError("an append to stream " + std::string(stream_id) +
                          " must carry at least one event");
  }
  if (expected.kind == ExpectedVersion::Kind::exact && expected.version < 0) {
    throw ValidationError("expected version " + std::to_string(expected.version) + " is negative");
  }
  std::vector<const NewEvent*> event_ptrs;
  for (const auto& e : events) event_ptrs.push_back(&e);
  std::vector<const Metadata*> metadata_ptrs(events.size(), &metadata);
  std::set<std::string> seen;
  std::vector<std::string> ids = event_ids_for(event_ptrs, seen);

  BatchBuilder builder;
  builder.add_stream(stream_id, event_ptrs, metadata_ptrs, ids);
  const bool definitions = builder.has_definition_events;
  const bool removals = builder.has_removals;
  const auto [events_json, changes_json] = builder.finish();

  const std::string context = "appending " + std::to_string(events.size()) +
                              " event(s) to stream " + std::string(stream_id);
  auto handle = m_pool.acquire();
  pqxx::connection& conn = detail::native(handle);
  const std::string name = append_statement_name(expected.kind, m_announce);
  const std::string& sql = append_sql(expected.kind, m_announce);
  bool stored_ids_conflict = false;
  std::optional<AppendResult> landed;
  bool switched = false;  // the store was found distributed since the mode was cached
  bool distributed = false;
retry:
  try {
    pqxx::result r;
    distributed = is_distributed(handle);
    auto run = [&](pqxx::transaction_base& tx) {
      if (distributed) {
        const std::int64_t expected_arg =
            expected.kind == ExpectedVersion::Kind::any
                ? -1
                : (expected.kind == ExpectedVersion::Kind::no_stream ? 0 : expected.version);
        return detail::exec_statement(tx, handle, "prefstore_append_to_stream",
                                      kDistributedAppendSql, std::string(stream_id), events_json,
                                      changes_json, expected_arg);
      }
      return expected.kind == ExpectedVersion::Kind::exact
                 ? detail::exec_statement(tx, handle, name, sql, events_json, changes_json,
                                          expected.version)
                 : detail::exec_statement(tx, handle, name, sql, events_json, changes_json);
    };
    // Removals on a single server take a second statement (kRemoveCurrentSql).
    const bool remove_again = removals && !distributed;
    if (!definitions && !m_inline && !remove_again) {
      // Autocommit: the statement is its own transaction, one round trip.
      pqxx::nontransaction tx(conn);
      r = run(tx);
    } else {
      pqxx::work tx(conn);
      r = run(tx);
      if (!r.empty() && remove_again) {
        (void)detail::exec_statement(tx, handle, "prefstore_remove_current", kRemoveCurrentSql,
                                     changes_json);
      }
      if (!r.empty()) {
        const auto new_version = r[0][1].as<std::int64_t>();
        if (definitions) {
          project_definitions(tx, handle, stream_id, events,
                              new_version - static_cast<std::int64_t>(events.size()) + 1, metadata);
        }
        std::int64_t after = 0;
        if (m_inline) run_inline(m_inline, tx, handle, after);
      }
      tx.commit();
    }
    if (!r.empty()) {
      landed = AppendResult{r[0][1].as<std::int64_t>(), r[0][2].as<std::int64_t>(),
                            from_unix_micros(r[0][3].as<std::int64_t>()), false, std::nullopt};
    }
  } catch (const pqxx::unique_violation& e) {
    if (!is_event_id_violation(e)) detail::rethrow_translated(context);
    stored_ids_conflict = true;
  } catch (const pqxx::feature_not_supported&) {
    // The store was moved to Citus (migrate --distributed) while this process ran: Citus
    // refuses the single-server statement as a whole, so nothing was written. Once, ask again
    // and run the distributed append.
    bool now_distributed = false;
    if (!distributed && !switched) {
      try {
        now_distributed =
            m_distributed.load(std::memory_order_relaxed) == 1 || detail::distributed_on(conn);
      } catch (...) {
        // Unknown: report the statement's own error.
      }
    }
    if (now_distributed) {
      m_distributed.store(1, std::memory_order_relaxed);
      switched = true;
      goto retry;
    }
    detail::rethrow_translated(context);
  } catch (const pqxx::broken_connection& e) {
    if (conn.is_open()) {
      // The server answered with a connection-class error (SQLSTATE 08...): in distributed mode,
      // a Citus worker the statement needs is unreachable. The statement failed as a whole.
      throw UnavailableError(context +
                                 ": a node of the database is unreachable, nothing was "
                                 "written; retry when it is back: " +
                                 redact_conninfo(e.what()),
                             "08006");
    }
    throw CommitInDoubtError(
        context + ": the connection was lost while the append ran, so it " +
        "may or may not have landed; retry with the same event ids: " + redact_conninfo(e.what()));
  } catch (...) {
    detail::rethrow_translated(context);
  }
  if (landed) return with_token(handle, *landed);

  // The append did not land: a version mismatch or an event id stored already. A retry of an
  // append that did land (same ids, same payloads) gets the original result.
  try {
    pqxx::nontransaction tx(conn);
    const auto stored = detail::exec_statement(tx, handle, "prefstore_find_stored", kFindStoredSql,
                                               events_json, std::string(stream_id));
    if (!stored.empty()) {
      bool same = stored.size() == events.size();
      for (std::size_t i = 0; same && i < stored.size(); ++i) {
        same = stored[i][3].as<bool>() &&
               stored[i][1].as<std::int64_t>() ==
                   stored[0][1].as<std::int64_t>() + static_cast<std::int64_t>(i);
      }
      if (same) {
        const auto& last = stored[stored.size() - 1];
        landed = AppendResult{last[1].as<std::int64_t>(), last[2].as<std::int64_t>(),
                              from_unix_micros(last[4].as<std::int64_t>()), true, std::nullopt};
      } else {
        std::string which;
        bool different_content = false;
        for (const auto& row : stored) {
          const auto ord = row[0].as<std::size_t>();
          if (!which.empty()) which += ", ";
          which += ids[ord - 1];
          different_content = different_content || !row[3].as<bool>();
        }
        throw ConflictError(
            context + ": " +
            (different_content
                 ? "event id(s) " + which + " are already stored with different content"
                 : std::to_string(stored.size()) + " of the " + std::to_string(events.size()) +
                       " event ids are already stored (" + which +
                       "); a retry must repeat the original append exactly") +
            "; nothing was written");
      }
    } else if (stored_ids_conflict) {
      throw ConflictError(context + ": an event id is already stored; nothing was written");
    } else {
      const auto actual = tx.exec_params(
          "SELECT version FROM prefstore.streams WHERE stream_id = $1", std::string(stream_id));
      const std::int64_t actual_version = actual.empty() ? 0 : actual[0][0].as<std::int64_t>();
      throw VersionConflictError(
          context + ": expected " + expected_text(expected) + ", but the stream is at version " +
              std::to_string(actual_version) + "; nothing was written",
          std::string(stream_id),
          expected.kind == ExpectedVersion::Kind::no_stream ? 0 : expected.version, actual_version);
    }
  } catch (...) {
    detail::rethrow_translated(context);
  }
  return with_token(handle, *landed);  // a retry of an append that landed
}

std::int64_t EventLog::append_bulk(const std::vector<BulkEvent>& events, std::size_t batch_size) {
  if (events.empty()) return 0;
  if (batch_size == 0) throw UsageError("append_bulk: batch_size must be at least 1");
  std::set<std::string> seen;
  auto handle = m_pool.acquire();
  pqxx::connection& conn = detail::native(handle);
  const std::string name = append_statement_name(ExpectedVersion::Kind::any, m_announce);
  const std::string& sql = append_sql(ExpectedVersion::Kind::any, m_announce);
  const std::string context = "bulk-appending " + std::to_string(events.size()) + " events";
  std::int64_t appended = 0;
  try {
    const bool distributed = is_distributed(handle);
    pqxx::work tx(conn);
    std::int64_t inline_after = 0;
    for (std::size_t start = 0; start < events.size(); start += batch_size) {
      const std::size_t end = std::min(events.size(), start + batch_size);
      // Group the batch by stream, keeping each stream's order.
      std::map<std::string_view, std::vector<std::size_t>> by_stream;
      for (std::size_t i = start; i < end; ++i) {
        check_stream_id(events[i].stream_id);
        if (!std::holds_alternative<PreferenceSet>(events[i].event.data) &&
            !std::holds_alternative<PreferenceReset>(events[i].event.data)) {
          throw ValidationError(
              "bulk appends take only PreferenceSet and PreferenceReset events; "
              "event " +
              std::to_string(i) + " is " + event_type_name(events[i].event.data));
        }
        by_stream[events[i].stream_id].push_back(i);
      }
      BatchBuilder builder;
      for (const auto& [stream_id, indexes] : by_stream) {
        std::vector<const NewEvent*> evs;
        std::vector<const Metadata*> metas;
        for (std::size_t i : indexes) {
          evs.push_back(&events[i].event);
          metas.push_back(&events[i].metadata);
        }
        std::vector<std::string> ids = event_ids_for(evs, seen);
        if (distributed) {
          // One single-shard call per user, all in this (two-phase committed) transaction.
          BatchBuilder one;
          one.add_stream(stream_id, evs, metas, ids);
          const auto [events_json, changes_json] = one.finish();
          (void)detail::exec_statement(tx, handle, "prefstore_append_to_stream",
                                       kDistributedAppendSql, std::string(stream_id), events_json,
                                       changes_json, std::int64_t{-1});
          continue;
        }
        builder.add_stream(stream_id, evs, metas, ids);
      }
      if (!distributed) {
        const bool removals = builder.has_removals;
        const auto [events_json, changes_json] = builder.finish();
        (void)detail::exec_statement(tx, handle, name, sql, events_json, changes_json);
        if (removals) {
          (void)detail::exec_statement(tx, handle, "prefstore_remove_current", kRemoveCurrentSql,
                                       changes_json);
        }
      }
      if (m_inline) run_inline(m_inline, tx, handle, inline_after);
      appended += static_cast<std::int64_t>(end - start);
    }
    tx.commit();
  } catch (const pqxx::unique_violation& e) {
    if (is_event_id_violation(e)) {
      throw ConflictError(context + ": an event id is already stored (" +
                              redact_conninfo(e.what()) + "); nothing of the import was written",
                          "23505");
    }
    detail::rethrow_translated(context);
  } catch (...) {
    detail::rethrow_translated(context);
  }
  return appended;
}

std::optional<std::int64_t> EventLog::stream_version(std::string_view stream_id) {
  auto handle = m_pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = tx.exec_params("SELECT version FROM prefstore.streams WHERE stream_id = $1",
                                  std::string(stream_id));
    if (r.empty() || r[0][0].as<std::int64_t>() == 0) return std::nullopt;
    return r[0][0].as<std::int64_t>();
  } catch (...) {
    detail::rethrow_translated("reading the version of stream " + std::string(stream_id));
  }
}

std::int64_t EventLog::read_stream(std::string_view stream_id, ReadDirection direction,
                                   std::int64_t from_version, std::int64_t max_count,
                                   const std::function<bool(const RecordedEvent&)>& visit,
                                   std::int64_t page_size) {
  if (page_size <= 0) throw UsageError("read_stream: page_size must be positive");
  const bool forward = direction == ReadDirection::forward;
  static const std::string forward_sql = std::string("SELECT ") + detail::kEventColumns +
                                         " FROM prefstore.events WHERE stream_id = $1 AND "
                                         "stream_version >= $2 ORDER BY stream_version LIMIT $3";
  static const std::string backward_sql =
      std::string("SELECT ") + detail::kEventColumns +
      " FROM prefstore.events WHERE stream_id = $1 AND stream_version <= $2 "
      "ORDER BY stream_version DESC LIMIT $3";
  const std::string stream(stream_id);
  std::int64_t read = 0;
  std::int64_t next = from_version;
  auto handle = m_pool.acquire();
  try {
    while (read < max_count) {
      const std::int64_t limit = std::min(page_size, max_count - read);
      pqxx::result page;
      {
        pqxx::nontransaction tx(detail::native(handle));
        page = forward ? detail::exec_statement(tx, handle, "prefstore_read_forward", forward_sql,
                                                stream, next, limit)
                       : detail::exec_statement(tx, handle, "prefstore_read_backward", backward_sql,
                                                stream, next, limit);
      }
      for (const auto& row : page) {
        const RecordedEvent ev = detail::decode_event_row(row);
        ++read;
        next = forward ? ev.stream_version + 1 : ev.stream_version - 1;
        if (!visit(ev)) return read;
      }
      if (static_cast<std::int64_t>(page.size()) < limit) break;
    }
  } catch (...) {
    detail::rethrow_translated("reading stream " + stream);
  }
  return read;
}

std::vector<RecordedEvent> EventLog::read_stream(std::string_view stream_id,
                                                 std::int64_t from_version,
                                                 std::int64_t max_count) {
  std::vector<RecordedEvent> out;
  (void)read_stream(stream_id, ReadDirection::forward, from_version, max_count,
                    [&out](const RecordedEvent& ev) {
                      out.push_back(ev);
                      return true;
                    });
  return out;
}

LogPosition EventLog::read_all(LogPosition after, std::int64_t max_count,
                               const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                               std::int64_t page_size) {
  return read_log(after, max_count, true, visit, page_size);
}

LogPosition EventLog::read_committed(
    LogPosition after, std::int64_t max_count,
    const std::function<bool(const RecordedEvent&, LogPosition)>& visit, std::int64_t page_size) {
  return read_log(after, max_count, false, visit, page_size);
}

namespace {

// Decodes the rows of a log read. Payloads and metadata repeat a lot in a log (the same key set
// to the same value by many users, the same actor and source), and decoding the JSON is most of
// a read's client time, so the decoded forms of recent texts are kept and copied. decode and
// decode_metadata are pure functions of the text (the default upcasters are fixed), so a copy
// is the same value; a text that fails to decode is not kept, and fails again. Bounded: the
// memo is dropped when it reaches kMaxEntries or kMaxBytes of texts.
class LogRowDecoder {
 public:
  RecordedEvent decode_row(const pqxx::row& r) {
    return detail::event_from_row(
        r,
        [this](std::string type, int version, const pqxx::field& f) {
          return payload(std::move(type), version, f);
        },
        [this](const pqxx::field& f) { return metadata(f); });
  }

 private:
  static constexpr std::size_t kMaxEntries = 4096;
  static constexpr std::size_t kMaxBytes = std::size_t{4} << 20;

  const EventData& payload(std::string event_type, int schema_version, const pqxx::field& f) {
    const std::string_view text = text_of(f);
    m_key.assign(event_type).append(1, '\0').append(std::to_string(schema_version));
    m_key.append(1, '\0').append(text);
    if (const auto it = m_payloads.find(m_key); it != m_payloads.end()) return it->second;
    EventData data = decode(EncodedEvent{std::move(event_type), schema_version, std::string(text)});
    make_room(m_payloads, m_payload_bytes, m_key.size());
    return m_payloads.emplace(m_key, std::move(data)).first->second;
  }

  const Metadata& metadata(const pqxx::field& f) {
    const std::string_view text = text_of(f);
    if (const auto it = m_metadata.find(text); it != m_metadata.end()) return it->second;
    Metadata m = decode_metadata(text);
    make_room(m_metadata, m_metadata_bytes, text.size());
    return m_metadata.emplace(std::string(text), std::move(m)).first->second;
  }

  // The field's text; a null reads as pqxx's conversion of it would fail.
  static std::string_view text_of(const pqxx::field& f) {
    if (f.is_null()) (void)f.as<std::string>();  // throws pqxx's conversion error
    return {f.c_str(), f.size()};
  }

  template <class Map>
  static void make_room(Map& map, std::size_t& bytes, std::size_t adding) {
    if (map.size() >= kMaxEntries || bytes + adding > kMaxBytes) {
      map.clear();
      bytes = 0;
    }
    bytes += adding;
  }

  std::string m_key;
  std::map<std::string, EventData, std::less<>> m_payloads;
  std::size_t m_payload_bytes = 0;
  std::map<std::string, Metadata, std::less<>> m_metadata;
  std::size_t m_metadata_bytes = 0;
};

}  // namespace

LogPosition EventLog::read_log(LogPosition after, std::int64_t max_count, bool commit_safe,
                               const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                               std::int64_t page_size) {
  if (page_size <= 0) throw UsageError("read_all: page_size must be positive");
  // The text copy of the transaction id gets its own name: ORDER BY resolves a bare name to an
  // output column first, and would then sort xids as text ("1000" before "735").
  // Rows and the horizon come from the same statement, hence the same snapshot.
  static const std::string safe_sql =
      std::string("SELECT ") + detail::kEventColumns +
      ", ev.transaction_id::text AS transaction_id_text FROM prefstore.events AS ev "
      "WHERE (ev.transaction_id, ev.global_position) > ($1::text::xid8, $2::bigint) "
      "AND ev.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) "
      "ORDER BY ev.transaction_id, ev.global_position LIMIT $3";
  static const std::string committed_sql =
      std::string("SELECT ") + detail::kEventColumns +
      ", ev.transaction_id::text AS transaction_id_text FROM prefstore.events AS ev "
      "WHERE (ev.transaction_id, ev.global_position) > ($1::text::xid8, $2::bigint) "
      "ORDER BY ev.transaction_id, ev.global_position LIMIT $3";
  LogRowDecoder decoder;
  auto handle = m_pool.acquire();
  try {
    return detail::visit_pages(
        after, max_count, page_size,
        [&](LogPosition position, std::int64_t limit) {
          pqxx::nontransaction tx(detail::native(handle));
          return detail::exec_statement(
              tx, handle, commit_safe ? "prefstore_read_all_v2" : "prefstore_read_committed",
              commit_safe ? safe_sql : committed_sql, std::to_string(position.transaction_id),
              position.global_position, limit);
        },
        [&](const pqxx::row& row) { return decoder.decode_row(row); }, visit);
  } catch (...) {
    detail::rethrow_translated("reading the log after position " +
                               std::to_string(after.global_position));
  }
}

}  // namespace prefstore::storage
