// rebuild_projection: rebuilds a projection from the start of the log into shadow tables, then
// swaps them in for the live ones in one short transaction.
//
// Readers never see an empty or half-built table: until the swap they read the live tables, and
// the swap (renames under a brief exclusive lock) hands them the complete new ones. Writes go on
// during the rebuild; the live projection keeps running until the swap, which locks its
// checkpoint, catches the shadow tables up to the same position, and hands the position over.
// Memory is bounded by the batch size. A killed rebuild resumes where it stopped when started
// again (its shadow tables and scratch checkpoint "<name>__rebuild" survive).
// Thread-safety: one rebuild of a projection at a time (the scratch checkpoint's lock enforces it).
#pragma once

#include <cstdint>
#include <functional>

#include "prefstore/projections/projection.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::projections {

struct RebuildProgress {
  std::int64_t applied = 0;       // events applied to the shadow tables so far
  std::int64_t total = 0;         // events in the log when the rebuild started (an estimate)
  storage::LogPosition position;  // where the shadow tables are
  bool resumed = false;           // true when an interrupted rebuild was continued
  bool swapped = false;           // true in the last report, after the swap
};

struct RebuildOptions {
  // Events per transaction while filling the shadow tables. Default 2000.
  std::size_t batch_size = 2000;
  // Called after each batch and after the swap. Default: none.
  std::function<void(const RebuildProgress&)> progress;
  // Start over even when an interrupted rebuild could be resumed. Default false.
  bool restart = false;
};

// Rebuilds and swaps; returns the final progress. Throws UnavailableError when the database goes
// away (run it again to resume), ContentionError when another rebuild of the same projection
// runs, and the projection's own error (with the event) when it fails on an event.
RebuildProgress rebuild_projection(storage::ConnectionPool& pool, Projection& projection,
                                   const RebuildOptions& options = {});

}  // namespace prefstore::projections
