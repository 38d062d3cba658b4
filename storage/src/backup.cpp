#include "prefstore/storage/backup.hpp"

// cereal's JSON archive configures rapidjson (assertions that throw): it comes first, in a
// block of its own, which clang-format does not reorder (tests/json_include_check.sh).
#include <cereal/archives/json.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>

#include "definitions_projection.hpp"
#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/storage/distribution.hpp"
#include "sha256.hpp"

namespace prefstore::storage {
namespace {

using detail::hex_of;

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr const char* kMicros = "(extract(epoch FROM %s) * 1000000)::bigint";

std::string micros_of(const char* column) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, kMicros, column);
  return buffer;
}

std::string raw_bytes(const pqxx::field& field) {
  const pqxx::binarystring bytes(field);
  return bytes.str();
}

// True when text is exactly one JSON object (nothing before or after it): only then may it be
// copied into a batch as raw JSON.
bool is_one_json_object(const std::string& text) {
  rapidjson::Document document;
  document.Parse(text.c_str(), text.size());
  return !document.HasParseError() && document.IsObject();
}

void key_string(JsonWriter& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

// --- restore statements ---------------------------------------------------------------------

// $1: JSON array of events {p, s, v, id, t, sv, payload, metadata, at}. Upserts the streams
// (version, times) and inserts the events with their own positions.
constexpr const char* kRestoreEventsSql = R"sql(
WITH input AS (
  SELECT (x->>'p')::bigint AS global_position, x->>'s' AS stream_id,
         (x->>'v')::bigint AS stream_version, (x->>'id')::uuid AS event_id,
         x->>'t' AS event_type, (x->>'sv')::integer AS schema_version,
         x->'payload' AS payload, x->'metadata' AS metadata,
         to_timestamp(0) + (x->>'at')::bigint * interval '1 microsecond' AS recorded_at
  FROM jsonb_array_elements($1::jsonb) AS x
),
s AS (
  INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at, last_recorded_at)
  SELECT stream_id, max(stream_version), min(recorded_at), max(recorded_at), max(recorded_at)
  FROM input GROUP BY stream_id ORDER BY stream_id
  ON CONFLICT (stream_id) DO UPDATE
    SET version = greatest(st.version, excluded.version),
        updated_at = greatest(st.updated_at, excluded.updated_at),
        last_recorded_at = greatest(st.last_recorded_at, excluded.last_recorded_at)
  RETURNING 1
)
INSERT INTO prefstore.events (global_position, stream_id, stream_version, event_id, event_type,
                              schema_version, payload, metadata, recorded_at)
OVERRIDING SYSTEM VALUE
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, payload,
       metadata, recorded_at
FROM input ORDER BY global_position
)sql";

// $1: JSON array of snapshots {s, v, f, state (hex), sum (hex), p, at, created}.
constexpr const char* kRestoreSnapshotsSql = R"sql(
INSERT INTO prefstore.snapshots (stream_id, stream_version, format_version, state, checksum,
                                 last_position, last_recorded_at, created_at)
SELECT x->>'s', (x->>'v')::bigint, (x->>'f')::integer, decode(x->>'state', 'hex'),
       decode(x->>'sum', 'hex'), (x->>'p')::bigint,
       to_timestamp(0) + (x->>'at')::bigint * interval '1 microsecond',
       to_timestamp(0) + (x->>'created')::bigint * interval '1 microsecond'
FROM jsonb_array_elements($1::jsonb) AS x
ON CONFLICT (stream_id, stream_version) DO UPDATE
  SET format_version = excluded.format_version, state = excluded.state,
      checksum = excluded.checksum, last_position = excluded.last_position,
      last_recorded_at = excluded.last_recorded_at, created_at = excluded.created_at
)sql";

