#include "prefstore/storage/snapshots.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <variant>

#include "prefstore/errors.hpp"
#include "prefstore/snapshot_codec.hpp"
#include "sha256.hpp"
#include "snapshot_checksum.hpp"

namespace prefstore::storage {
namespace {

// Versions have no gaps, so a page is a bounded version range (not a LIMIT): the planner then
// reads only the page, whatever its statistics say. Pages of events after the snapshot grow from
// kFirstPage to kPage: a read usually needs fewer events than a whole page (those up to the moment,
// at most a snapshot interval).
constexpr std::int64_t kFirstPage = 64;
constexpr std::int64_t kPage = 1024;

// Newest snapshot of $1 below version $2 and at or before the moment, per kind of AsOf.
// Returns version, format, state (bytea text), checksum (hex), position, recorded_at (micros).
constexpr const char* kSnapshotColumns =
    "stream_version, format_version, state, encode(checksum, 'hex'), last_position, "
    "(extract(epoch FROM last_recorded_at) * 1000000)::bigint";

std::string snapshot_sql(AsOf::Kind kind) {
  std::string sql = std::string("SELECT ") + kSnapshotColumns +
                    " FROM prefstore.snapshots WHERE stream_id = $1 AND stream_version < $2";
  switch (kind) {
    case AsOf::Kind::latest:
      return sql + " ORDER BY stream_version DESC LIMIT 1";
    case AsOf::Kind::version:
      return sql + " AND stream_version <= $3::bigint ORDER BY stream_version DESC LIMIT 1";
    case AsOf::Kind::position:
      return sql + " AND last_position <= $3::bigint ORDER BY last_position DESC LIMIT 1";
    case AsOf::Kind::time:
      return sql +
             " AND last_recorded_at <= to_timestamp(0) + $3::bigint * interval '1 microsecond' "
             "ORDER BY last_recorded_at DESC, stream_version DESC LIMIT 1";
  }
  return sql;
}

// The range starts at the next stored version m (an index probe in the same statement), which
// is past $2 + 1 when retention replaced the events before it by a baseline, and always holds m
// itself, so that a baseline past the moment is seen (and the read refused).
constexpr const char* kEventsAfterSql =
    "SELECT stream_version, global_position, event_id::text, event_type, schema_version, "
    "payload::text, metadata::text, (extract(epoch FROM recorded_at) * 1000000)::bigint "
    "FROM prefstore.events WHERE stream_id = $1 AND stream_version > $2::bigint AND "
    "stream_version <= (SELECT greatest(m, least($3::bigint, m - 1 + $4::bigint)) FROM "
    "(SELECT min(n.stream_version) AS m FROM prefstore.events n WHERE n.stream_id = $1 AND "
    "n.stream_version > $2::bigint) AS next) ORDER BY stream_version";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// PostgreSQL's hex output of bytea ("\x0a1b...") as raw bytes.
std::string bytea_from_text(const std::string& text) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0) {
    throw CorruptDataError("unexpected bytea text from the server (bytea_output must be hex)");
  }
  std::string out;
  out.reserve((text.size() - 2) / 2);
  for (std::size_t i = 2; i < text.size(); i += 2) {
    const int hi = hex_digit(text[i]);
    const int lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) throw CorruptDataError("malformed bytea text from the server");
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string bytea_to_text(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += hex[b >> 4];
    out += hex[b & 0xF];
  }
  return out;
}

std::int64_t to_int(const SqlValue& v) {
  return std::stoll(v.value());
}

constexpr const char* kChecksumSql =
    "sha256(convert_to(stream_id || E'\\n' || stream_version || E'\\n' || format_version || "
    "E'\\n' || last_position || E'\\n' || (extract(epoch FROM last_recorded_at) * "
    "1000000)::bigint || E'\\n', 'UTF8') || state)";

std::string moment_param(const AsOf& as_of) {
  switch (as_of.kind) {
    case AsOf::Kind::time:
      return std::to_string(to_unix_micros(as_of.time));
    case AsOf::Kind::position:
    case AsOf::Kind::version:
      return std::to_string(as_of.number);
    case AsOf::Kind::latest:
      break;
  }
  return "0";
}

