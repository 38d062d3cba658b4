// Results and options of the Store's time-travel calls: what changed between two moments
// (Store::diff), and point-in-time restores (Store::restore, Store::restore_all).
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "prefstore/as_of.hpp"
#include "prefstore/event.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/state_diff.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore {

// What changed in a user's preferences between two moments, and who changed it.
struct StateDiff {
  std::string user;
  AsOf from;
  AsOf to;
  std::int64_t from_version = 0;  // the stream version at `from` (0: no events yet)
  std::int64_t to_version = 0;    // the stream version at `to`
  std::vector<KeyDiff> keys;      // by key
};

struct RestoreOptions {
  // Restore only these keys. Default: every key the user has set now or had set then.
  std::optional<std::set<std::string>> keys;
  // Work out and return the plan, append nothing. Default false.
  bool dry_run = false;
  // Who restores and why; stored with the PreferencesRestored event. An empty reason becomes
  // "point-in-time restore to <moment>".
  Metadata metadata;
  // Id of the PreferencesRestored event, for a caller that may retry after an unknown outcome
  // (CommitInDoubtError). Default: a new random id.
  std::string event_id;
};

// The plan of a restore, and its result once appended.
struct RestorePlan {
  std::string user;
  AsOf to;
  std::int64_t target_version = 0;                // the stream version whose state is brought back
  std::int64_t current_version = 0;               // the stream version the plan was made against
  std::vector<RestoredPreference> changes;        // empty: the user is already as they were then
  std::optional<storage::AppendResult> appended;  // set when the PreferencesRestored landed
};

// Progress and outcome of a restore of every user.
struct RestoreAllProgress {
  std::int64_t users = 0;     // users visited so far
  std::int64_t restored = 0;  // users for whom a PreferencesRestored was appended (or planned)
  std::int64_t failed = 0;    // users whose restore failed (see failures)
  std::int64_t total = 0;     // user streams when the run started (an estimate)
  std::vector<std::string> failures;  // the first 100 failures: "user: message"
};

}  // namespace prefstore
