#include "prefstore/storage/verify.hpp"

// cereal's JSON archive configures rapidjson (assertions that throw): it comes first, in a
// block of its own, which clang-format does not reorder (tests/json_include_check.sh).
#include <cereal/archives/json.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <openssl/evp.h>

#include <climits>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "definition_rows.hpp"
#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/event.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/snapshot_codec.hpp"
#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/timestamp.hpp"
#include "sha256.hpp"
#include "snapshot_checksum.hpp"

namespace prefstore::storage {

const char* to_string(VerifyProblemKind kind) noexcept {
  switch (kind) {
    case VerifyProblemKind::chain_mismatch:
      return "chain_mismatch";
    case VerifyProblemKind::version_gap:
      return "version_gap";
    case VerifyProblemKind::stream_version_mismatch:
      return "stream_version_mismatch";
    case VerifyProblemKind::unreadable_event:
      return "unreadable_event";
    case VerifyProblemKind::unmatched_baseline:
      return "unmatched_baseline";
    case VerifyProblemKind::erased_stream_present:
      return "erased_stream_present";
    case VerifyProblemKind::projection_mismatch:
      return "projection_mismatch";
    case VerifyProblemKind::snapshot_mismatch:
      return "snapshot_mismatch";
    case VerifyProblemKind::checkpoint_ahead:
      return "checkpoint_ahead";
    case VerifyProblemKind::damaged_snapshot:
      return "damaged_snapshot";
    case VerifyProblemKind::moved_by_shard_move:
      return "moved_by_shard_move";
  }
  return "unknown";
}

namespace {

using detail::hex_of;

using Kind = VerifyProblemKind;

// The persisted name of the asynchronous value-counts projection (projections/value_counts.hpp;
// storage cannot include the projections layer).
constexpr const char* kValueCountsProjection = "preference_value_counts";
constexpr const char* kBaselineType = "PreferencesBaseline";
constexpr std::string_view kDefinitionPrefix = "$def:";
const std::string kGenesis(32, '\0');  // the link before version 1: 32 zero bytes

// --- SQL (parameters only; every statement reads) -------------------------------------------

constexpr const char* kFirstStreamsSql =
    "SELECT stream_id, version FROM prefstore.streams ORDER BY stream_id LIMIT $1::bigint";
constexpr const char* kNextStreamsSql =
    "SELECT stream_id, version FROM prefstore.streams WHERE stream_id > $1 ORDER BY stream_id "
    "LIMIT $2::bigint";
constexpr const char* kOneStreamSql =
    "SELECT stream_id, version FROM prefstore.streams WHERE stream_id = $1";

// The columns of an event that verify reads: those its canonical bytes are made of, the stored
// link and the transaction id.
constexpr const char* kEventColumns =
    "e.stream_id, e.stream_version, e.global_position, e.event_id::text, e.event_type, "
    "e.schema_version, e.payload::text, e.metadata::text, "
    "(extract(epoch FROM e.recorded_at) * 1000000)::bigint, e.chain_hash, e.transaction_id::text";

// Every event whose stream has a row, in (stream_id, stream_version) order (a merge join of the
// two primary keys), for a cursor.
const std::string kAllEventsSql =
    std::string("SELECT ") + kEventColumns +
    " FROM prefstore.events e WHERE EXISTS (SELECT FROM prefstore.streams s WHERE s.stream_id = "
    "e.stream_id) ORDER BY e.stream_id, e.stream_version";

// The events of one stream after version $2.
const std::string kStreamEventsSql =
    std::string("SELECT ") + kEventColumns +
    " FROM prefstore.events e WHERE e.stream_id = $1 AND e.stream_version > $2::bigint "
    "ORDER BY e.stream_version LIMIT $3::bigint";

// Audit records of "$audit" after version $1 (of stream $3 only, when given).
constexpr const char* kAuditRecordsSql =
    "SELECT stream_version, global_position, event_type, schema_version, payload::text, "
    "transaction_id::text FROM prefstore.events WHERE stream_id = '$audit' "
    "AND stream_version > $1::bigint "
    "AND event_type IN ('StreamErased', 'StreamCompacted') "
    "AND ($3::text IS NULL OR payload->>'stream_id' = $3) "
    "ORDER BY stream_version LIMIT $2::bigint";

constexpr const char* kCurrentRowsSql =
    "SELECT stream_id, key, value_type, value::text, version, "
    "(extract(epoch FROM updated_at) * 1000000)::bigint, coalesce(updated_by, ''), last_position "
    "FROM prefstore.preferences_current WHERE stream_id = ANY($1::text[])";

constexpr const char* kHolderRowsSql =
    "SELECT stream_id, key, value_type, value::text FROM prefstore.preference_value_holders "
    "WHERE stream_id = ANY($1::text[])";

constexpr const char* kSnapshotRowsSql =
    "SELECT stream_id, stream_version, format_version, state, encode(checksum, 'hex'), "
    "last_position, (extract(epoch FROM last_recorded_at) * 1000000)::bigint "
    "FROM prefstore.snapshots WHERE stream_id = ANY($1::text[]) "
    "ORDER BY stream_id, stream_version";

constexpr const char* kDefinitionsSql =
    "SELECT key, value_type, default_value::text, min_value, max_value, max_length, pattern, "
    "allowed_values::text, max_items, description, deprecated, coalesce(deprecation_note, ''), "
    "version, (extract(epoch FROM defined_at) * 1000000)::bigint, "
    "(extract(epoch FROM updated_at) * 1000000)::bigint, coalesce(updated_by, ''), "
    "last_position FROM prefstore.preference_definitions";

// Rows whose stream has no row in prefstore.streams (possible only with foreign keys switched
// off): the first per stream.
constexpr const char* kOrphanEventsSql =
    "SELECT DISTINCT ON (e.stream_id) e.stream_id, e.stream_version, e.global_position, "
    "e.event_id::text FROM prefstore.events e "
    "WHERE NOT EXISTS (SELECT FROM prefstore.streams s WHERE s.stream_id = e.stream_id) "
    "ORDER BY e.stream_id, e.stream_version LIMIT $1::bigint";
constexpr const char* kOrphanCurrentSql =
    "SELECT DISTINCT ON (c.stream_id) c.stream_id, c.key, c.version, c.last_position "
    "FROM prefstore.preferences_current c "
    "WHERE NOT EXISTS (SELECT FROM prefstore.streams s WHERE s.stream_id = c.stream_id) "
    "ORDER BY c.stream_id, c.key LIMIT $1::bigint";
constexpr const char* kOrphanHoldersSql =
    "SELECT DISTINCT ON (h.stream_id) h.stream_id, h.key, count(*) OVER (PARTITION BY "
    "h.stream_id) FROM prefstore.preference_value_holders h "
    "WHERE NOT EXISTS (SELECT FROM prefstore.streams s WHERE s.stream_id = h.stream_id) "
    "ORDER BY h.stream_id, h.key LIMIT $1::bigint";
constexpr const char* kOrphanSnapshotsSql =
    "SELECT DISTINCT ON (n.stream_id) n.stream_id, n.stream_version, n.last_position "
    "FROM prefstore.snapshots n "
    "WHERE NOT EXISTS (SELECT FROM prefstore.streams s WHERE s.stream_id = n.stream_id) "
    "ORDER BY n.stream_id, n.stream_version LIMIT $1::bigint";

// preference_value_counts against the aggregate of preference_value_holders.
constexpr const char* kCountsAgainstHoldersSql =
    "SELECT coalesce(c.key, h.key), coalesce(c.value_type, h.value_type), "
    "coalesce(c.value, h.value)::text, coalesce(c.users, 0), coalesce(h.users, 0) "
    "FROM prefstore.preference_value_counts c FULL JOIN "
    "(SELECT key, value_type, value, count(*) AS users FROM prefstore.preference_value_holders "
    "GROUP BY key, value_type, value) h "
    "ON c.key = h.key AND c.value_type = h.value_type AND c.value = h.value "
    "WHERE coalesce(c.users, 0) <> coalesce(h.users, 0) "
    "ORDER BY 1, 2, 3 LIMIT $1::bigint";

// Distributed mode: the worker group holding each of the streams $1 (a query of the
// coordinator's metadata only).
constexpr const char* kStreamGroupsSql =
    "SELECT s.id, p.groupid FROM unnest($1::text[]) AS s(id) JOIN pg_catalog.pg_dist_placement p "
    "ON p.shardid = pg_catalog.get_shard_id_for_distribution_column('prefstore.streams', s.id)";

constexpr const char* kCheckpointsAheadSql =
    "SELECT projection_name, last_position FROM prefstore.projection_checkpoints "
    "WHERE last_position > $1::bigint ORDER BY projection_name";

// --- bytes ----------------------------------------------------------------------------------

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 64 hex digits as 32 bytes; std::nullopt for anything else.
std::optional<std::string> hash_from_hex(std::string_view text) {
  if (text.size() != 64) return std::nullopt;
  std::string out;
  out.reserve(32);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = hex_digit(text[i]);
    const int lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// A PostgreSQL text[] literal of the items ({"a","b"}), passed as a parameter value.
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// SHA-256 with OpenSSL, one context reused for every link.
class ChainHasher {
 public:
  ChainHasher() : m_ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    if (!m_ctx) throw Error("OpenSSL could not allocate a digest context");
  }
  // SHA-256(previous || canonical), 32 raw bytes.
  std::string link(std::string_view previous, std::string_view canonical) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestInit_ex(m_ctx.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(m_ctx.get(), previous.data(), previous.size()) != 1 ||
        EVP_DigestUpdate(m_ctx.get(), canonical.data(), canonical.size()) != 1 ||
        EVP_DigestFinal_ex(m_ctx.get(), digest, &length) != 1) {
      throw Error("OpenSSL failed to compute a SHA-256 digest");
    }
    return std::string(reinterpret_cast<const char*>(digest), length);
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> m_ctx;
};

// --- rows -----------------------------------------------------------------------------------

struct EventRow {
  std::string stream_id;
  std::int64_t version = 0;
  std::int64_t position = 0;
  std::string event_id;
  std::string event_type;
  int schema_version = 0;
  std::string payload;           // jsonb's text form
  std::string metadata;          // jsonb's text form
  std::int64_t recorded_at = 0;  // unix microseconds
  std::string chain_hash;        // raw bytes as stored
  std::uint64_t transaction_id = 0;
};

EventRow event_row(const pqxx::row& r) {
  EventRow e;
  e.stream_id = r[0].as<std::string>();
  e.version = r[1].as<std::int64_t>();
  e.position = r[2].as<std::int64_t>();
  e.event_id = r[3].as<std::string>();
  e.event_type = r[4].as<std::string>();
  e.schema_version = r[5].as<int>();
  e.payload = r[6].as<std::string>();
  e.metadata = r[7].as<std::string>();
  e.recorded_at = r[8].as<std::int64_t>();
  e.chain_hash = pqxx::binarystring(r[9]).str();
  e.transaction_id = std::stoull(r[10].as<std::string>());
  return e;
}

// The canonical bytes of an event (migration 0004, prefstore.event_canonical_bytes), built here
// from the columns, independently of the SQL function.
std::string canonical_bytes(const EventRow& e) {
  std::string out;
  out.reserve(96 + e.stream_id.size() + e.event_type.size() + e.payload.size() + e.metadata.size());
  out += "prefstore-event-v1\n";
  out += std::to_string(e.position);
  out += '\n';
  out += e.stream_id;
  out += '\n';
  out += std::to_string(e.version);
  out += '\n';
  out += e.event_id;
  out += '\n';
  out += e.event_type;
  out += '\n';
  out += std::to_string(e.schema_version);
  out += '\n';
  out += std::to_string(e.recorded_at);
  out += '\n';
  out += e.payload;
  out += '\n';
  out += e.metadata;
  return out;
}

struct CurrentRow {
  std::string value_type;
  std::string value_json;
  std::int64_t version = 0;
  std::int64_t updated_at = 0;
  std::string updated_by;
  std::int64_t last_position = 0;
};

struct HolderRow {
  std::string value_type;
  std::string value_json;
};

struct SnapshotRow {
  std::int64_t version = 0;
  std::int64_t last_position = 0;
  std::int64_t last_recorded_at = 0;
  std::optional<PreferenceState> state;  // std::nullopt: damaged (a warning was given)
};

// The fields in which two definitions differ ("" when none). The note of a definition that is
// not deprecated is not stored, so it is not compared.
std::string definition_differences(const DefinitionEntry& row, const DefinitionEntry& fold) {
  std::string out;
  const auto add = [&](const char* field) {
    out += (out.empty() ? "" : ", ") + std::string(field);
  };
  const PreferenceDefinition& a = row.definition;
  const PreferenceDefinition& b = fold.definition;
  if (a.type != b.type) add("value_type");
  if (a.default_value != b.default_value) add("default_value");
  if (a.constraints.min != b.constraints.min) add("min_value");
  if (a.constraints.max != b.constraints.max) add("max_value");
  if (a.constraints.max_length != b.constraints.max_length) add("max_length");
  if (a.constraints.pattern != b.constraints.pattern) add("pattern");
  if (a.constraints.allowed_values != b.constraints.allowed_values) add("allowed_values");
  if (a.constraints.max_items != b.constraints.max_items) add("max_items");
  if (a.description != b.description) add("description");
  if (a.deprecated != b.deprecated) add("deprecated");
  if (a.deprecated && b.deprecated && a.deprecation_note != b.deprecation_note) {
    add("deprecation_note");
  }
  if (row.version != fold.version) add("version");
  if (row.defined_at != fold.defined_at) add("defined_at");
  if (row.updated_at != fold.updated_at) add("updated_at");
  if (row.updated_by != fold.updated_by) add("updated_by");
  if (row.last_position != fold.last_position) add("last_position");
  return out;
}

std::string typed(const Value& v) {
  return std::string(to_string(type_of(v))) + " " + to_json(v);
}

std::string micros_text(std::int64_t micros) {
  return format_timestamp(from_unix_micros(micros));
}

// "stream ada version 3 (position 17, event 6f1d...)"
std::string event_name(std::string_view stream, std::int64_t version, std::int64_t position,
                       std::string_view event_id) {
  std::string out = "stream " + std::string(stream) + " version " + std::to_string(version) +
                    " (position " + std::to_string(position);
  if (!event_id.empty()) out += ", event " + std::string(event_id);
  return out + ")";
}

bool is_user_stream(std::string_view stream) {
  return stream.empty() || stream[0] != '$';
}

// --- the audit records of "$audit" ----------------------------------------------------------

// Where a StreamErased record is in the log.
struct ErasedAt {
  std::int64_t position = 0;
  std::uint64_t transaction_id = 0;
};

struct AuditIndex {
  // stream -> the StreamErased record naming it with the greatest position
  std::map<std::string, ErasedAt, std::less<>> erased_at;
  // (stream, up_to_version) -> chain heads (hex) of StreamCompacted records naming them
  std::multimap<std::pair<std::string, std::int64_t>, std::string> compacted;
};

// The last event of a stream that touched a key (set or reset), to name it.
struct Touch {
  std::int64_t version = 0;
  std::int64_t position = 0;
  std::string event_id;
};

struct ValueCountsCheckpoint {
  std::uint64_t transaction_id = 0;
  std::int64_t position = 0;
};

struct StreamRow {
  std::string id;
  std::optional<std::int64_t> version;  // std::nullopt: no row in prefstore.streams
};

// One stream being verified: what is needed to check the next event and, at its end, the read
// models. Holds the folded state, not the events.
struct StreamCheck {
  const StreamRow* row = nullptr;
  std::int64_t events = 0;
  std::int64_t first_version = 0;
  std::int64_t last_version = 0;
  std::int64_t last_position = 0;
  std::int64_t last_recorded_at = 0;
  std::string last_event_id;
  std::string link;                   // chain hash to continue from (raw)
  std::string last_chain_hash;        // stored chain hash of the last event (raw)
  std::int64_t baseline_version = 0;  // the version of a retention baseline standing first
  bool log_problem = false;
  // Distributed mode: the worker group holding the stream (-1: unknown, or a single server),
  // and whether an event moved there by a shard move was reported.
  int group = -1;
  bool moved_reported = false;
  bool covered = true;  // every event is within the value counts' checkpoint
  // That checkpoint: the projection's, or in distributed mode its lane on the stream's worker
  // (nullptr: none, so nothing of the stream is covered).
  const ValueCountsCheckpoint* counts = nullptr;
  PreferenceState state;
  std::map<std::string, Touch, std::less<>> touched;
  DefinitionCatalog catalog;
  std::vector<SnapshotRow>* snapshots = nullptr;
  std::size_t next_snapshot = 0;
};

class Verifier {
 public:
  Verifier(pqxx::transaction_base& tx, const VerifyOptions& options, VerifyReport& report)
      : m_tx(tx), m_options(options), m_report(report) {}