RecordedEvent event_from_row(std::string_view stream_id, const SqlRow& row) {
  RecordedEvent ev;
  ev.stream_id = stream_id;
  ev.stream_version = to_int(row[0]);
  ev.global_position = to_int(row[1]);
  ev.event_id = row[2].value();
  ev.data = decode(EncodedEvent{row[3].value(), static_cast<int>(to_int(row[4])), row[5].value()});
  ev.metadata = decode_metadata(row[6].value());
  ev.recorded_at = from_unix_micros(to_int(row[7]));
  return ev;
}

// Throws ValidationError: the moment is before the baseline ev, whose history retention
// removed. Names the compaction's time when its audit record (the baseline's causation_id) is
// found.
[[noreturn]] void refuse_compacted(UnitOfWork& uow, const RecordedEvent& ev, const AsOf& as_of) {
  std::string when;
  const std::string& record = ev.metadata.causation_id;
  const bool uuid =
      record.size() == 36 && record.find_first_not_of("0123456789abcdef-") == std::string::npos;
  if (uuid) {
    try {
      const auto rows = uow.exec(
          "SELECT (extract(epoch FROM recorded_at) * 1000000)::bigint FROM prefstore.events "
          "WHERE stream_id = $1 AND event_id = $2::uuid",
          {std::string(kAuditStreamId), record});
      if (!rows.empty()) when = " on " + format_timestamp(from_unix_micros(to_int(rows[0][0])));
    } catch (const Error&) {
      // The message goes out without the date.
    }
  }
  throw ValidationError(
      "history of " + ev.stream_id + " before version " + std::to_string(ev.stream_version) + " (" +
      format_timestamp(ev.recorded_at) + ") was compacted by retention" + when +
      ": its state as of " + as_of.describe() +
      " is no longer known; ask for a moment at or after version " +
      std::to_string(ev.stream_version) + " (position " + std::to_string(ev.global_position) +
      ", " + format_timestamp(ev.recorded_at) + ")");
}

}  // namespace

namespace detail {
// The checksum of a snapshot row covers what says where the state belongs, not only the state:
// SHA-256 of "stream_id\nstream_version\nformat_version\nlast_position\nlast_recorded_at
// (unix micros)\n" followed by the state bytes. kChecksumSql computes the same in SQL.
std::string snapshot_checksum(std::string_view stream_id, std::int64_t version, int format,
                              std::int64_t position, std::int64_t recorded_at_micros,
                              std::string_view state) {
  std::string bytes;
  bytes.reserve(stream_id.size() + 80 + state.size());
  bytes.append(stream_id);
  for (const std::int64_t n :
       {version, static_cast<std::int64_t>(format), position, recorded_at_micros}) {
    bytes += '\n';
    bytes += std::to_string(n);
  }
  bytes += '\n';
  bytes.append(state);
  return detail::sha256_hex(bytes);
}
}  // namespace detail

