// EventLog: the append-only log of events in PostgreSQL, with optimistic concurrency per stream,
// idempotent appends, the inline projection of current state, and commit-safe reads.
//
// An append either lands whole (all its events, the stream's new version and the current-state
// rows, in one transaction) or raises; nothing is ever dropped silently (DESIGN pitfall 8).
// Thread-safety: every member function may be called from any thread at once (connections come
// from the pool).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prefstore/consistency_token.hpp"
#include "prefstore/event.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore::storage {

// What the caller believes the stream's version is.
struct ExpectedVersion {
  enum class Kind { any, no_stream, exact };
  Kind kind = Kind::any;
  std::int64_t version = 0;  // for exact

  static ExpectedVersion any() noexcept { return {Kind::any, 0}; }
  // The stream must have no events yet.
  static ExpectedVersion no_stream() noexcept { return {Kind::no_stream, 0}; }
  // The stream must be at exactly this version (0 means no stream).
  static ExpectedVersion exactly(std::int64_t version) noexcept {
    return version == 0 ? no_stream() : ExpectedVersion{Kind::exact, version};
  }
};

// One event to append. An empty event_id gets a new random one; a caller that may retry sets it
// (so that a retry after an unknown outcome is recognised and stores nothing twice).
struct NewEvent {
  std::string event_id;
  EventData data;
};

struct AppendResult {
  std::int64_t stream_version = 0;   // the stream's version after the append (its last event's)
  std::int64_t global_position = 0;  // global_position of the append's last event
  Timestamp recorded_at{};           // when the events were recorded (database clock)
  bool duplicate = false;  // true when every event id was already stored: nothing was written
  // Where the write's commit ended in the primary's WAL, for reading it back from a standby
  // (read-your-writes). Set when the log was asked for tokens (set_consistency_tokens), also on
  // a duplicate (the original write is committed before it).
  std::optional<ConsistencyToken> consistency_token;
};

// A place in the log for commit-safe readers: the (transaction_id, global_position) pair of the
// last event read (DESIGN pitfall 1). {0, 0} is the start.
struct LogPosition {
  std::uint64_t transaction_id = 0;
  std::int64_t global_position = 0;
  friend bool operator==(const LogPosition&, const LogPosition&) = default;
};

// One event of a bulk import.
struct BulkEvent {
  std::string stream_id;
  NewEvent event;
  Metadata metadata;
};

enum class ReadDirection { forward, backward };

// Called inside an append's transaction with the events it just appended (positions and
// times filled in): inline projections write their tables here. Throwing fails the append, and
// nothing of it is written.
using InlineHook = std::function<void(UnitOfWork&, const std::vector<RecordedEvent>&)>;

class EventLog {
 public:
  // Requires: pool outlives the log.
  explicit EventLog(ConnectionPool& pool);

  // Runs hook in every later append's transaction (single and bulk). An append then costs two
  // round trips more (BEGIN/COMMIT and reading back the events). Requires: called before the log
  // is shared between threads.
  void set_inline_hook(InlineHook hook);

  // Whether later appends (single and bulk) announce themselves with a NOTIFY on the channel
  // prefstore_events (kEventsChannel), which wakes listening projection runners at once.
  // Default false: runners then find new events by polling (RunnerOptions::poll_interval).
  // The NOTIFY costs throughput under concurrent writers: PostgreSQL serialises the commits of
  // notifying transactions (a lock held from pre-commit to the end of the commit, WAL flush
  // included); measured in docs/performance.md. Requires: called before the log is shared
  // between threads.
  void set_announce(bool announce) noexcept;

  // Whether later append() calls return a ConsistencyToken: one statement more after the commit,
  // on the same connection (pg_current_wal_insert_lsn(), which is past the commit record then).
  // Default false. Requires: called before the log is shared between threads.
  void set_consistency_tokens(bool tokens) noexcept;