  void run() {
    prepare();
    read_audit_records();
    if (m_options.check_projections) load_definitions_and_checkpoint();
    if (m_options.stream_id) {
      verify_one(*m_options.stream_id);
    } else {
      verify_all();
      if (m_options.check_projections) cross_checks();
      checkpoints_ahead();
    }
    report_progress();
  }

 private:
  // --- setup --------------------------------------------------------------------------------

  void prepare() {
    // The canonical bytes are UTF-8 (convert_to(.., 'UTF8') in SQL): receive text as UTF-8.
    m_tx.exec("SET LOCAL client_encoding TO 'UTF8'");
    const auto has_chain = m_tx.exec(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = "
        "'prefstore.events'::regclass AND attname = 'chain_hash' AND NOT attisdropped)");
    if (!has_chain[0][0].as<bool>()) {
      throw MigrationError(
          "verify: prefstore.events has no chain_hash column; apply migration 0004 "
          "(prefstore migrate) before verifying");
    }
    m_distributed = m_tx.exec(
                            "SELECT pg_catalog.to_regprocedure('prefstore.append_to_stream("
                            "text, jsonb, jsonb, bigint)') IS NOT NULL")[0][0]
                        .as<bool>();
    const auto head = m_tx.exec(
        "SELECT (SELECT coalesce(max(global_position), 0) FROM prefstore.events), "
        "(SELECT count(*) FROM prefstore.streams)");
    m_report.log_end_position = head[0][0].as<std::int64_t>();
    m_progress.total_streams = m_options.stream_id ? 1 : head[0][1].as<std::int64_t>();
  }

