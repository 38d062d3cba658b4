// InlineProjections: runs projections inside each append's transaction, so that their tables
// are up to date when the append returns (the same components a ProjectionRunner runs
// asynchronously). An inline projection has no checkpoint: it sees every event as it is
// appended. A failing inline projection fails the append, and nothing of it is written.
// Thread-safety: the hook may run on many threads at once; each call gets its own transaction,
// so the projections must not keep state outside their tables.
#pragma once

#include <memory>
#include <vector>

#include "prefstore/projections/projection.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::projections {

// The hook to give EventLog::set_inline_hook: applies every projection, in order, to the
// appended events, writing their live tables.
[[nodiscard]] storage::InlineHook inline_hook(std::vector<std::shared_ptr<Projection>> projections);

}  // namespace prefstore::projections