class EventBatch {
 public:
  EventBatch() : m_writer(m_buffer) { m_writer.StartArray(); }
  void add(const BackupEvent& e) {
    m_writer.StartObject();
    m_writer.Key("p");
    m_writer.Int64(e.global_position);
    key_string(m_writer, "s", e.stream_id);
    m_writer.Key("v");
    m_writer.Int64(e.stream_version);
    key_string(m_writer, "id", e.event_id);
    key_string(m_writer, "t", e.event_type);
    m_writer.Key("sv");
    m_writer.Int(e.schema_version);
    m_writer.Key("payload");
    m_writer.RawValue(e.payload.data(), e.payload.size(), rapidjson::kObjectType);
    m_writer.Key("metadata");
    m_writer.RawValue(e.metadata.data(), e.metadata.size(), rapidjson::kObjectType);
    m_writer.Key("at");
    m_writer.Int64(e.recorded_at);
    m_writer.EndObject();
    ++m_count;
  }
  void add(const BackupSnapshot& s) {
    m_writer.StartObject();
    key_string(m_writer, "s", s.stream_id);
    m_writer.Key("v");
    m_writer.Int64(s.stream_version);
    m_writer.Key("f");
    m_writer.Int(s.format_version);
    key_string(m_writer, "state", hex_of(s.state));
    key_string(m_writer, "sum", hex_of(s.checksum));
    m_writer.Key("p");
    m_writer.Int64(s.last_position);
    m_writer.Key("at");
    m_writer.Int64(s.last_recorded_at);
    m_writer.Key("created");
    m_writer.Int64(s.created_at);
    m_writer.EndObject();
    ++m_count;
  }
  [[nodiscard]] std::size_t size() const noexcept { return m_count; }
  // The JSON array; the batch is empty afterwards.
  std::string take() {
    m_writer.EndArray();
    std::string out = m_buffer.GetString();
    m_buffer.Clear();
    m_writer.Reset(m_buffer);
    m_writer.StartArray();
    m_count = 0;
    return out;
  }

 private:
  rapidjson::StringBuffer m_buffer;
  JsonWriter m_writer;
  std::size_t m_count = 0;
};

bool is_safe_table_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

