// AppendOptions: per-call settings of a write (set, set_many, reset, define, deprecate).
// Thread-safety: a plain value.
#pragma once

#include <string>
#include <vector>

#include "prefstore/storage/event_log.hpp"

namespace prefstore {

using storage::AppendResult;
using storage::ExpectedVersion;

struct AppendOptions {
  // The version the caller believes the user's stream is at. Default: any (last writer wins).
  // A mismatch raises VersionConflictError carrying the actual version.
  ExpectedVersion expected = ExpectedVersion::any();
  // Event ids to use, one per event the call writes (set_many: one per value, in order).
  // Default: new random ids. A caller that retries after an unknown outcome (UnavailableError,
  // CommitInDoubtError) passes the same ids so that the retry stores nothing twice.
  std::vector<std::string> event_ids;
};

}  // namespace prefstore