StreamState load_state(UnitOfWork& uow, std::string_view stream_id, const AsOf& as_of) {
  const std::string stream(stream_id);
  StreamState out;
  // 1. The newest snapshot at or before the moment that is intact.
  static const std::string by_kind[] = {
      snapshot_sql(AsOf::Kind::latest), snapshot_sql(AsOf::Kind::time),
      snapshot_sql(AsOf::Kind::position), snapshot_sql(AsOf::Kind::version)};
  const std::string& sql = by_kind[static_cast<int>(as_of.kind)];
  std::int64_t below = INT64_MAX;
  for (;;) {
    std::vector<SqlValue> params{stream, std::to_string(below)};
    if (as_of.kind != AsOf::Kind::latest) params.emplace_back(moment_param(as_of));
    const auto rows = uow.exec(sql, params);
    if (rows.empty()) break;
    const SqlRow& row = rows[0];
    const std::int64_t version = to_int(row[0]);
    const std::string state = bytea_from_text(row[2].value());
    try {
      const int format = static_cast<int>(to_int(row[1]));
      if (format != kSnapshotFormatVersion) {
        throw CorruptDataError("snapshot format version " + std::to_string(format) +
                               " is unknown to this build (it reads version " +
                               std::to_string(kSnapshotFormatVersion) + ")");
      }
      if (detail::snapshot_checksum(stream, version, format, to_int(row[4]), to_int(row[5]),
                                    state) != row[3].value()) {
        throw CorruptDataError("checksum mismatch");
      }
      out.state = decode_snapshot_state(state, static_cast<int>(to_int(row[1])));
      out.version = version;
      out.snapshot_version = version;
      out.last_position = to_int(row[4]);
      out.last_recorded_at = from_unix_micros(to_int(row[5]));
      break;
    } catch (const CorruptDataError& e) {
      out.bad_snapshots.push_back({version, e.what()});
      below = version;
    }
  }
  // 2. The events after it, up to the moment. Within a stream, versions, positions and times
  // all grow together, so the first event past the moment ends the read.
  const std::int64_t max_version = as_of.kind == AsOf::Kind::version ? as_of.number : INT64_MAX;
  for (std::int64_t page = kFirstPage;; page = std::min(kPage, page * 2)) {
    const auto rows = uow.exec(
        kEventsAfterSql,
        {stream, std::to_string(out.version), std::to_string(max_version), std::to_string(page)});
    for (const SqlRow& row : rows) {
      RecordedEvent ev = event_from_row(stream_id, row);
      const bool baseline = std::holds_alternative<PreferencesBaseline>(ev.data);
      if (!as_of.includes(ev)) {
        // Retention removed the events before a baseline: a moment before it is unknown (but
        // version 0, before the first event, is the empty state).
        const bool before_all = as_of.kind == AsOf::Kind::version && as_of.number < 1;
        if (baseline && !before_all && out.version < ev.stream_version - 1) {
          refuse_compacted(uow, ev, as_of);
        }
        return out;
      }
      if (baseline) out.state.clear();  // the whole state at its version
      apply(out.state, ev);
      out.version = ev.stream_version;
      out.last_position = ev.global_position;
      out.last_recorded_at = ev.recorded_at;
      ++out.events_replayed;
    }
    if (static_cast<std::int64_t>(rows.size()) < page) break;
  }
  return out;
}

bool save_snapshot(UnitOfWork& uow, std::string_view stream_id, const StreamState& state) {
  if (state.version == 0) return false;
  const std::string bytes = encode_snapshot_state(state.state);
  (void)uow.exec(
      "INSERT INTO prefstore.snapshots (stream_id, stream_version, format_version, state, "
      "checksum, last_position, last_recorded_at, created_at) "
      "VALUES ($1, $2::bigint, $3::integer, $4::bytea, decode($5, 'hex'), $6::bigint, "
      "to_timestamp(0) + $7::bigint * interval '1 microsecond', now()) "
      // excluded.created_at, not now(): Citus takes only immutable functions in the SET of an
      // upsert on a distributed table (distributed mode).
      "ON CONFLICT (stream_id, stream_version) DO UPDATE SET format_version = "
      "excluded.format_version, state = excluded.state, checksum = excluded.checksum, "
      "last_position = excluded.last_position, last_recorded_at = excluded.last_recorded_at, "
      "created_at = excluded.created_at",
      {std::string(stream_id), std::to_string(state.version),
       std::to_string(kSnapshotFormatVersion), bytea_to_text(bytes),
       detail::snapshot_checksum(stream_id, state.version, kSnapshotFormatVersion,
                                 state.last_position, to_unix_micros(state.last_recorded_at),
                                 bytes),
       std::to_string(state.last_position),
       std::to_string(to_unix_micros(state.last_recorded_at))});
  return true;
}

