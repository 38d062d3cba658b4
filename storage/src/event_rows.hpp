// Storage-internal: the columns every event read selects, and the row they give as a
// RecordedEvent (decoded and upcast).
#pragma once

#include <algorithm>
#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <utility>

#include "field_cursor.hpp"
#include "prefstore/event.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::storage::detail {

// stream_id, stream_version, global_position, event_id, event_type, schema_version, payload,
// metadata, recorded_at (unix microseconds), in this order.
inline constexpr const char* kEventColumns =
    "stream_id, stream_version, global_position, event_id::text, event_type, schema_version, "
    "payload::text, metadata::text, (extract(epoch FROM recorded_at) * 1000000)::bigint";

// The event of a row that starts with kEventColumns, its payload decoded by
// payload(event_type, schema_version, payload field) and its metadata by metadata(field) (a
// log read passes memoizing ones). Throws what they throw.
template <class DecodePayload, class DecodeMetadata>
RecordedEvent event_from_row(const pqxx::row& r, DecodePayload&& payload,
                             DecodeMetadata&& metadata) {
  FieldCursor f(r);
  RecordedEvent ev;
  ev.stream_id = std::string(f.text());
  ev.stream_version = f.as<std::int64_t>();
  ev.global_position = f.as<std::int64_t>();
  ev.event_id = std::string(f.text());
  std::string type(f.text());
  const int version = f.as<int>();
  ev.data = payload(std::move(type), version, f.field());
  f.skip();
  ev.metadata = metadata(f.field());
  f.skip();
  ev.recorded_at = from_unix_micros(f.as<std::int64_t>());
  return ev;
}

// The event of a row that starts with kEventColumns. Throws CorruptDataError when it cannot be
// decoded.
inline RecordedEvent decode_event_row(const pqxx::row& r) {
  return event_from_row(
      r,
      [](std::string type, int version, const pqxx::field& f) {
        return decode(EncodedEvent{std::move(type), version, f.as<std::string>()});
      },
      [](const pqxx::field& f) { return decode_metadata(f.as<std::string>()); });
}

// Pages through a commit-safe (or committed) read of the log: fetch(position, limit) returns
// the next page, rows that start with kEventColumns followed by the transaction id as text;
// decode(row) makes its event. Visits up to max_count events after `after` and returns the
// position of the last one visited (after when none); stops early when visit returns false.
template <class Fetch, class Decode, class Visit>
LogPosition visit_pages(LogPosition after, std::int64_t max_count, std::int64_t page_size,
                        Fetch&& fetch, Decode&& decode, Visit&& visit) {
  LogPosition position = after;
  std::int64_t read = 0;
  while (read < max_count) {
    const std::int64_t limit = std::min(page_size, max_count - read);
    const pqxx::result page = fetch(position, limit);
    for (const auto& row : page) {
      const RecordedEvent ev = decode(row);
      const LogPosition here{row[9].template as<std::uint64_t>(), ev.global_position};
      ++read;
      if (!visit(ev, here)) return here;
      position = here;
    }
    if (static_cast<std::int64_t>(page.size()) < limit) break;
  }
  return position;
}

}  // namespace prefstore::storage::detail
