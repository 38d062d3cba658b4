// rebuild_projection: rebuilds a projection from the start of the log into shadow tables, then
// swaps them in for the live ones in one short transaction.
//
// Readers never see an empty or half-built table: until the swap they read the live tables, and
// the swap (renames under a brief exclusive lock) hands them the complete new ones. Writes go on
// during the rebuild; the live projection keeps running until the swap, which locks its
// checkpoint, catches the shadow tables up to the same position, and hands the position over.
// Memory is bounded by the batch size, plus, for a projection with a rebuild_fold, that fold's
// cap (RebuildOptions::fold_max_entries). A killed rebuild resumes where it stopped when started
// again (its shadow tables and scratch checkpoint "<name>__rebuild" survive).
//
// In-memory fold: a rebuild starting from empty shadow tables (not a resumed one) of a projection
// whose rebuild_fold() gives a fold reads the log into that fold instead of applying batch by
// batch, in one transaction holding the scratch checkpoint; when the reads catch up with the
// commit-safe horizon, or the fold is full, the fold is flushed into the shadow tables and the
// checkpoint advanced in that same transaction. Nothing of that phase is committed before the
// flush: a rebuild interrupted during it starts it over from the start of the log. The rest of
// the log (after a full fold, and the swap's catch-up) goes through apply as usual.
// Distributed mode (Citus): the same steps per worker lane (storage/worker_log.hpp): shadow
// tables distributed like the live ones, one scratch checkpoint per lane
// ("<name>__rebuild__node<group>"), and a swap that hands each lane's position over. No
// in-memory fold; each catch-up while writers go on stops at what its lane held when it began.
// Thread-safety: one rebuild of a projection at a time (the scratch checkpoint's lock enforces it).
#pragma once

#include <cstdint>
#include <functional>

#include "prefstore/projections/projection.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::projections {

struct RebuildProgress {
  std::int64_t applied = 0;       // events applied to the shadow tables so far (folded included)
  std::int64_t folded = 0;        // of those, events folded in memory and not yet written
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
  // Cap of the projection's in-memory fold (Projection::rebuild_fold), in its entries; once
  // reached, the fold is flushed and the rest applied batch by batch. 0: no in-memory fold.
  // Default 1,000,000 (for ValueCountsProjection about 130 MiB with short values, measured; it
  // also stops at 64 MiB of stream ids and distinct values, however long the values).
  std::size_t fold_max_entries = 1000000;
};

// Rebuilds and swaps; returns the final progress. Throws UnavailableError when the database goes
// away (run it again to resume), ContentionError when another rebuild of the same projection
// runs, the projection's own error (with the event) when it fails on an event, and UsageError
// for a batch_size of 0 or a pool of fewer than 2 connections (one holds the transaction that
// writes the shadow tables while another reads the log).
RebuildProgress rebuild_projection(storage::ConnectionPool& pool, Projection& projection,
                                   const RebuildOptions& options = {});

}  // namespace prefstore::projections
