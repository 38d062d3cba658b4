// Audit queries: who changed what, when, from where and why. Filters over the event log (user,
// key or key prefix, actor, source, event type, correlation id, time and position ranges), newest
// or oldest first, paged by an opaque keyset cursor on global_position (never OFFSET), each
// filter served by an index of migration 0005 (docs/schema.md, "Audit queries").
//
// Pages neither repeat nor skip events while writers append (see AuditPage for exactly what is
// guaranteed). Thread-safety: plain values; query_audit may be called from any thread at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/event.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::storage {

// The order of an audit query's events, by global_position.
enum class AuditOrder {
  newest_first,  // the default: the latest change first
  oldest_first,  // in the order the log was written; only events of finished transactions
};

inline constexpr std::int64_t kDefaultAuditLimit = 100;
inline constexpr std::int64_t kMaxAuditLimit = 10000;

// What to look for. Every filter that is set must hold (AND); an unset filter matches everything.
// Strings are compared exactly (case-sensitive). Per-call options, like ReadOptions: plain values.
struct AuditQuery {
  // Events of this stream only: a user id, or one of prefstore's own streams ("$def:<key>").
  std::optional<std::string> user;
  // Events about this preference key: its sets and resets, its definition events, and restores
  // (PreferencesRestored) that include it. Excludes key_prefix.
  std::optional<std::string> key;
  // Events about any key starting with this text ("calendar." or "calendar.working"): a
  // lowercase letter, then lowercase letters, digits, '_' or '.'; at most 128 characters.
  // Excludes key.
  std::optional<std::string> key_prefix;
  std::optional<std::string> actor;           // metadata actor, e.g. "user:alice"
  std::optional<std::string> source;          // metadata source service, e.g. "settings-web"
  std::optional<std::string> event_type;      // a known type name, e.g. "PreferenceReset"
  std::optional<std::string> correlation_id;  // metadata correlation id
  std::optional<Timestamp> from_time;         // recorded_at >= from_time
  std::optional<Timestamp> to_time;           // recorded_at <= to_time
  std::optional<std::int64_t> from_position;  // global_position >= from_position (>= 1)
  std::optional<std::int64_t> to_position;    // global_position <= to_position (>= 1)
  AuditOrder order = AuditOrder::newest_first;
  // Events per page: 1 to kMaxAuditLimit. Default kDefaultAuditLimit.
  std::int64_t limit = kDefaultAuditLimit;
  // Where to go on: a cursor of an earlier page of the same query (same filters and order; the
  // limit may change). Absent for the first page.
  std::optional<std::string> cursor;
};

// One page of an audit query.
//
// Guarantees, while writers append concurrently: a walk (the first page, then each next_cursor
// in turn) never returns an event twice.
// - newest_first: events in decreasing global_position; every event committed before the first
//   page is returned exactly once. An event that commits during the walk is returned if its
//   position is below the cursor when it commits, else not (it is newer than the walk).
// - oldest_first: only events of transactions older than every transaction still running
//   (transaction_id < pg_snapshot_xmin), as the projections' catch-up reads the log; a long
//   transaction holds them back. Positions are taken at insert and become visible at commit, so
//   an event can commit after the walk passed its position; such an event is returned by the
//   next page, ahead of the others (the only exception to increasing positions), never
//   skipped. So a walk continued with resume_cursor until the writers have stopped returns every
//   event exactly once.
// Retention and erasure remove events (and put a baseline at an old position): a walk across
// them may have returned events that are gone and does not return the baseline.
struct AuditPage {
  std::vector<RecordedEvent> events;
  // The cursor of the next page; std::nullopt when this page is the last one (no more events
  // match now).
  std::optional<std::string> next_cursor;
  // oldest_first only: a cursor that goes on after this page, also when it is the last one, so
  // that a later query returns exactly the events appended (or committed) since. std::nullopt
  // for newest_first.
  std::optional<std::string> resume_cursor;
};

// Throws ValidationError naming the field and value when a filter is malformed (an empty text, a
// key that is not a key, a bad key prefix, an unknown event type, key and key_prefix together),
// a range is backwards (from after to), the limit is outside 1..kMaxAuditLimit, or the cursor is
// malformed or belongs to other filters or another order.
void validate_audit_query(const AuditQuery& query);

// Runs one page of the query: one parameterised statement (no value is ever spliced into SQL).
// Throws ValidationError as validate_audit_query; UnavailableError when the database cannot be
// reached; CorruptDataError when a stored event cannot be decoded. Read-only, so a retry is safe.
[[nodiscard]] AuditPage query_audit(ConnectionPool& pool, const AuditQuery& query);

// How explain_audit runs EXPLAIN.
enum class ExplainMode {
  plan_json,        // EXPLAIN (FORMAT JSON): the plan only, the statement is not run
  analyze_buffers,  // EXPLAIN (ANALYZE, BUFFERS): runs it; text with times and buffers
};

// The plan PostgreSQL chooses for the statement query_audit would run for this query (for the
// documentation and the tests that check every filter is served by an index). Throws as
// query_audit.
[[nodiscard]] std::string explain_audit(ConnectionPool& pool, const AuditQuery& query,
                                        ExplainMode mode);

// The preference keys an event is about, as the key filters match them (and as
// prefstore.event_keys() in SQL gives them): the key of a set, reset, definition or deprecation;
// every key of a restore (in its order); none for other events.
[[nodiscard]] std::vector<std::string> audit_event_keys(const EventData& event);

}  // namespace prefstore::storage
