// Erasure: the right to erasure, through the one privileged path that may remove events.
//
// erase_stream() calls prefstore.erase_stream() (migration 0004) in one transaction: it appends
// a StreamErased record (who, why, how many events, positions, chain head) to the audit stream
// "$audit" and deletes the user's events, snapshots, current preferences and stream row. The
// append-only trigger lets those DELETEs through only because the record is in the same
// transaction, and only prefstore_owner may run the function. Read models of asynchronous
// projections forget the user when they apply the StreamErased record (see
// projections/value_counts.hpp). Thread-safety: reentrant; the pool is thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

// What an erasure removed, as recorded in its StreamErased record.
struct ErasureRecord {
  std::string stream_id;
  std::int64_t events = 0;          // events removed
  std::int64_t stream_version = 0;  // the stream's version when it was erased
  std::int64_t first_position = 0;  // global positions of its first and last event
  std::int64_t last_position = 0;
  std::string chain_head;           // chain hash of its last event, 64 hex digits
  std::int64_t audit_position = 0;  // global position of the StreamErased record in "$audit"
  std::string event_id;             // event id of the record
  bool already_erased = false;      // true: a retry found this erasure committed before
};

// Settings of one erasure.
struct EraseOptions {
  // Who asks for the erasure (an operator, a service); stored in the record's metadata.
  std::string actor;
  // Event id of the StreamErased record (a UUID). A retry with the same id after an unknown
  // outcome returns the stored record instead of failing. Default "": a new random id.
  std::string event_id;
};

// Erases the stream `stream_id` (a user's: not one of prefstore's own "$" streams) and records
// why. Requires: reason is not blank; the pool's role may execute prefstore.erase_stream()
// (prefstore_owner). Throws ValidationError for a "$" stream, a blank reason or a malformed
// event id; NotFound is a ValidationError naming the stream when it does not exist (and no
// erasure with event_id was committed); PermissionError (naming the role needed) when the role
// may not erase; UnavailableError / CommitInDoubtError as any write (retry with the same
// event_id).
ErasureRecord erase_stream(ConnectionPool& pool, std::string_view stream_id,
                           std::string_view reason, const EraseOptions& options = {});

}  // namespace prefstore::storage