  void read_audit_records() {
    std::int64_t after = 0;
    const std::size_t page = 1000;
    // NULL: every record; else only the records naming the stream verified.
    const char* only = m_options.stream_id ? m_options.stream_id->c_str() : nullptr;
    for (;;) {
      const auto rows =
          m_tx.exec_params(kAuditRecordsSql, after, static_cast<std::int64_t>(page), only);
      for (const auto& r : rows) {
        after = r[0].as<std::int64_t>();
        const std::int64_t position = r[1].as<std::int64_t>();
        EventData data;
        try {
          data =
              decode(EncodedEvent{r[2].as<std::string>(), r[3].as<int>(), r[4].as<std::string>()});
        } catch (const CorruptDataError&) {
          continue;  // reported when "$audit" itself is verified
        }
        if (const auto* erased = std::get_if<StreamErased>(&data)) {
          ++m_report.erasure_records;
          auto& at = m_audit.erased_at[erased->stream_id];
          if (position > at.position) at = {position, std::stoull(r[5].as<std::string>())};
        } else if (const auto* compacted = std::get_if<StreamCompacted>(&data)) {
          ++m_report.compaction_records;
          m_audit.compacted.emplace(std::make_pair(compacted->stream_id, compacted->up_to_version),
                                    compacted->chain_head);
        }
      }
      if (rows.size() < page) break;
    }
  }

  void load_definitions_and_checkpoint() {
    for (const auto& row : m_tx.exec(kDefinitionsSql)) {
      const std::string key = row[0].as<std::string>();
      try {
        m_definitions.emplace(key, detail::definition_from_row(row));
      } catch (const CorruptDataError& e) {
        m_bad_definitions.emplace(key, e.what());
      }
    }
    if (m_distributed) {
      // One checkpoint per worker (lane): <projection>__node<group>.
      const std::string prefix = std::string(kValueCountsProjection) + kLaneSuffix;
      for (const auto& row : m_tx.exec_params(
               "SELECT projection_name, last_transaction_id::text, last_position FROM "
               "prefstore.projection_checkpoints WHERE starts_with(projection_name, $1)",
               prefix)) {
        const auto name = row[0].as<std::string>();
        if (!is_checkpoint_of(name, kValueCountsProjection)) continue;
        m_lanes[std::stoi(name.substr(prefix.size()))] =
            ValueCountsCheckpoint{std::stoull(row[1].as<std::string>()), row[2].as<std::int64_t>()};
      }
      if (m_lanes.empty()) {
        m_report.notes.push_back(
            std::string(kValueCountsProjection) +
            " has no checkpoint on any worker (it never ran here): preference_value_holders and "
            "preference_value_counts were not compared with the log");
      } else {
        m_value_counts = ValueCountsCheckpoint{};  // compared per stream, with its lane
      }
      return;
    }
    const auto cp = m_tx.exec_params(
        "SELECT last_transaction_id::text, last_position FROM prefstore.projection_checkpoints "
        "WHERE projection_name = $1",
        std::string(kValueCountsProjection));
    if (cp.empty()) {
      m_report.notes.push_back(
          std::string(kValueCountsProjection) +
          " has no checkpoint (it never ran here): preference_value_holders and "
          "preference_value_counts were not compared with the log");
    } else {
      m_value_counts = ValueCountsCheckpoint{std::stoull(cp[0][0].as<std::string>()),
                                             cp[0][1].as<std::int64_t>()};
    }
  }

