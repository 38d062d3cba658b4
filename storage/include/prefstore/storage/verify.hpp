// Verify: tamper evidence. Recomputes every stream's hash chain (migration 0004) in C++ with
// OpenSSL from the events' columns, checks that versions are contiguous and that each stream row
// names its last event, that every event decodes, that retention baselines and erasures match
// their records in "$audit", and that the read models (preferences_current,
// preference_definitions, preference_value_holders/counts up to their checkpoint, snapshots)
// equal the fold of the log; in distributed mode also that no event was brought to another
// worker by a Citus shard move. It names the first bad event of each stream.
//
// Read-only: one REPEATABLE READ READ ONLY transaction, so the log and the read models are
// compared at one snapshot; a role with SELECT on schema prefstore (prefstore_reader) suffices.
// Memory is bounded by one page of streams and one batch of events, whatever the log's length.
// Thread-safety: verify_store may be called from any thread; callbacks run in the calling thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

// What is wrong. The names (to_string) appear in `prefstore verify --json` output and in
// operators' scripts: never rename them.
enum class VerifyProblemKind {
  chain_mismatch,           // events.chain_hash is not SHA-256(previous link || canonical bytes)
  version_gap,              // a version is not the previous one + 1, or the first is not 1
  stream_version_mismatch,  // streams.version is not the last event's version (or no such row)
  unreadable_event,         // the event's payload or metadata cannot be decoded
  unmatched_baseline,       // a PreferencesBaseline without its StreamCompacted record in "$audit"
  erased_stream_present,    // events older than a StreamErased record naming their stream
  projection_mismatch,      // a read-model row differs from the fold of the log
  snapshot_mismatch,        // an intact snapshot differs from the fold at its version
  checkpoint_ahead,         // a projection checkpoint points past the end of the log
  damaged_snapshot,         // (warnings only) a snapshot failing its checksum, format or decoding
  moved_by_shard_move,      // distributed mode: an event on another worker than the one that
                            // wrote it (a Citus shard move), which the per-worker projectors
                            // may skip or repeat; reported once per stream
};

// The persisted name of a kind: "chain_mismatch", "version_gap", ...
[[nodiscard]] const char* to_string(VerifyProblemKind kind) noexcept;

// One finding. For a problem of the log it names the first bad event of its stream.
struct VerifyProblem {
  VerifyProblemKind kind = VerifyProblemKind::chain_mismatch;
  std::string stream_id;            // "" when no stream is involved (a checkpoint, counts)
  std::int64_t stream_version = 0;  // of the event (or row) named; 0 when none
  std::int64_t global_position = 0;
  std::string event_id;  // the event named (lower-case, dashed); "" when none
  std::string message;   // names the event and says what is wrong, with the values involved
};

// The head of a verified stream, for recording elsewhere (a chain rewritten consistently by a
// superuser is caught only by comparing heads recorded earlier).
struct StreamHead {
  std::string stream_id;
  std::int64_t version = 0;        // last event's version (0: no events)
  std::int64_t last_position = 0;  // its global_position
  std::string chain_head;          // its chain_hash, 64 lower-case hex digits ("" when none)
  bool intact = true;              // false when a problem of the log was found in this stream
};

// Where a run is, for progress output.
struct VerifyProgress {
  std::int64_t streams = 0;        // streams verified so far
  std::int64_t events = 0;         // events verified so far
  std::int64_t total_streams = 0;  // stream rows in the snapshot
};

// What a run found. In a one-stream run the counts are the stream's, and the $audit counts are
// the records naming it.
struct VerifyReport {
  std::int64_t streams_checked = 0;    // streams with a row or events that were walked
  std::int64_t events_checked = 0;     // events read (also those after a stream's first problem)
  std::int64_t snapshots_checked = 0;  // snapshot rows looked at (intact or not)
  std::int64_t projection_rows_checked = 0;      // read-model rows compared with the fold
  std::int64_t value_counts_streams_behind = 0;  // user streams whose last event is past the
                                                 // checkpoint of preference_value_counts: not
                                                 // compared (a projection behind is not wrong)
  std::int64_t erasure_records = 0;              // StreamErased records in "$audit"
  std::int64_t compaction_records = 0;           // StreamCompacted records in "$audit"
  std::int64_t log_end_position = 0;             // the greatest global_position in the snapshot
  bool projections_checked = false;              // VerifyOptions::check_projections
  std::int64_t problem_count = 0;       // every problem found, also those beyond max_problems
  std::vector<VerifyProblem> problems;  // the first max_problems, in stream order
  std::vector<VerifyProblem> warnings;  // not corruption (damaged snapshots); at most max_problems
  std::vector<std::string> notes;       // what was not compared and why

  // True when no problem was found (warnings do not count).
  [[nodiscard]] bool clean() const noexcept { return problem_count == 0; }
};

// Per-call options of verify_store (like ReadOptions: plain values; every field has a default).
struct VerifyOptions {
  // Which stream: std::nullopt (default) verifies every stream, prefstore's own ("$audit",
  // "$def:<key>") included, and the checks across streams (rows of read models without a
  // stream, value counts against their holders, checkpoints). A stream id verifies that
  // stream and its read-model rows only.
  std::optional<std::string> stream_id;
  // Events per round trip. More means fewer round trips and more memory. Default 2000.
  std::size_t batch_size = 2000;
  // Streams per page: their read-model rows are loaded together. Default 200.
  std::size_t streams_per_page = 200;
  // Compare the read models with the fold of the log. false checks the log alone (chains,
  // versions, stream rows, decoding, baselines, erasures), which is faster. Default true.
  bool check_projections = true;
  // Called after each page of streams and once at the end. Default: none.
  std::function<void(const VerifyProgress&)> progress;
  // Called once per verified stream, in stream order, with its head. Default: none.
  std::function<void(const StreamHead&)> on_stream;
  // Problems kept in the report; the count goes on past it. Default 1000.
  std::size_t max_problems = 1000;
};

// Verifies the store (see the top of this header) and returns what it found; damaged data is
// reported, not thrown. Throws UsageError for a batch_size, streams_per_page or max_problems of
// 0 or an empty stream_id, MigrationError when the schema has no chain_hash
// (migration 0004 not applied), PermissionError when the role may not read the tables,
// UnavailableError (safe to retry: it writes nothing).
[[nodiscard]] VerifyReport verify_store(ConnectionPool& pool, const VerifyOptions& options = {});

}  // namespace prefstore::storage