BackupSummary create_backup(ConnectionPool& pool, const std::filesystem::path& file,
                            const BackupOptions& options) {
  if (options.since_position < 0) {
    throw UsageError("backup: --since must not be negative (got " +
                     std::to_string(options.since_position) + ")");
  }
  const std::string context = "backing up to " + file.string();
  BackupSummary summary;
  if (options.since_position > 0 && is_distributed(pool)) {
    throw UsageError(
        "backup: incremental backups (--since) are not supported in distributed mode: each "
        "Citus worker draws positions from its own range, so \"after position " +
        std::to_string(options.since_position) +
        "\" would miss events written since on other workers; take a full backup");
  }
  auto locker = pool.acquire();
  auto reader = pool.acquire();
  try {
    // 1. One consistent cut: hold new appends off until the reader's snapshot is taken, so no
    // append is in flight at the snapshot and every position up to its end is visible in it.
    pqxx::work hold(detail::native(locker));
    hold.exec("SET LOCAL lock_timeout = " + std::to_string(options.settle_timeout.count()));
    hold.exec("LOCK TABLE prefstore.events IN SHARE MODE");
    pqxx::transaction<pqxx::repeatable_read> tx(detail::native(reader));
    // Three scalar subqueries (a subquery beside an aggregate is not pushed down by Citus).
    const auto head = tx.exec(
        "SELECT (SELECT coalesce(max(global_position), 0) FROM prefstore.events), "
        "(SELECT coalesce(max(version), 0) FROM prefstore.schema_migrations), " +
        micros_of("now()"));
    hold.abort();  // appends go on; the reader keeps its snapshot
    const std::int64_t end = head[0][0].as<std::int64_t>();
    if (options.since_position > end) {
      throw UsageError("backup: --since " + std::to_string(options.since_position) +
                       " is past the end of the log (position " + std::to_string(end) +
                       "); give the until position of the previous backup");
    }
    BackupHeader header;
    header.backup_id = new_event_id();
    header.source = pool.redacted_conninfo();
    char version[16];
    std::snprintf(version, sizeof version, "%04lld",
                  static_cast<long long>(head[0][1].as<std::int64_t>()));
    header.schema_version = version;
    header.created_at = from_unix_micros(head[0][2].as<std::int64_t>());
    header.since_position = options.since_position;
    header.until_position = end;
    const std::string range = " global_position > " + std::to_string(header.since_position) +
                              " AND global_position <= " + std::to_string(end);
    const auto counts = tx.exec(
        "SELECT count(*), count(DISTINCT stream_id) FROM prefstore.events "
        "WHERE" +
        range);
    header.event_count = counts[0][0].as<std::int64_t>();
    header.stream_count = counts[0][1].as<std::int64_t>();
    const std::string snapshot_range = " last_position > " + std::to_string(header.since_position) +
                                       " AND last_position <= " + std::to_string(end);
    header.snapshot_count =
        tx.exec("SELECT count(*) FROM prefstore.snapshots WHERE" + snapshot_range)[0][0]
            .as<std::int64_t>();

    BackupWriterOptions writer_options;
    writer_options.chunk_records = options.chunk_records;
    BackupWriter writer(file, header, writer_options);
    BackupProgress progress{0, 0, header.event_count, header.snapshot_count};
    const std::size_t fetch = std::max<std::size_t>(options.chunk_records, 100);
    tx.exec(
        "DECLARE prefstore_backup_events NO SCROLL CURSOR FOR SELECT global_position, stream_id, "
        "stream_version, event_id::text, event_type, schema_version, payload::text, "
        "metadata::text, " +
        micros_of("recorded_at") + " FROM prefstore.events WHERE" + range +
        " ORDER BY global_position");
    for (;;) {
      const auto rows = tx.exec("FETCH " + std::to_string(fetch) + " FROM prefstore_backup_events");
      for (const auto& r : rows) {
        BackupEvent e;
        e.global_position = r[0].as<std::int64_t>();
        e.stream_id = r[1].as<std::string>();
        e.stream_version = r[2].as<std::int64_t>();
        e.event_id = r[3].as<std::string>();
        e.event_type = r[4].as<std::string>();
        e.schema_version = r[5].as<std::int32_t>();
        e.payload = r[6].as<std::string>();
        e.metadata = r[7].as<std::string>();
        e.recorded_at = r[8].as<std::int64_t>();
        writer.add(e);
      }
      progress.events += static_cast<std::int64_t>(rows.size());
      if (options.progress) options.progress(progress);
      if (rows.size() < fetch) break;
    }
    tx.exec(
        "DECLARE prefstore_backup_snapshots NO SCROLL CURSOR FOR SELECT stream_id, "
        "stream_version, format_version, state, checksum, last_position, " +
        micros_of("last_recorded_at") + ", " + micros_of("created_at") +
        " FROM prefstore.snapshots WHERE" + snapshot_range + " ORDER BY stream_id, stream_version");
    for (;;) {
      const auto rows =
          tx.exec("FETCH " + std::to_string(fetch) + " FROM prefstore_backup_snapshots");
      for (const auto& r : rows) {
        BackupSnapshot s;
        s.stream_id = r[0].as<std::string>();
        s.stream_version = r[1].as<std::int64_t>();
        s.format_version = r[2].as<std::int32_t>();
        s.state = raw_bytes(r[3]);
        s.checksum = raw_bytes(r[4]);
        s.last_position = r[5].as<std::int64_t>();
        s.last_recorded_at = r[6].as<std::int64_t>();
        s.created_at = r[7].as<std::int64_t>();
        writer.add(s);
      }
      progress.snapshots += static_cast<std::int64_t>(rows.size());
      if (options.progress && !rows.empty()) options.progress(progress);
      if (rows.size() < fetch) break;
    }
    tx.commit();
    summary.trailer = writer.finish();
    summary.bytes = writer.bytes_written();
    summary.header = header;
  } catch (const Error&) {
    throw;
  } catch (...) {
    detail::rethrow_translated(context);
  }
  // The history is for operators (status); a role that may not write it still gets its backup.
  try {
    pqxx::work tx(detail::native(locker));
    tx.exec_params(
        "INSERT INTO prefstore.backup_history (backup_id, operation, file, since_position, "
        "until_position, events, snapshots, source) VALUES ($1, 'created', $2, $3, $4, $5, $6, "
        "$7)",
        summary.header.backup_id, file.string(), summary.header.since_position,
        summary.header.until_position, summary.trailer.event_count, summary.trailer.snapshot_count,
        summary.header.source);
    tx.commit();
  } catch (...) {
  }
  return summary;
}