  // --- walking the streams ------------------------------------------------------------------

  void verify_all() {
    // Every event whose stream has a row, in the streams' order: one merge join, streamed
    // through a cursor. Events without a stream row are found by cross_checks().
    m_tx.exec("DECLARE prefstore_verify_events NO SCROLL CURSOR FOR " + kAllEventsSql);
    const std::string fetch =
        "FETCH " + std::to_string(m_options.batch_size) + " FROM prefstore_verify_events";
    m_fetch = [this, fetch] { return m_tx.exec(fetch); };
    std::string after;
    bool first = true;
    const auto limit = static_cast<std::int64_t>(m_options.streams_per_page);
    for (;;) {
      const auto rows = first ? m_tx.exec_params(kFirstStreamsSql, limit)
                              : m_tx.exec_params(kNextStreamsSql, after, limit);
      first = false;
      std::vector<StreamRow> page;
      page.reserve(rows.size());
      for (const auto& r : rows) {
        page.push_back({r[0].as<std::string>(), r[1].as<std::int64_t>()});
      }
      if (page.empty()) break;
      verify_page(page);
      report_progress();
      after = page.back().id;
      if (rows.size() < m_options.streams_per_page) break;
    }
    if (const auto* r = peek_row()) {
      throw Error("verify: the events of stream " + (*r)[0].as<std::string>() +
                  " came after the last stream row; the two orders disagree");
    }
  }

  void verify_one(const std::string& stream) {
    const auto rows = m_tx.exec_params(kOneStreamSql, stream);
    std::vector<StreamRow> page{{stream, std::nullopt}};
    if (!rows.empty()) page[0].version = rows[0][1].as<std::int64_t>();
    std::int64_t after = INT64_MIN;
    const auto limit = static_cast<std::int64_t>(m_options.batch_size);
    m_fetch = [this, stream, after, limit]() mutable {
      auto batch = m_tx.exec_params(kStreamEventsSql, stream, after, limit);
      if (!batch.empty()) after = batch[batch.size() - 1][1].as<std::int64_t>();
      return batch;
    };
    verify_page(page);
  }

  // The next event row (nullptr at the end), fetched batch by batch; consume() moves past it.
  const pqxx::row* peek_row() {
    while (m_row_index >= m_rows.size()) {
      if (m_rows_done || !m_fetch) return nullptr;
      m_rows = m_fetch();
      m_row_index = 0;
      m_rows_done = m_rows.size() < m_options.batch_size;
    }
    m_row.emplace(m_rows[static_cast<pqxx::result::size_type>(m_row_index)]);
    return &*m_row;
  }
  void consume() { ++m_row_index; }

  void verify_page(const std::vector<StreamRow>& page) {
    std::vector<std::string> ids;
    ids.reserve(page.size());
    for (const auto& s : page) ids.push_back(s.id);
    m_current.clear();
    m_holders.clear();
    m_snapshots.clear();
    const std::string array = text_array(ids);
    load_page_rows(array);
    // In distributed mode, the worker (group) of each stream: for its value counts lane, and to
    // find events that a shard move brought from another worker.
    std::map<std::string, int, std::less<>> groups;
    if (m_distributed) {
      for (const auto& r : m_tx.exec_params(kStreamGroupsSql, array)) {
        groups.emplace(r[0].as<std::string>(), r[1].as<int>());
      }
    }
    for (const StreamRow& stream : page) {
      StreamCheck check;
      check.row = &stream;
      if (!m_distributed) {
        check.counts = m_value_counts ? &*m_value_counts : nullptr;
      } else if (const auto g = groups.find(stream.id); g != groups.end()) {
        check.group = g->second;
        const auto lane = m_lanes.find(g->second);
        check.counts = lane == m_lanes.end() ? nullptr : &lane->second;
      }
      if (const auto it = m_snapshots.find(stream.id); it != m_snapshots.end()) {
        check.snapshots = &it->second;
      }
      for (const pqxx::row* r = peek_row();
           r != nullptr && std::string_view((*r)[0].c_str(), (*r)[0].size()) == stream.id;
           r = peek_row()) {
        const EventRow e = event_row(*r);
        consume();
        check_event(check, e);
      }
      finish(check);
    }
  }

  void load_page_rows(const std::string& array) {
    if (!m_options.check_projections) return;
    for (const auto& r : m_tx.exec_params(kCurrentRowsSql, array)) {
      CurrentRow c{r[2].as<std::string>(),  r[3].as<std::string>(), r[4].as<std::int64_t>(),
                   r[5].as<std::int64_t>(), r[6].as<std::string>(), r[7].as<std::int64_t>()};
      m_current[r[0].as<std::string>()].emplace(r[1].as<std::string>(), std::move(c));
    }
    if (m_value_counts) {
      for (const auto& r : m_tx.exec_params(kHolderRowsSql, array)) {
        m_holders[r[0].as<std::string>()].emplace(
            r[1].as<std::string>(), HolderRow{r[2].as<std::string>(), r[3].as<std::string>()});
      }
    }
    for (const auto& r : m_tx.exec_params(kSnapshotRowsSql, array)) {
      const std::string stream = r[0].as<std::string>();
      SnapshotRow s;
      s.version = r[1].as<std::int64_t>();
      const int format = r[2].as<int>();
      const std::string state = pqxx::binarystring(r[3]).str();
      s.last_position = r[5].as<std::int64_t>();
      s.last_recorded_at = r[6].as<std::int64_t>();
      ++m_report.snapshots_checked;
      std::string damage;
      if (format != kSnapshotFormatVersion) {
        damage = "format version " + std::to_string(format) + " is unknown to this build";
      } else if (detail::snapshot_checksum(stream, s.version, format, s.last_position,
                                           s.last_recorded_at, state) != r[4].as<std::string>()) {
        damage = "checksum mismatch";
      } else {
        try {
          s.state = decode_snapshot_state(state, format);
        } catch (const CorruptDataError& e) {
          damage = std::string("cannot be decoded: ") + e.what();
        }
      }
      if (!damage.empty()) {
        warn({Kind::damaged_snapshot, stream, s.version, s.last_position, "",
              "snapshot of stream " + stream + " at version " + std::to_string(s.version) + ": " +
                  damage +
                  " (a snapshot is a cache: reads skip it and it is rewritten from the events)"});
      }
      m_snapshots[stream].push_back(std::move(s));
    }
  }

  // --- one event ----------------------------------------------------------------------------