std::vector<SnapshotInfo> list_snapshots(ConnectionPool& pool, std::optional<std::string> stream_id,
                                         std::int64_t limit, std::string after_stream,
                                         std::int64_t after_version) {
  UnitOfWork uow(pool);
  const auto rows = uow.exec(
      "SELECT stream_id, stream_version, format_version, state, encode(checksum, 'hex'), "
      "last_position, (extract(epoch FROM last_recorded_at) * 1000000)::bigint, "
      "(extract(epoch FROM created_at) * 1000000)::bigint FROM prefstore.snapshots "
      "WHERE ($1::text IS NULL OR stream_id = $1) AND (stream_id, stream_version) > ($2, "
      "$3::bigint) "
      "ORDER BY stream_id, stream_version LIMIT $4",
      {stream_id, after_stream, std::to_string(after_version), std::to_string(limit)});
  std::vector<SnapshotInfo> out;
  for (const SqlRow& row : rows) {
    SnapshotInfo info;
    info.stream_id = row[0].value();
    info.stream_version = to_int(row[1]);
    info.format_version = static_cast<int>(to_int(row[2]));
    const std::string state = bytea_from_text(row[3].value());
    info.size_bytes = static_cast<std::int64_t>(state.size());
    info.last_position = to_int(row[5]);
    info.last_recorded_at = from_unix_micros(to_int(row[6]));
    info.created_at = from_unix_micros(to_int(row[7]));
    info.intact = info.format_version == kSnapshotFormatVersion &&
                  detail::snapshot_checksum(
                      info.stream_id, info.stream_version, info.format_version, info.last_position,
                      to_unix_micros(info.last_recorded_at), state) == row[4].value();
    if (info.intact) {
      try {
        (void)decode_snapshot_state(state, info.format_version);
      } catch (const CorruptDataError&) {
        info.intact = false;
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::int64_t prune_snapshots(ConnectionPool& pool, std::int64_t keep) {
  if (keep < 1) throw UsageError("prune_snapshots: keep must be at least 1");
  UnitOfWork uow(pool);
  // Corrupt rows go; of the intact ones, the newest `keep` per stream stay (corrupt rows do not
  // count towards them).
  const std::string sql =
      "WITH checked AS (SELECT stream_id, stream_version, " + std::string(kChecksumSql) +
      " <> checksum OR format_version <> " + std::to_string(kSnapshotFormatVersion) +
      " AS bad FROM prefstore.snapshots), "
      "ranked AS (SELECT stream_id, stream_version, bad, row_number() OVER "
      "(PARTITION BY stream_id, bad ORDER BY stream_version DESC) AS n FROM checked), "
      "gone AS (DELETE FROM prefstore.snapshots s USING ranked r WHERE s.stream_id = r.stream_id "
      "AND s.stream_version = r.stream_version AND (r.bad OR r.n > $1::bigint) RETURNING 1) "
      "SELECT count(*) FROM gone";
  const auto rows = uow.exec(sql, {std::to_string(keep)});
  uow.commit();
  return to_int(rows.at(0)[0]);
}

bool snapshot_stream(ConnectionPool& pool, std::string_view stream_id) {
  UnitOfWork uow(pool);
  const StreamState state = load_state(uow, stream_id, AsOf::latest());
  if (state.version == 0 || (state.snapshot_version == state.version)) return false;
  const bool written = save_snapshot(uow, stream_id, state);
  uow.commit();
  return written;
}

SnapshotRunProgress snapshot_all_streams(
    ConnectionPool& pool, const std::function<void(const SnapshotRunProgress&)>& progress) {
  SnapshotRunProgress run;
  {
    UnitOfWork uow(pool);
    run.total = to_int(uow.exec("SELECT count(*) FROM prefstore.streams "
                                "WHERE version > 0 AND left(stream_id, 1) <> '$'")
                           .at(0)[0]);
  }
  std::string after;
  for (;;) {
    std::vector<std::string> streams;
    {
      UnitOfWork uow(pool);
      for (const SqlRow& row :
           uow.exec("SELECT stream_id FROM prefstore.streams WHERE stream_id > $1 AND version > 0 "
                    "AND left(stream_id, 1) <> '$' ORDER BY stream_id LIMIT 500",
                    {after})) {
        streams.push_back(row[0].value());
      }
    }
    if (streams.empty()) break;
    for (const std::string& stream : streams) {
      if (snapshot_stream(pool, stream)) ++run.written;
      ++run.streams;
      if (progress && run.streams % 100 == 0) progress(run);
    }
    after = streams.back();
  }
  if (progress) progress(run);
  return run;
}

}  // namespace prefstore::storage