BackupRestoreSummary restore_backup(ConnectionPool& pool, const std::filesystem::path& file,
                                    const BackupRestoreOptions& options) {
  if (options.batch_size == 0) throw UsageError("restore: batch_size must be at least 1");
  for (const auto& table : options.reset_tables) {
    if (!is_safe_table_name(table)) {
      throw UsageError("restore: reset table name " + table + " is not a plain table name");
    }
  }
  BackupReader reader(file);  // checks the header before anything else
  if (is_distributed(pool)) {
    throw UsageError(
        "restore: the database is distributed (Citus); restore into a single-server database "
        "(a new database after `prefstore migrate`, on the coordinator's server), then move it "
        "with `prefstore migrate --distributed` (docs/scaling.md); nothing was written");
  }
  BackupRestoreSummary summary;
  summary.header = reader.header();
  const BackupHeader& header = summary.header;
  const std::string context = "restoring " + file.string();
  auto handle = pool.acquire();
  try {
    pqxx::work tx(detail::native(handle));
    // Appends wait (their ROW EXCLUSIVE conflicts); plain reads go on.
    tx.exec("LOCK TABLE prefstore.streams, prefstore.events IN EXCLUSIVE MODE");
    // Both by index: a restore onto a large log must not scan it while appends wait.
    const auto present = tx.exec(
        "SELECT EXISTS (SELECT FROM prefstore.events)::int, coalesce(max(global_position), 0) "
        "FROM prefstore.events")[0];
    const std::int64_t events_here = present[0].as<std::int64_t>();
    if (header.since_position == 0) {
      if (events_here > 0 && !options.allow_non_empty) {
        throw UsageError("restore: the database already holds events (up to position " +
                         present[1].as<std::string>() +
                         "); restore a full backup into an empty database (a new database "
                         "after `prefstore migrate`), or pass --force to add the file's events to "
                         "those there");
      }
    } else {
      const auto chain = tx.exec(
          "SELECT until_position FROM prefstore.backup_history WHERE operation = 'restored' "
          "ORDER BY recorded_at DESC LIMIT 1");
      const std::int64_t chain_end = chain.empty() ? -1 : chain[0][0].as<std::int64_t>();
      const std::int64_t newest_here = present[1].as<std::int64_t>();
      if (chain_end == header.since_position && newest_here > header.since_position) {
        throw UsageError(
            "restore: this incremental backup continues the chain restored here "
            "(up to position " +
            std::to_string(header.since_position) +
            "), but events were written here since (up to position " + std::to_string(newest_here) +
            "); an incremental backup goes only on top of an untouched restore");
      }
      if (chain_end != header.since_position) {
        throw UsageError(
            "restore: this incremental backup continues a chain that ends at position " +
            std::to_string(header.since_position) + ", but " +
            (chain.empty()
                 ? std::string("no backup was restored into this database")
                 : "the newest restore here ends at position " + std::to_string(chain_end)) +
            "; restore the full backup and the incremental ones in order");
      }
    }

    const auto included = [&](std::int64_t position, std::int64_t micros) {
      if (options.until_position && position > *options.until_position) return false;
      if (options.until_time && micros > to_unix_micros(*options.until_time)) return false;
      return true;
    };
    // Asynchronous read models start again from the beginning of the log (pitfall 9). First,
    // so that inline read models among them are written afresh below.
    for (const auto& name : options.reset_projections) {
      tx.exec_params("DELETE FROM prefstore.projection_checkpoints WHERE projection_name = $1",
                     name);
    }
    for (const auto& table : options.reset_tables) tx.exec("TRUNCATE prefstore." + table);
    detail::BorrowedTransaction borrowed{tx};
    UnitOfWork uow(borrowed);

    BackupProgress progress{0, 0, header.event_count, header.snapshot_count};
    std::int64_t first_skipped = INT64_MAX;
    EventBatch batch;
    std::vector<RecordedEvent> decoded;  // the events of `batch`, for the read models
    // Positions are not unique in the schema (a Citus table cannot have such an index), so a
    // restore on top of events checks each batch for positions that are there already.
    const bool check_clashes = events_here > 0;
    const auto flush_events = [&] {
      if (batch.size() == 0) return;
      const std::string rows = batch.take();
      if (check_clashes) {
        const auto clash = tx.exec_params(
            "SELECT e.global_position, e.stream_id FROM prefstore.events e JOIN "
            "jsonb_array_elements($1::jsonb) AS x ON e.global_position = (x->>'p')::bigint LIMIT 1",
            rows);
        if (!clash.empty()) {
          throw ConflictError("restore: the database already holds an event at position " +
                              clash[0][0].as<std::string>() + " (stream " +
                              clash[0][1].as<std::string>() +
                              ") that the backup also holds; nothing was written");
        }
      }
      tx.exec_params(kRestoreEventsSql, rows);
      // The read models of the batch: definitions here, the caller's inline ones in on_events.
      for (const RecordedEvent& ev : decoded) {
        if (!ev.stream_id.empty() && ev.stream_id[0] == '$') {
          detail::project_definition_events(tx, handle, ev.stream_id,
                                            {NewEvent{ev.event_id, ev.data}}, ev.stream_version,
                                            ev.metadata);
        }
      }
      if (options.on_events) options.on_events(uow, decoded);
      decoded.clear();
      if (options.progress) options.progress(progress);
    };
    const auto flush_snapshots = [&] {
      if (batch.size() == 0) return;
      tx.exec_params(kRestoreSnapshotsSql, batch.take());
      if (options.progress) options.progress(progress);
    };
    std::int64_t last_position = header.since_position;
    bool in_snapshots = false;
    (void)reader.read(
        [&](const BackupEvent& e) {
          if (e.global_position <= last_position) {
            throw CorruptDataError("backup file " + file.string() + ": event position " +
                                   std::to_string(e.global_position) + " follows position " +
                                   std::to_string(last_position) +
                                   " (positions must increase); nothing was written");
          }
          last_position = e.global_position;
          if (!is_one_json_object(e.payload) || !is_one_json_object(e.metadata)) {
            throw CorruptDataError("backup file " + file.string() + ": the event at position " +
                                   std::to_string(e.global_position) +
                                   " has a payload or metadata that is not one JSON object; "
                                   "nothing was written");
          }
          if (!included(e.global_position, e.recorded_at)) {
            ++summary.skipped_events;
            first_skipped = std::min(first_skipped, e.global_position);
            return;
          }
          RecordedEvent ev;
          ev.stream_id = e.stream_id;
          ev.stream_version = e.stream_version;
          ev.global_position = e.global_position;
          ev.event_id = e.event_id;
          ev.data = decode(EncodedEvent{e.event_type, e.schema_version, e.payload});
          ev.metadata = decode_metadata(e.metadata);
          ev.recorded_at = from_unix_micros(e.recorded_at);
          decoded.push_back(std::move(ev));
          batch.add(e);
          ++progress.events;
          if (batch.size() >= options.batch_size) flush_events();
        },
        [&](const BackupSnapshot& s) {
          if (!in_snapshots) {
            flush_events();
            in_snapshots = true;
          }
          if (!included(s.last_position, s.last_recorded_at)) return;
          batch.add(s);
          ++progress.snapshots;
          if (batch.size() >= options.batch_size) flush_snapshots();
        });
    if (in_snapshots) {
      flush_snapshots();
    } else {
      flush_events();
    }
    summary.events = progress.events;
    summary.snapshots = progress.snapshots;
    summary.until_position = first_skipped == INT64_MAX
                                 ? header.until_position
                                 : std::max(header.since_position, first_skipped - 1);

    // Every stream's versions are 1..version without a gap, or low..version when a retention
    // baseline (PreferencesBaseline) stands first at low (one pass over the log).
    const auto gap = tx.exec(
        "SELECT s.stream_id, s.version, coalesce(e.n, 0) FROM prefstore.streams s "
        "LEFT JOIN (SELECT stream_id, count(*) AS n, max(stream_version) AS top, "
        "min(stream_version) AS low FROM prefstore.events GROUP BY stream_id) e "
        "ON e.stream_id = s.stream_id "
        "LEFT JOIN prefstore.events b ON b.stream_id = s.stream_id AND b.stream_version = e.low "
        "WHERE s.version <> coalesce(e.top, 0) "
        "OR coalesce(e.n, 0) <> coalesce(e.top - e.low + 1, 0) "
        "OR (e.low > 1 AND b.event_type <> 'PreferencesBaseline') LIMIT 1");
    if (!gap.empty()) {
      throw ConflictError("restore: stream " + gap[0][0].as<std::string>() +
                          " would be at version " + gap[0][1].as<std::string>() + " with " +
                          gap[0][2].as<std::string>() +
                          " events: the backup does not continue what this database holds; "
                          "nothing was written");
    }
    tx.exec_params(
        "INSERT INTO prefstore.backup_history (backup_id, operation, file, since_position, "
        "until_position, events, snapshots, source) VALUES ($1, 'restored', $2, $3, $4, $5, $6, "
        "$7)",
        header.backup_id, file.string(), header.since_position, summary.until_position,
        summary.events, summary.snapshots, header.source);
    // New appends get positions after the restored ones. Last: setval is not undone by a
    // rollback, so nothing that may still refuse the restore comes after it.
    tx.exec(
        "SELECT setval('prefstore.events_global_position_seq', max(global_position)) FROM "
        "prefstore.events HAVING max(global_position) > (SELECT CASE WHEN is_called THEN "
        "last_value ELSE last_value - 1 END FROM prefstore.events_global_position_seq)");
    tx.commit();
    if (options.progress) options.progress(progress);
  } catch (const Error&) {
    throw;
  } catch (...) {
    detail::rethrow_translated(context);
  }
  return summary;
}

}  // namespace prefstore::storage