  // Distributed mode. Each worker group g draws positions from g * 2^48 and stamps its own
  // transaction ids (set_node_transaction_id), and its projector lane orders its events by
  // them. A Citus shard move copies rows with the ids of the worker that wrote them, so on the
  // new worker a lane compares them with ids of another counter: it skips them, or applies them
  // again, late and out of order. Not such a case: events of a moved single-server store
  // (transaction id 1, before everything), and positions of group 0, the coordinator's range,
  // which rows inserted through the coordinator take (a definition, say) while the worker
  // stamps its own transaction id: a moved shard holding only such rows goes unseen here.
  void check_not_moved(StreamCheck& s, const EventRow& e) {
    const std::int64_t written_by = e.position >> 48;
    if (e.transaction_id == 1 || written_by == 0 || written_by == s.group) return;
    s.moved_reported = true;
    problem({Kind::moved_by_shard_move, e.stream_id, e.version, e.position, e.event_id,
             event_name(e.stream_id, e.version, e.position, e.event_id) +
                 ": is stored on worker group " + std::to_string(s.group) +
                 " but was written on worker group " + std::to_string(written_by) +
                 " (its position is from that group's range): its shard was moved "
                 "(citus_move_shard_placement or a rebalance). Its transaction id, " +
                 std::to_string(e.transaction_id) +
                 ", is the other worker's, so the asynchronous projections may skip it or apply "
                 "it again out of order, and a rebuild may miss it. Shard moves are not "
                 "supported: see docs/scaling.md, \"Shard moves\""});
  }

  void check_event(StreamCheck& s, const EventRow& e) {
    ++s.events;
    ++m_report.events_checked;
    ++m_progress.events;
    const bool first = s.events == 1;
    const std::int64_t previous_version = s.last_version;
    if (first) s.first_version = e.version;
    s.last_version = e.version;
    s.last_position = e.position;
    s.last_recorded_at = e.recorded_at;
    s.last_event_id = e.event_id;
    s.last_chain_hash = e.chain_hash;
    if (m_value_counts) s.covered = s.covered && covered(s.counts, e.transaction_id, e.position);
    if (s.group >= 0 && !s.moved_reported) check_not_moved(s, e);
    if (s.log_problem) return;
    const std::string name = event_name(e.stream_id, e.version, e.position, e.event_id);
    const auto fail = [&](Kind kind, const std::string& what) {
      s.log_problem = true;
      problem({kind, e.stream_id, e.version, e.position, e.event_id, name + ": " + what});
    };

    // 1. Contiguous versions from 1 (or from a retention baseline).
    const bool baseline_type = e.event_type == kBaselineType;
    if (first && e.version != 1 && !baseline_type) {
      return fail(Kind::version_gap, "the stream starts at version " + std::to_string(e.version) +
                                         ": " + missing_versions(1, e.version - 1) +
                                         " missing, and it is not a retention baseline");
    }
    if (!first && e.version != previous_version + 1) {
      return fail(Kind::version_gap, "follows version " + std::to_string(previous_version) + ": " +
                                         missing_versions(previous_version + 1, e.version - 1) +
                                         " missing");
    }

    // 2. The hash chain. A baseline later than version 1 stands in for removed events and keeps
    // the chain hash of the last of them (checked against its payload and record below).
    const bool baseline_link = first && e.version != 1;
    if (!baseline_link) {
      const std::string& previous = first ? kGenesis : s.link;
      const std::string expected = m_hasher.link(previous, canonical_bytes(e));
      if (e.chain_hash != expected) {
        return fail(Kind::chain_mismatch,
                    "chain_hash " + hex_of(e.chain_hash) + " is not SHA-256(" +
                        (first ? std::string("32 zero bytes")
                               : "the link of version " + std::to_string(previous_version)) +
                        " || the event's canonical bytes) = " + hex_of(expected) +
                        ": this event (payload, metadata, type, id, time or position) or its "
                        "chain_hash was changed after it was written");
      }
    }
    s.link = e.chain_hash;

    // 3. It decodes.
    RecordedEvent event;
    try {
      event.data = decode(EncodedEvent{e.event_type, e.schema_version, e.payload});
      event.metadata = decode_metadata(e.metadata);
    } catch (const CorruptDataError& error) {
      return fail(Kind::unreadable_event, std::string("cannot be decoded: ") + error.what());
    }
    event.stream_id = e.stream_id;
    event.stream_version = e.version;
    event.global_position = e.position;
    event.event_id = e.event_id;
    event.recorded_at = from_unix_micros(e.recorded_at);

    // 4. A baseline matches its StreamCompacted record.
    if (const auto* baseline = std::get_if<PreferencesBaseline>(&event.data)) {
      if (!first) {
        return fail(Kind::unmatched_baseline,
                    "a PreferencesBaseline must be the first event of its stream; this one "
                    "follows version " +
                        std::to_string(previous_version));
      }
      if (baseline_link) {
        const auto head = hash_from_hex(baseline->chain_head);
        if (!head || *head != e.chain_hash) {
          return fail(Kind::chain_mismatch, "the baseline's chain_hash " + hex_of(e.chain_hash) +
                                                " is not its payload's chain_head \"" +
                                                baseline->chain_head + "\"");
        }
      }
      const auto [from, to] = m_audit.compacted.equal_range({e.stream_id, e.version});
      bool matched = false;
      std::string heads;
      for (auto it = from; it != to; ++it) {
        matched = matched || it->second == baseline->chain_head;
        heads += (heads.empty() ? "" : ", ") + it->second;
      }
      if (!matched) {
        return fail(Kind::unmatched_baseline,
                    "no StreamCompacted record in $audit names stream " + e.stream_id +
                        " up to version " + std::to_string(e.version) + " with chain head " +
                        baseline->chain_head +
                        (heads.empty() ? std::string(" (there is no record for that version)")
                                       : " (the records there have chain head " + heads + ")"));
      }
      s.baseline_version = e.version;
    } else if (baseline_link) {
      return fail(Kind::version_gap, "the stream starts at version " + std::to_string(e.version) +
                                         " with a " + e.event_type + ", not a baseline");
    }

    // 5. No event may be older than an erasure of its stream.
    if (const auto it = m_audit.erased_at.find(e.stream_id);
        it != m_audit.erased_at.end() && e.position < it->second.position) {
      return fail(Kind::erased_stream_present, "is older than the StreamErased record of stream " +
                                                   e.stream_id + " at position " +
                                                   std::to_string(it->second.position) +
                                                   ": the erasure should have removed it");
    }

    // The fold, and the snapshots up to this version.
    if (!m_options.check_projections) return;
    if (e.stream_id.starts_with(kDefinitionPrefix)) {
      apply(s.catalog, event);
    } else {
      apply(s.state, event);
      for (const PreferenceChange& change : preference_changes(event.data)) {
        s.touched[std::string(change.key)] = Touch{e.version, e.position, e.event_id};
      }
    }
    check_snapshots(s, &e);
  }

  // The value counts checkpoint covering the events of `stream` (see StreamCheck::counts).
  const ValueCountsCheckpoint* counts_for(const std::string& stream) {
    if (!m_value_counts) return nullptr;
    if (!m_distributed) return &*m_value_counts;
    const auto r = m_tx.exec_params(kStreamGroupsSql, text_array({stream}));
    if (r.empty()) return nullptr;
    const auto lane = m_lanes.find(r[0][1].as<int>());
    return lane == m_lanes.end() ? nullptr : &lane->second;
  }

