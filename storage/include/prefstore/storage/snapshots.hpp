// Snapshots and as-of state: a user's folded state at any moment of their history, loaded from
// the newest usable snapshot at or before that moment plus the events after it, so the cost
// depends on the events since the snapshot, not on the length of the history.
//
// A snapshot (prefstore.snapshots) is a cache: state bytes (snapshot_codec.hpp) with a format
// version and a SHA-256 checksum. One that fails its checksum or cannot be decoded is reported
// in the result, skipped (the next older one is used) and can be rewritten from events with
// save_snapshot. Thread-safety: functions taking a UnitOfWork run in that unit's thread; those
// taking a pool may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prefstore/as_of.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore::storage {

// A snapshot that was skipped because it is unusable.
struct BadSnapshot {
  std::int64_t stream_version = 0;
  std::string problem;  // "checksum mismatch", or the decoding error
};

// A stream's state as of a moment, and how it was obtained.
struct StreamState {
  PreferenceState state;
  std::int64_t version = 0;                // stream_version of the last event folded in; 0: none
  std::int64_t last_position = 0;          // its global_position (0 when none)
  Timestamp last_recorded_at{};            // its recorded_at
  std::int64_t snapshot_version = 0;       // the snapshot the load started from; 0: from the start
  std::int64_t events_replayed = 0;        // events folded after that snapshot
  std::vector<BadSnapshot> bad_snapshots;  // unusable snapshots met (newest first)
};

// Loads the stream's state as of `as_of` in uow (see as_of.hpp for what each kind includes).
// Reads events in pages, so memory is bounded by the state and a page. A stream without events
// (or none by then) gives version 0 and an empty state. A retention baseline
// (PreferencesBaseline, retention.hpp) stands for the whole state at its version; a moment
// before it throws ValidationError naming the user, the moment and the baseline's version,
// position and time, since the events before it are gone. Throws CorruptDataError when an event
// cannot be decoded, and the translated database errors.
[[nodiscard]] StreamState load_state(UnitOfWork& uow, std::string_view stream_id,
                                     const AsOf& as_of);

// Writes a snapshot of `state` (its version, position, time) in format kSnapshotFormatVersion,
// replacing a row at the same version (e.g. a corrupt one). Returns false and writes nothing
// when state.version is 0. Requires: state was loaded for stream_id.
bool save_snapshot(UnitOfWork& uow, std::string_view stream_id, const StreamState& state);

// One row of prefstore.snapshots, with its checksum checked.
struct SnapshotInfo {
  std::string stream_id;
  std::int64_t stream_version = 0;
  int format_version = 0;
  std::int64_t size_bytes = 0;
  std::int64_t last_position = 0;
  Timestamp last_recorded_at{};
  Timestamp created_at{};
  bool intact = false;  // checksum matches and the format is known
};

// Snapshots, by stream then version; of one stream when stream_id is given. At most `limit`
// rows, after the keyset (after_stream, after_version) for paging.
[[nodiscard]] std::vector<SnapshotInfo> list_snapshots(ConnectionPool& pool,
                                                       std::optional<std::string> stream_id,
                                                       std::int64_t limit = 1000,
                                                       std::string after_stream = "",
                                                       std::int64_t after_version = 0);

// Deletes all but the newest `keep` snapshots of every stream (keep >= 1), and every snapshot
// whose checksum fails. Returns the number of rows deleted.
std::int64_t prune_snapshots(ConnectionPool& pool, std::int64_t keep);

struct SnapshotRunProgress {
  std::int64_t streams = 0;  // streams visited so far
  std::int64_t written = 0;  // snapshots written so far
  std::int64_t total = 0;    // user streams when the run started (an estimate)
};

// Takes a snapshot of the stream's current state unless one exists at its version; returns true
// when one was written.
bool snapshot_stream(ConnectionPool& pool, std::string_view stream_id);

// Takes a snapshot of every user stream (not prefstore's own "$..." streams), one transaction
// per stream, walking the streams by keyset so memory stays bounded. progress is called every
// 100 streams and at the end.
SnapshotRunProgress snapshot_all_streams(
    ConnectionPool& pool, const std::function<void(const SnapshotRunProgress&)>& progress = {});

}  // namespace prefstore::storage
