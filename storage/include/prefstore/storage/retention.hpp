// Retention (opt-in): compacts the events of users' streams recorded before a cut-off into one
// baseline event per stream (PreferencesBaseline at the version of the last event compacted),
// and records each compaction in the audit stream "$audit" (StreamCompacted: who, when, why, how
// many events, the chain head). Nothing compacts by itself; an operator runs `prefstore
// compact` (for instance from cron). What is kept and what is lost: docs/operations.md,
// "Retention (opt-in)".
//
// One transaction per stream, as the pool's role, which must be allowed to execute
// prefstore.compact_stream() (migration 0006: prefstore_owner). Thread-safety: compact_streams
// may be called from any thread; callbacks run in the calling thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::storage {

// Which events are old enough to compact: those recorded before the cut-off. Give exactly one
// of the two fields.
struct RetentionPolicy {
  // The cut-off is the database clock at the start of the run minus this age (recorded_at
  // comes from the database clock, so the application server's clock plays no part). Not
  // negative. Default: none.
  std::optional<std::chrono::microseconds> older_than;
  // The cut-off as a moment; not later than the database clock. Default: none.
  std::optional<Timestamp> before;
};

// What happened to one stream.
struct CompactedStream {
  std::string stream_id;
  bool compacted = false;           // true: compacted (or, in a dry run, would be); false: skipped
  std::string skipped_reason;       // why it was skipped ("" when compacted)
  std::int64_t first_version = 0;   // the first event compacted (1, or a previous baseline's)
  std::int64_t up_to_version = 0;   // the baseline's version: the last event compacted
  std::int64_t events = 0;          // events removed: up_to_version - first_version + 1
  Timestamp up_to_recorded_at{};    // recorded_at of the last event compacted (and the baseline)
  std::int64_t preferences = 0;     // preferences in the baseline
  std::string chain_head;           // chain hash at up_to_version, 64 lower-case hex digits
  std::int64_t audit_position = 0;  // global_position of the StreamCompacted record (0: dry run)
};

// What a run did.
struct CompactReport {
  Timestamp cutoff{};                    // events recorded before this were compacted
  bool dry_run = false;                  // nothing was written
  std::int64_t streams_examined = 0;     // user streams looked at
  std::int64_t streams_compacted = 0;    // compacted (dry run: would be)
  std::int64_t events_removed = 0;       // events removed (dry run: would be)
  std::int64_t streams_skipped = 0;      // skipped (lagging projection, busy, unreadable event)
  std::vector<CompactedStream> skipped;  // the first 1000 of them, with their reasons
};

// Per-call options of compact_streams. Plain values; every field but policy and reason has a
// default.
struct CompactOptions {
  // The cut-off (required).
  RetentionPolicy policy;
  // Only this user's stream. Default std::nullopt: every user stream (not prefstore's own "$..."
  // streams), in stream id order.
  std::optional<std::string> user;
  // Why (required, non-blank): the audit record's and the baseline's metadata.reason.
  std::string reason;
  // Who: their metadata.actor. Default "": none recorded.
  std::string actor;
  // Plan only: report what would be compacted (and what would be skipped) and write nothing.
  // Needs only SELECT on the schema. Default false.
  bool dry_run = false;
  // Streams read per page of the keyset walk; each stream is still its own transaction. More
  // means fewer round trips and more memory. Default 500.
  std::size_t batch_size = 500;
  // Longest wait for a stream's row lock or for a projection inside a batch; then the stream is
  // skipped (reason "busy") and the run goes on. Default 5 s.
  std::chrono::milliseconds lock_timeout{5000};
  // Called once per stream that was compacted (or would be, in a dry run) or skipped, in stream
  // order. Default: none.
  std::function<void(const CompactedStream&)> on_stream;
  // Called every 100 streams examined and once at the end. Default: none.
  std::function<void(const CompactReport&)> progress;
};

// Compacts, for each user stream in options (one transaction each): locks the stream row; finds
// V, the last event recorded before the cut-off; leaves the stream alone when fewer than two
// stored events are that old (a stream's first event is compacted only with a later one, and a
// baseline already first stays); skips it when an asynchronous projection has read some but not
// all of the events up to V (it would miss them: catch it up and run again), waiting up to
// lock_timeout for a projection inside a batch; folds the state at V and calls
// prefstore.compact_stream(). A stream whose events cannot be decoded is skipped too; the run
// goes on. Re-running is safe: a compacted stream starts with its baseline.
// Throws ValidationError for a missing or doubled cut-off, a cut-off in the future, a negative
// age, a blank reason, bad metadata or a bad user id; UsageError for batch_size 0;
// PermissionError (before any stream) when the role may not execute prefstore.compact_stream
// (connect as a member of prefstore_owner); MigrationError when migration 0006 is missing;
// UnavailableError (a retry is safe: each stream is all or nothing).
[[nodiscard]] CompactReport compact_streams(ConnectionPool& pool, const CompactOptions& options);

}  // namespace prefstore::storage