  // True when the checkpoint of preference_value_counts (c) is at or past this place of the log
  // (its order: transaction id, then position).
  [[nodiscard]] static bool covered(const ValueCountsCheckpoint* c, std::uint64_t transaction_id,
                                    std::int64_t position) {
    return c != nullptr && (transaction_id < c->transaction_id ||
                            (transaction_id == c->transaction_id && position <= c->position));
  }

  static std::string missing_versions(std::int64_t from, std::int64_t to) {
    if (to < from) return "no version is";  // not reached: versions are unique and ordered
    if (from == to) return "version " + std::to_string(from) + " is";
    return "versions " + std::to_string(from) + " to " + std::to_string(to) + " are";
  }

  // Compares the snapshots of the stream up to event e (all remaining ones when e is null: the
  // end of the stream) with the fold.
  void check_snapshots(StreamCheck& s, const EventRow* e) {
    if (s.snapshots == nullptr) return;
    auto& list = *s.snapshots;
    const std::string& stream = s.row->id;
    while (s.next_snapshot < list.size() &&
           (e == nullptr || list[s.next_snapshot].version <= e->version)) {
      const SnapshotRow& snap = list[s.next_snapshot++];
      if (!snap.state) continue;  // damaged: warned
      const std::string what =
          "snapshot of stream " + stream + " at version " + std::to_string(snap.version);
      if (e != nullptr && snap.version == e->version) {
        std::string difference;
        if (snap.last_position != e->position || snap.last_recorded_at != e->recorded_at) {
          difference = "it says its last event is at position " +
                       std::to_string(snap.last_position) + ", " +
                       micros_text(snap.last_recorded_at) + "; the event is at position " +
                       std::to_string(e->position) + ", " + micros_text(e->recorded_at);
        } else if (*snap.state != s.state) {
          if (s.baseline_version > 0 &&
              same_but_compacted(*snap.state, s.state, s.baseline_version)) {
            warn({Kind::damaged_snapshot, stream, e->version, e->position, e->event_id,
                  what + " was taken before the compaction at version " +
                      std::to_string(s.baseline_version) +
                      ": its values are right, but its keys set up to that version still name "
                      "the removed events (the fold names the baseline); rewrite it with "
                      "`prefstore snapshot create`"});
          } else {
            difference = "its state differs from the fold of the events up to it: " +
                         state_difference(*snap.state, s.state);
          }
        }
        if (!difference.empty()) {
          problem({Kind::snapshot_mismatch, stream, e->version, e->position, e->event_id,
                   what + ", the state after " +
                       event_name(stream, e->version, e->position, e->event_id) + ": " +
                       difference});
        }
        ++m_report.projection_rows_checked;
      } else if (snap.version < s.first_version) {
        warn({Kind::damaged_snapshot, stream, snap.version, snap.last_position, "",
              what + " is older than the stream's first event (version " +
                  std::to_string(s.first_version) + "): it cannot be compared"});
      } else {
        problem({Kind::snapshot_mismatch, stream, snap.version, snap.last_position, "",
                 what + ": the stream has no event at that version (its last is version " +
                     std::to_string(s.last_version) + ")"});
      }
    }
  }

  // True when the snapshot holds the fold's values and differs only where a retention baseline
  // at `baseline` replaced the events that set a key (the snapshot still names those).
  static bool same_but_compacted(const PreferenceState& snapshot, const PreferenceState& fold,
                                 std::int64_t baseline) {
    if (snapshot.size() != fold.size()) return false;
    for (const auto& [key, entry] : fold) {
      const auto it = snapshot.find(key);
      if (it == snapshot.end() || it->second.value != entry.value) return false;
      if (it->second != entry && !(entry.version == baseline && it->second.version <= baseline)) {
        return false;
      }
    }
    return true;
  }

  static std::string state_difference(const PreferenceState& snapshot,
                                      const PreferenceState& fold) {
    for (const auto& [key, entry] : fold) {
      const auto it = snapshot.find(key);
      if (it == snapshot.end()) return key + " is missing from the snapshot";
      if (it->second != entry) {
        return key + " is " + typed(it->second.value) + " (version " +
               std::to_string(it->second.version) + ") in the snapshot, " + typed(entry.value) +
               " (version " + std::to_string(entry.version) + ") in the fold";
      }
    }
    for (const auto& [key, entry] : snapshot) {
      if (!fold.contains(key)) return key + " is in the snapshot but not in the fold";
    }
    return "no key differs";
  }

  // --- the end of one stream ----------------------------------------------------------------

  void finish(StreamCheck& s) {
    const StreamRow& row = *s.row;
    if (s.events == 0 && !row.version) {
      m_report.notes.push_back("stream " + row.id +
                               " has no row in prefstore.streams and no events" +
                               (m_audit.erased_at.contains(row.id)
                                    ? " (it was erased at position " +
                                          std::to_string(m_audit.erased_at[row.id].position) + ")"
                                    : std::string()));
      return;
    }
    ++m_report.streams_checked;
    ++m_progress.streams;
    if (!s.log_problem) {
      const std::int64_t last = s.events > 0 ? s.last_version : 0;
      const std::string last_text =
          s.events > 0 ? "its last event is " +
                             event_name(row.id, s.last_version, s.last_position, s.last_event_id)
                       : std::string("it has no events");
      if (!row.version) {
        problem({Kind::stream_version_mismatch, row.id, s.last_version, s.last_position,
                 s.last_event_id,
                 "stream " + row.id + " has no row in prefstore.streams, but " + last_text});
        s.log_problem = true;
      } else if (*row.version != last) {
        problem({Kind::stream_version_mismatch, row.id, s.last_version, s.last_position,
                 s.last_event_id,
                 "prefstore.streams says stream " + row.id + " is at version " +
                     std::to_string(*row.version) + ", but " + last_text});
        s.log_problem = true;
      }
    }
    if (m_options.check_projections && !s.log_problem) {
      check_snapshots(s, nullptr);
      compare_current(s);
      compare_holders(s);
      if (row.id.starts_with(kDefinitionPrefix)) compare_definitions(s);
    }
    if (m_options.on_stream) {
      m_options.on_stream(
          StreamHead{row.id, s.events > 0 ? s.last_version : 0, s.events > 0 ? s.last_position : 0,
                     s.events > 0 ? hex_of(s.last_chain_hash) : std::string(), !s.log_problem});
    }
  }

  std::string touch_text(const StreamCheck& s, std::string_view key) const {
    const auto it = s.touched.find(key);
    if (it == s.touched.end()) return "";
    return event_name(s.row->id, it->second.version, it->second.position, it->second.event_id);
  }