  // Appends events to one stream, checks the expected version under the stream's row lock,
  // records them with the database clock (never decreasing within the stream), and updates
  // preferences_current (PreferenceSet / PreferenceReset) or preference_definitions
  // (PreferenceDefined / PreferenceDeprecated) in the same transaction. The common case of
  // user-stream events is one statement, one round trip.
  // Returns the new version and position. When every event id is already stored with the same
  // payload (a retry), returns the original result with duplicate = true and writes nothing.
  // Throws VersionConflictError (with the actual version) on a version mismatch; ConflictError
  // when only some of the ids are stored, or an id is stored with another payload;
  // ValidationError for an empty batch, an invalid stream id or duplicate ids within the batch;
  // UnavailableError / ContentionError / CommitInDoubtError (retry with the same ids is safe).
  // Requires: the events were validated against their definitions (the facade does it).
  AppendResult append(std::string_view stream_id, const std::vector<NewEvent>& events,
                      ExpectedVersion expected, const Metadata& metadata);

  // Appends many events to many streams at once (imports), with expected version "any" for
  // each stream, in one transaction and one statement per batch of `batch_size` events (in
  // distributed mode one single-shard call per user of the batch, committed in two phases by
  // Citus): all land or none does. Events of one stream keep their order. Returns the number of
  // events appended. Throws as append(), except that there is no duplicate detection: an event id
  // stored already is a ConflictError naming it, also when a retry follows an unknown outcome
  // (check the log for the ids before re-importing after a CommitInDoubtError).
  std::int64_t append_bulk(const std::vector<BulkEvent>& events, std::size_t batch_size = 5000);

  // The stream's current version; std::nullopt when it has no events.
  [[nodiscard]] std::optional<std::int64_t> stream_version(std::string_view stream_id);

  // Reads a stream from `from_version` (inclusive) in the given direction, calling `visit` for
  // each event until it returns false or `max_count` events were read. Pages through the stream
  // `page_size` events at a time, so memory stays bounded. A from_version past the end reads
  // nothing; backward reading from INT64_MAX starts at the last event. Returns the count read.
  // Throws CorruptDataError when a stored event cannot be decoded.
  std::int64_t read_stream(std::string_view stream_id, ReadDirection direction,
                           std::int64_t from_version, std::int64_t max_count,
                           const std::function<bool(const RecordedEvent&)>& visit,
                           std::int64_t page_size = 500);

  // Convenience: up to max_count events of a stream, forward from from_version.
  [[nodiscard]] std::vector<RecordedEvent> read_stream(std::string_view stream_id,
                                                       std::int64_t from_version = 1,
                                                       std::int64_t max_count = INT64_MAX);

  // Reads the whole log after `after` in commit-safe order: only events whose transaction is
  // below the oldest still-running transaction (pg_snapshot_xmin), ordered by (transaction_id,
  // global_position), so an event whose transaction commits late is never skipped (DESIGN
  // pitfall 1). Each page is one statement (rows and horizon from one snapshot, pitfall 12).
  // Calls visit(event, position) until it returns false or max_count events were read; returns
  // the position of the last event visited (`after` when none).
  LogPosition read_all(LogPosition after, std::int64_t max_count,
                       const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                       std::int64_t page_size = 1000);

  // Like read_all, but reads every committed event after `after` without waiting for older
  // transactions still running. Requires: no writer can be appending (the caller holds the
  // writers off, e.g. by a lock on the table they all write); otherwise events can be skipped.
  LogPosition read_committed(LogPosition after, std::int64_t max_count,
                             const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                             std::int64_t page_size = 1000);

 private:
  // result, with its consistency token when the log was asked for tokens.
  AppendResult with_token(const PooledConnection& handle, AppendResult result) const;
  // Whether the database is in distributed mode (prefstore.append_to_stream exists); asked once.
  bool is_distributed(const PooledConnection& handle);
  LogPosition read_log(LogPosition after, std::int64_t max_count, bool commit_safe,
                       const std::function<bool(const RecordedEvent&, LogPosition)>& visit,
                       std::int64_t page_size);

  ConnectionPool& m_pool;
  InlineHook m_inline;
  bool m_announce = false;
  bool m_tokens = false;
  std::atomic<int> m_distributed{-1};  // -1 not asked yet, 0 single server, 1 distributed
};

}  // namespace prefstore::storage