  void compare_current(const StreamCheck& s) {
    const std::string& stream = s.row->id;
    static const std::map<std::string, CurrentRow, std::less<>> none;
    const auto found = m_current.find(stream);
    const auto& rows = found == m_current.end() ? none : found->second;
    m_report.projection_rows_checked += static_cast<std::int64_t>(rows.size());
    std::int64_t differing = 0;
    std::optional<VerifyProblem> first;
    const auto note = [&](std::string_view key, std::int64_t version, std::int64_t position,
                          std::string event_id, std::string what) {
      if (++differing > 1) return;
      (void)key;
      first = VerifyProblem{Kind::projection_mismatch, stream,         version, position,
                            std::move(event_id),       std::move(what)};
    };
    // Both sides in key order (byte order of std::map).
    auto row = rows.begin();
    auto fold = s.state.begin();
    while (row != rows.end() || fold != s.state.end()) {
      if (fold == s.state.end() || (row != rows.end() && row->first < fold->first)) {
        const CurrentRow& c = row->second;
        const auto touched = s.touched.find(row->first);
        const std::string by_event = touched == s.touched.end()
                                         ? std::string("no event of the stream sets it")
                                         : "it was reset by " + touch_text(s, row->first);
        note(row->first, touched == s.touched.end() ? c.version : touched->second.version,
             touched == s.touched.end() ? c.last_position : touched->second.position,
             touched == s.touched.end() ? std::string() : touched->second.event_id,
             "preferences_current row (" + stream + ", " + row->first + ") holds " + c.value_type +
                 " " + c.value_json + " (version " + std::to_string(c.version) + ", position " +
                 std::to_string(c.last_position) +
                 "), but the fold of the log has no value for the key: " + by_event);
        ++row;
        continue;
      }
      const std::string& key = fold->first;
      const PreferenceEntry& want = fold->second;
      const auto touched = s.touched.find(key);
      const Touch t = touched == s.touched.end() ? Touch{want.version, want.last_position, ""}
                                                 : touched->second;
      const std::string wanted =
          typed(want.value) + " set by " + event_name(stream, t.version, t.position, t.event_id) +
          " at " + format_timestamp(want.updated_at) + " by \"" + want.updated_by + "\"";
      if (row == rows.end() || fold->first < row->first) {
        note(key, t.version, t.position, t.event_id,
             "preferences_current has no row (" + stream + ", " + key +
                 "), but the fold of the log gives " + wanted);
        ++fold;
        continue;
      }
      const CurrentRow& c = row->second;
      std::string holds = c.value_type + " " + c.value_json;
      bool same = false;
      try {
        const auto type = parse_value_type(c.value_type);
        same = type && *type == type_of(want.value) &&
               value_from_json(*type, c.value_json) == want.value && c.version == want.version &&
               c.updated_at == to_unix_micros(want.updated_at) && c.updated_by == want.updated_by &&
               c.last_position == want.last_position;
      } catch (const CorruptDataError& e) {
        holds += " (unreadable: " + std::string(e.what()) + ")";
      }
      if (!same) {
        note(key, t.version, t.position, t.event_id,
             "preferences_current row (" + stream + ", " + key + ") holds " + holds + " (version " +
                 std::to_string(c.version) + ", position " + std::to_string(c.last_position) +
                 ", at " + micros_text(c.updated_at) + ", by \"" + c.updated_by +
                 "\"), but the fold of the log gives " + wanted);
      }
      ++row;
      ++fold;
    }
    if (first) {
      if (differing > 1) {
        first->message += " (and " + std::to_string(differing - 1) + " more keys differ)";
      }
      problem(std::move(*first));
    }
  }

  void compare_holders(StreamCheck& s) {
    if (!m_value_counts) return;
    const std::string& stream = s.row->id;
    const bool user = is_user_stream(stream);
    if (user && !s.covered) {
      ++m_report.value_counts_streams_behind;
      return;
    }
    static const std::map<std::string, HolderRow, std::less<>> none;
    static const PreferenceState empty;
    const auto found = m_holders.find(stream);
    const auto& rows = found == m_holders.end() ? none : found->second;
    const PreferenceState& want = user ? s.state : empty;  // prefstore's own streams: no rows
    m_report.projection_rows_checked += static_cast<std::int64_t>(rows.size());
    std::int64_t differing = 0;
    std::string first;
    Touch first_touch;
    const auto note = [&](const std::string& key, std::string what) {
      if (++differing > 1) return;
      first = std::move(what);
      if (const auto it = s.touched.find(key); it != s.touched.end()) first_touch = it->second;
    };
    for (const auto& [key, h] : rows) {
      const auto it = want.find(key);
      bool same = false;
      try {
        const auto type = parse_value_type(h.value_type);
        same = it != want.end() && type && *type == type_of(it->second.value) &&
               value_from_json(*type, h.value_json) == it->second.value;
      } catch (const CorruptDataError&) {
      }
      if (!same) {
        note(key, "preference_value_holders row (" + stream + ", " + key + ") holds " +
                      h.value_type + " " + h.value_json + ", but the fold of the log gives " +
                      (it == want.end() ? std::string("no value (the default)")
                                        : typed(it->second.value)));
      }
    }
    for (const auto& [key, entry] : want) {
      if (!rows.contains(key)) {
        note(key, "preference_value_holders has no row (" + stream + ", " + key +
                      "), but the fold of the log gives " + typed(entry.value));
      }
    }
    if (differing > 0) {
      if (differing > 1) first += " (and " + std::to_string(differing - 1) + " more keys differ)";
      problem({Kind::projection_mismatch, stream, first_touch.version, first_touch.position,
               first_touch.event_id,
               first + "; the checkpoint of " + kValueCountsProjection +
                   " covers every event of the stream"});
    }
  }

  void compare_definitions(const StreamCheck& s) {
    const std::string& stream = s.row->id;
    const std::string own_key = stream.substr(kDefinitionPrefix.size());
    const std::string last = event_name(stream, s.last_version, s.last_position, s.last_event_id);
    for (const auto& [key, entry] : s.catalog) {
      const std::string named = event_name(stream, entry.version, entry.last_position, "");
      if (const auto bad = m_bad_definitions.find(key); bad != m_bad_definitions.end()) {
        problem({Kind::projection_mismatch, stream, entry.version, entry.last_position, "",
                 "preference_definitions row " + key + " cannot be read (" + bad->second +
                     "); the fold of " + stream + " defines it at " + named});
        m_bad_definitions.erase(bad);
        continue;
      }
      const auto it = m_definitions.find(key);
      if (it == m_definitions.end()) {
        problem({Kind::projection_mismatch, stream, entry.version, entry.last_position, "",
                 "preference_definitions has no row for " + key + ", but " + stream +
                     " defines it (last changed by " + named + ")"});
        continue;
      }
      ++m_report.projection_rows_checked;
      const std::string differences = definition_differences(it->second, entry);
      if (!differences.empty()) {
        problem({Kind::projection_mismatch, stream, entry.version, entry.last_position,
                 entry.last_position == s.last_position ? s.last_event_id : std::string(),
                 "preference_definitions row " + key + " differs from the fold of " + stream +
                     " (last changed by " + named + ") in: " + differences});
      }
      m_definitions.erase(it);
    }
    // A row for the stream's own key that no event defines.
    if (!s.catalog.contains(own_key)) {
      if (m_definitions.contains(own_key) || m_bad_definitions.contains(own_key)) {
        problem({Kind::projection_mismatch, stream, s.last_version, s.last_position,
                 s.last_event_id,
                 "preference_definitions has a row for " + own_key + ", but the fold of " + stream +
                     " (last event " + last + ") defines no such key"});
        m_definitions.erase(own_key);
        m_bad_definitions.erase(own_key);
      }
    }
  }

  // --- across streams (a full run only) -----------------------------------------------------

  void cross_checks() {
    const std::int64_t limit = 100;
    for (const auto& [key, entry] : m_definitions) {
      problem({Kind::projection_mismatch, std::string(kDefinitionPrefix) + key, entry.version,
               entry.last_position, "",
               "preference_definitions has a row for " + key + " (version " +
                   std::to_string(entry.version) + ", position " +
                   std::to_string(entry.last_position) + "), but stream " +
                   std::string(kDefinitionPrefix) + key + " has no events"});
    }
    for (const auto& [key, what] : m_bad_definitions) {
      problem({Kind::projection_mismatch, std::string(kDefinitionPrefix) + key, 0, 0, "",
               "preference_definitions row " + key + " cannot be read (" + what +
                   ") and no stream defines it"});
    }
    for (const auto& r : m_tx.exec_params(kOrphanEventsSql, limit)) {
      const std::string stream = r[0].as<std::string>();
      problem({Kind::stream_version_mismatch, stream, r[1].as<std::int64_t>(),
               r[2].as<std::int64_t>(), r[3].as<std::string>(),
               event_name(stream, r[1].as<std::int64_t>(), r[2].as<std::int64_t>(),
                          r[3].as<std::string>()) +
                   ": its stream has no row in prefstore.streams"});
    }
    for (const auto& r : m_tx.exec_params(kOrphanCurrentSql, limit)) {
      const std::string stream = r[0].as<std::string>();
      problem({Kind::projection_mismatch, stream, r[2].as<std::int64_t>(), r[3].as<std::int64_t>(),
               "",
               "preferences_current has rows of stream " + stream + " (key " +
                   r[1].as<std::string>() + "), which has no row in prefstore.streams"});
    }
    for (const auto& r : m_tx.exec_params(kOrphanSnapshotsSql, limit)) {
      const std::string stream = r[0].as<std::string>();
      problem({Kind::snapshot_mismatch, stream, r[1].as<std::int64_t>(), r[2].as<std::int64_t>(),
               "",
               "snapshot of stream " + stream + " at version " + r[1].as<std::string>() +
                   ": the stream has no row in prefstore.streams"});
    }
    if (m_value_counts) {
      std::int64_t awaiting = 0;
      // Erasure records live in "$audit": one look-up of its lane, not one per row.
      const ValueCountsCheckpoint* audit_counts = counts_for("$audit");
      for (const auto& r : m_tx.exec_params(kOrphanHoldersSql, limit)) {
        const std::string stream = r[0].as<std::string>();
        const auto erased = m_audit.erased_at.find(stream);
        if (erased != m_audit.erased_at.end() &&
            !covered(audit_counts, erased->second.transaction_id, erased->second.position)) {
          ++awaiting;  // the projection forgets the user when it reaches the record
          continue;
        }
        problem({Kind::projection_mismatch, stream, 0,
                 erased == m_audit.erased_at.end() ? 0 : erased->second.position, "",
                 "preference_value_holders has " + r[2].as<std::string>() + " rows of stream " +
                     stream + " (key " + r[1].as<std::string>() +
                     "), which has no row in prefstore.streams" +
                     (erased == m_audit.erased_at.end()
                          ? std::string()
                          : " (erased at position " + std::to_string(erased->second.position) +
                                ", which the checkpoint of " + kValueCountsProjection +
                                " has passed): its values outlived the erasure")});
      }
      if (awaiting > 0) {
        m_report.notes.push_back(std::to_string(awaiting) +
                                 " erased streams still have rows in preference_value_holders: " +
                                 kValueCountsProjection +
                                 " has not reached their StreamErased records yet (behind, not "
                                 "wrong)");
      }
    }
    for (const auto& r : m_tx.exec_params(kCountsAgainstHoldersSql, limit)) {
      problem({Kind::projection_mismatch, "", 0, 0, "",
               "preference_value_counts says " + r[3].as<std::string>() + " users hold " +
                   r[0].as<std::string>() + " = " + r[1].as<std::string>() + " " +
                   r[2].as<std::string>() + ", but preference_value_holders has " +
                   r[4].as<std::string>()});
    }
  }

  void checkpoints_ahead() {
    for (const auto& r : m_tx.exec_params(kCheckpointsAheadSql, m_report.log_end_position)) {
      problem({Kind::checkpoint_ahead, "", 0, r[1].as<std::int64_t>(), "",
               "the checkpoint of projection " + r[0].as<std::string>() + " is at position " +
                   r[1].as<std::string>() + ", past the end of the log (position " +
                   std::to_string(m_report.log_end_position) +
                   "): it would skip the events written up to there (restore its read model "
                   "with `prefstore projections rebuild`)"});
    }
  }

  // --- findings -----------------------------------------------------------------------------

  void problem(VerifyProblem p) {
    ++m_report.problem_count;
    if (m_report.problems.size() < m_options.max_problems)
      m_report.problems.push_back(std::move(p));
  }

  void warn(VerifyProblem p) {
    if (m_report.warnings.size() < m_options.max_problems)
      m_report.warnings.push_back(std::move(p));
  }

  void report_progress() {
    if (m_options.progress) m_options.progress(m_progress);
  }

  pqxx::transaction_base& m_tx;
  const VerifyOptions& m_options;
  VerifyReport& m_report;
  VerifyProgress m_progress;
  ChainHasher m_hasher;
  // The events being walked: the current batch, the next row in it, and how to get more.
  std::function<pqxx::result()> m_fetch;
  pqxx::result m_rows;
  std::size_t m_row_index = 0;
  bool m_rows_done = false;
  std::optional<pqxx::row> m_row;
  AuditIndex m_audit;
  std::optional<ValueCountsCheckpoint> m_value_counts;  // distributed: set when m_lanes has any
  bool m_distributed = false;                           // the store is distributed (Citus)
  std::map<int, ValueCountsCheckpoint> m_lanes;         // distributed: by worker group
  std::map<std::string, DefinitionEntry, std::less<>> m_definitions;  // rows not yet matched
  std::map<std::string, std::string, std::less<>> m_bad_definitions;  // unreadable rows
  // The read-model rows of the current page of streams.
  std::map<std::string, std::map<std::string, CurrentRow, std::less<>>, std::less<>> m_current;
  std::map<std::string, std::map<std::string, HolderRow, std::less<>>, std::less<>> m_holders;
  std::map<std::string, std::vector<SnapshotRow>, std::less<>> m_snapshots;
};

}  // namespace

VerifyReport verify_store(ConnectionPool& pool, const VerifyOptions& options) {
  if (options.batch_size == 0 || options.streams_per_page == 0 || options.max_problems == 0) {
    throw UsageError("verify: batch_size, streams_per_page and max_problems must be at least 1");
  }
  if (options.stream_id && options.stream_id->empty()) {
    throw UsageError("verify: the stream id must not be empty");
  }
  VerifyReport report;
  report.projections_checked = options.check_projections;
  const std::string context =
      options.stream_id ? "verifying stream " + *options.stream_id : "verifying the store";
  auto handle = pool.acquire();
  try {
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(detail::native(handle));
    Verifier(tx, options, report).run();
    tx.commit();
  } catch (const Error&) {
    throw;
  } catch (const pqxx::failure&) {
    detail::rethrow_translated(context);
  } catch (const pqxx::usage_error&) {
    detail::rethrow_translated(context);
  } catch (const pqxx::conversion_error&) {
    detail::rethrow_translated(context);
  }
  return report;
}

}  // namespace prefstore::storage
