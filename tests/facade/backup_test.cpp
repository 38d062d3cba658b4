// Logical backups (storage/backup.hpp, backup_file.hpp) through the Store facade and the CLI
// (TESTING.md #6 corrupt backups, #7 restore round trip, #11 model-based properties). Every
// test compares real rows of two databases, as text, or the state the source reports for a
// moment with the state the restored database reports now.
//
// - BackupRoundTrip: random histories (several users, set / reset / set_many / point-in-time
//   restores / definitions / deprecations / snapshots, Unicode text), backup (random chunk
//   size), restore (random batch size) into a fresh database: events, streams,
//   preferences_current, preference_definitions and snapshots equal row for row; after catching
//   the asynchronous projections up on both sides, the value counts equal too; new appends after
//   the restore get later positions and are projected. Also into a fresh cluster whose
//   transaction ids are far below the source's (pitfall 9).
// - BackupPointInTime: restore with until_time T equals the source's state_as_of(T) per user;
//   with until_position P its state_as_of(P).
// - BackupIncremental: full + incremental equals the source; an incremental alone, twice, or on
//   top of a database written since is refused with nothing written.
// - BackupConcurrency: four writers (whose appends stay open a few milliseconds, so commits come
//   out of position order) run during a full and an incremental backup: every file holds exactly
//   the source's events in its range, and full + incremental restore the source exactly. A
//   restore into a database being written to (and projected) loses no write.
// - BackupCorruption: every chunk boundary truncation (and +-1 byte), 20 random cuts, a flipped
//   byte in every chunk, the header and the trailer, chunks swapped, dropped or taken from
//   another backup: restore throws CorruptDataError and writes nothing; `prefstore backup
//   verify` exits 8 naming the chunk, `backup restore` exits 8.
// - BackupCrafted: files with every checksum right whose records are no valid log (a repeated
//   position, a version gap, a payload that is not one JSON object): refused, nothing written.
// - BackupFileSafety: no password in the file, its history row or the CLI's output; mode 0600; a
//   failed backup leaves the previous file untouched.
// - BackupRefusals: a full backup into a non-empty database (UsageError), forced with clashing
//   positions / stream versions / event ids (ConflictError): nothing written.
// - BackupDrill: the recovery drill with the CLI: data, backup, DROP DATABASE, CREATE, migrate,
//   restore, then get / history / definitions / projections status as before; refusals (exit 2,
//   4) and --position / --until restores against `get --as-of`.
//
// Run counts are small so the binary stays well under two minutes; RC_PARAMS overrides them.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <pqxx/pqxx>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/backup.hpp"
#include "prefstore/storage/backup_file.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "render.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

namespace fs = std::filesystem;
using prefstore::testing::admin;
using prefstore::testing::check_property;
using prefstore::testing::database_name;
using prefstore::testing::quoted;
using prefstore::testing::run_cli;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::TestCluster;
using storage::BackupOptions;
using storage::BackupRestoreOptions;

// ------------------------------------------------------------------------------------------
// Databases

// Runs a statement in the database at url.
void admin_in(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

class TempDir {
 public:
  TempDir() : m_path(prefstore::testing::make_temp_dir("prefstore-backup-test")) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  [[nodiscard]] fs::path operator/(const std::string& name) const { return m_path / name; }

 private:
  fs::path m_path;
};

StoreOptions open_options(const std::string& url) {
  StoreOptions o;
  o.database_url = url;
  o.strict = false;
  o.pool.max_size = 6;
  return o;
}

// ------------------------------------------------------------------------------------------
// Rows as text

using Rows = std::vector<std::string>;

Rows query_rows(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::read_transaction tx(conn);
  Rows out;
  for (const auto& row : tx.exec(sql)) {
    std::string line;
    for (const auto& field : row) {
      if (!line.empty()) line += " | ";
      line += field.is_null() ? std::string("NULL") : quoted(field.c_str());
    }
    out.push_back(std::move(line));
  }
  return out;
}

std::string query_value(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::read_transaction tx(conn);
  const auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? std::string() : r[0][0].c_str();
}

std::int64_t count_rows(const std::string& url, const std::string& table) {
  return std::stoll(query_value(url, "SELECT count(*) FROM prefstore." + table));
}

std::string micros_sql(const std::string& column) {
  return "(extract(epoch FROM " + column + ") * 1000000)::bigint";
}

std::string events_sql(const std::string& where = "TRUE") {
  return "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, "
         "payload::text, metadata::text, recorded_at FROM prefstore.events WHERE " +
         where + " ORDER BY global_position";
}
std::string streams_sql(const std::string& where = "TRUE") {
  return "SELECT stream_id, version, last_recorded_at FROM prefstore.streams WHERE " + where +
         " ORDER BY stream_id";
}
const char* const kCurrentSql =
    "SELECT stream_id, key, value_type, value::text, version, updated_at, updated_by, "
    "last_position FROM prefstore.preferences_current ORDER BY stream_id, key";
const char* const kDefinitionsSql = "SELECT * FROM prefstore.preference_definitions ORDER BY key";
const char* const kSnapshotsSql =
    "SELECT * FROM prefstore.snapshots ORDER BY stream_id, stream_version";
const char* const kValueCountsSql =
    "SELECT key, value_type, value::text, users FROM prefstore.preference_value_counts "
    "ORDER BY key, value_type, value::text";
const char* const kValueHoldersSql =
    "SELECT stream_id, key, value_type, value::text FROM prefstore.preference_value_holders "
    "ORDER BY stream_id, key";

// What preference_value_counts must hold, from the inline state: users per value of each key.
const char* const kCountsFromCurrentSql =
    "SELECT key, value_type, value::text, count(*) FROM prefstore.preferences_current "
    "GROUP BY key, value_type, value::text ORDER BY key, value_type, value::text";
const char* const kPositiveValueCountsSql =
    "SELECT key, value_type, value::text, users FROM prefstore.preference_value_counts "
    "WHERE users > 0 ORDER BY key, value_type, value::text";

// "" when equal, else the first difference, for a failure message.
std::string first_difference(const std::string& what, const Rows& expected, const Rows& actual) {
  const std::size_t n = std::min(expected.size(), actual.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (expected[i] != actual[i]) {
      return what + ": row " + std::to_string(i) + " differs\n  expected: " + expected[i] +
             "\n  actual:   " + actual[i];
    }
  }
  if (expected.size() != actual.size()) {
    const bool more = expected.size() > actual.size();
    return what + ": expected " + std::to_string(expected.size()) + " rows, got " +
           std::to_string(actual.size()) + "; first " + (more ? "missing" : "extra") +
           " row: " + (more ? expected[n] : actual[n]);
  }
  return "";
}

// first_difference of the rows `sql` selects in two databases.
std::string rows_difference(const std::string& what, const std::string& expected_url,
                            const std::string& actual_url, const std::string& sql) {
  return first_difference(what, query_rows(expected_url, sql), query_rows(actual_url, sql));
}

// Differences of the log and its inline read models between two databases.
std::string compare_databases(const std::string& source, const std::string& restored,
                              bool with_snapshots = true) {
  std::string out;
  const auto add = [&](const std::string& what, const std::string& sql) {
    const std::string d = rows_difference(what, source, restored, sql);
    if (!d.empty()) out += d + "\n";
  };
  add("events", events_sql());
  add("streams", streams_sql());
  add("preferences_current", kCurrentSql);
  add("preference_definitions", kDefinitionsSql);
  if (with_snapshots) add("snapshots", kSnapshotsSql);
  return out;
}

// Everything a restore could write, for "nothing was written" checks: the rows of each table,
// each prefixed with the table's name.
Rows dump(const std::string& url) {
  Rows out;
  const std::pair<const char*, std::string> tables[] = {
      {"events", events_sql()},
      {"streams", streams_sql()},
      {"preferences_current", kCurrentSql},
      {"preference_definitions", kDefinitionsSql},
      {"snapshots", kSnapshotsSql},
      {"backup_history",
       "SELECT backup_id, operation, since_position, until_position, events, snapshots FROM "
       "prefstore.backup_history ORDER BY recorded_at, operation"},
      {"projection_checkpoints", "SELECT * FROM prefstore.projection_checkpoints ORDER BY 1"}};
  for (const auto& [table, sql] : tables) {
    for (const auto& row : query_rows(url, sql)) out.push_back(std::string(table) + ": " + row);
  }
  return out;
}

// Row counts of every table a restore writes; "" when all are empty. One round trip.
const char* const kNonEmptyTablesSql =
    "SELECT coalesce(string_agg(t || ' has ' || n || ' rows', '; '), '') FROM (VALUES "
    "('events', (SELECT count(*) FROM prefstore.events)), "
    "('streams', (SELECT count(*) FROM prefstore.streams)), "
    "('snapshots', (SELECT count(*) FROM prefstore.snapshots)), "
    "('backup_history', (SELECT count(*) FROM prefstore.backup_history)), "
    "('preferences_current', (SELECT count(*) FROM prefstore.preferences_current)), "
    "('preference_definitions', (SELECT count(*) FROM prefstore.preference_definitions))) "
    "AS c(t, n) WHERE n > 0";

std::string non_empty_tables(const std::string& url) {
  return query_value(url, kNonEmptyTablesSql);
}

void catch_up_projections(Store& store) {
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
}

// preference_value_counts (its rows with users) against what the inline state says it must
// hold; "" when they agree. Call after catch_up_projections.
std::string counts_against_current(
    const std::string& url,
    const std::string& what = "preference_value_counts against preferences_current") {
  return first_difference(what, query_rows(url, kCountsFromCurrentSql),
                          query_rows(url, kPositiveValueCountsSql));
}

// How far the asynchronous preference_value_counts has read the log (its checkpoint).
std::string value_counts_checkpoint(const std::string& url) {
  return query_value(url,
                     "SELECT last_position FROM prefstore.projection_checkpoints WHERE "
                     "projection_name = 'preference_value_counts'");
}

// The state of the position sequence, "last_value is_called" (a rollback does not undo setval).
std::string position_sequence(const std::string& url) {
  return query_value(url,
                     "SELECT last_value || ' ' || is_called FROM "
                     "prefstore.events_global_position_seq");
}

// "position stream vN, ..." of every event, for a failure message.
std::string event_list(const std::string& url) {
  return query_value(url,
                     "SELECT string_agg(global_position || ' ' || stream_id || ' v' || "
                     "stream_version, ', ' ORDER BY global_position, stream_id) FROM "
                     "prefstore.events");
}

std::int64_t max_position(const std::string& url) {
  const std::string v = query_value(url,
                                    "SELECT coalesce(max(global_position), 0) FROM "
                                    "prefstore.events");
  return std::stoll(v);
}

// ------------------------------------------------------------------------------------------
// Preference states as text

std::string render(const Value& value) {
  return std::string(to_string(type_of(value))) + " " + to_json(value);
}

std::string render(const PreferenceEntry& e) {
  return render(e.value) + " v" + std::to_string(e.version) + " at " +
         std::to_string(to_unix_micros(e.updated_at)) + " by " + quoted(e.updated_by) + " @" +
         std::to_string(e.last_position);
}

std::map<std::string, std::string> render(const PreferenceState& state) {
  std::map<std::string, std::string> out;
  for (const auto& [key, entry] : state) out[key] = render(entry);
  return out;
}

// The values the user set (not the defaults), as get_all reports them.
std::map<std::string, std::string> user_values(
    const std::map<std::string, ResolvedPreference>& all) {
  std::map<std::string, std::string> out;
  for (const auto& [key, p] : all) {
    if (p.is_default) continue;
    out[key] = p.entry ? render(*p.entry) : "(no entry) " + render(p.value);
    if (p.entry && p.entry->value != p.value) out[key] += " (value differs from its entry)";
  }
  return out;
}

std::map<std::string, std::string> everything(
    const std::map<std::string, ResolvedPreference>& all) {
  std::map<std::string, std::string> out;
  for (const auto& [key, p] : all) {
    out[key] = (p.is_default ? "default " : "") + render(p.value) +
               (p.entry ? " / " + render(*p.entry) : std::string());
  }
  return out;
}

std::string show(const std::map<std::string, std::string>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) out += "\n  " + k + ": " + v;
  return out + "\n}";
}

// ------------------------------------------------------------------------------------------
// Random histories

const std::array<std::string, 5> kUsers = {"ada", "björn", "李雷", "zoë 🙂", "o'brien"};
const std::array<std::string, 5> kActors = {"", "ada@example.com", "björn@exämple.org", "李雷",
                                            "ops-bot 🤖"};
// 0..2 are defined by the history's define ops (open mode accepts them before); 3, 4 never are.
const std::array<std::string, 5> kKeys = {"calendar.timezone", "calendar.default_meeting_minutes",
                                          "notifications.channels", "calendar.show_weekends",
                                          "calendar.zoom"};

enum class OpKind { set, reset, set_many, restore, define, deprecate, snapshot };

struct Op {
  OpKind kind = OpKind::set;
  int user = 0;
  int key = 0;
  std::int64_t number = 5;  // 5..480: minutes, the double (number / 7 - 30), a key mask, an index
  std::string text;
  StringList items;
  bool flag = false;
  int actor = 0;
};

const char* name_of(OpKind kind) {
  switch (kind) {
    case OpKind::set:
      return "set";
    case OpKind::reset:
      return "reset";
    case OpKind::set_many:
      return "set_many";
    case OpKind::restore:
      return "restore";
    case OpKind::define:
      return "define";
    case OpKind::deprecate:
      return "deprecate";
    case OpKind::snapshot:
      return "snapshot";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, const Op& op) {
  os << name_of(op.kind) << "(user " << kUsers[static_cast<std::size_t>(op.user)] << ", key "
     << kKeys[static_cast<std::size_t>(op.key)] << ", number " << op.number << ", text "
     << quoted(op.text) << ", items [";
  for (const auto& i : op.items) os << quoted(i) << " ";
  return os << "], flag " << op.flag << ", actor " << op.actor << ")";
}

const std::vector<std::string>& text_pieces() {
  static const std::vector<std::string> pieces = {
      "a",  "b",    "Z",           "0",      " ",      "-",  "é",      "ß",       "ø",     "李",
      "雷", "🙂", "👩‍💻", "\u0301", "𝄞",      "\"", "\\",     "'",       "\n",    "\t",
      "<",  "&",    "%",           "$",      "\u00a0", "{}", "\u2028", "Europe/", "Paris", "null"};
  return pieces;
}

rc::Gen<std::string> gen_text() {
  return rc::gen::map(rc::gen::resize(8, rc::gen::container<std::vector<std::string>>(
                                             rc::gen::elementOf(text_pieces()))),
                      [](const std::vector<std::string>& parts) {
                        std::string s;
                        for (const auto& p : parts) s += p;
                        return s;
                      });
}

OpKind kind_of(int roll) {
  if (roll < 8) return OpKind::set;
  if (roll < 10) return OpKind::reset;
  if (roll < 13) return OpKind::set_many;
  if (roll < 15) return OpKind::restore;
  if (roll < 17) return OpKind::define;
  if (roll < 18) return OpKind::deprecate;
  return OpKind::snapshot;
}

rc::Gen<Op> gen_op() {
  return rc::gen::map(
      rc::gen::tuple(rc::gen::inRange(0, 19), rc::gen::inRange(0, 5), rc::gen::inRange(0, 5),
                     rc::gen::inRange<std::int64_t>(5, 481), gen_text(),
                     rc::gen::resize(4, rc::gen::container<StringList>(gen_text())),
                     rc::gen::arbitrary<bool>(), rc::gen::inRange(0, 5)),
      [](const std::tuple<int, int, int, std::int64_t, std::string, StringList, bool, int>& t) {
        Op op;
        int roll = 0;
        std::tie(roll, op.user, op.key, op.number, op.text, op.items, op.flag, op.actor) = t;
        op.kind = kind_of(roll);
        return op;
      });
}

rc::Gen<std::vector<Op>> gen_history() {
  return rc::gen::nonEmpty(rc::gen::container<std::vector<Op>>(gen_op()));
}

Value value_for(int key, const Op& op) {
  switch (key) {
    case 0:
      return op.text;
    case 1:
      return op.number;
    case 2:
      return op.items;
    case 3:
      return op.flag;
    default:
      return static_cast<double>(op.number) / 7.0 - 30.0;
  }
}

PreferenceDefinition definition_for(int key, const Op& op) {
  PreferenceDefinition d;
  d.key = kKeys[static_cast<std::size_t>(key)];
  d.description = op.text;
  switch (key) {
    case 0:
      d.type = ValueType::string;
      d.default_value = op.flag ? Value(std::string("UTC")) : Value(op.text);
      break;
    case 1:
      d.type = ValueType::integer;
      d.default_value = op.number;
      d.constraints.min = 5;
      d.constraints.max = 480;
      break;
    default:
      d.type = ValueType::string_list;
      d.default_value = op.flag ? Value(StringList{"email"}) : Value(op.items);
      break;
  }
  return d;
}

// Runs a history on a store, recording the moment of every write (for as-of choices).
class HistoryDriver {
 public:
  explicit HistoryDriver(Store& store) : m_store(store) {}

  void run(const Op& op) {
    const std::string& user = kUsers[static_cast<std::size_t>(op.user)];
    const std::string& key = kKeys[static_cast<std::size_t>(op.key)];
    const Metadata md{kActors[static_cast<std::size_t>(op.actor)], "calendar-web", op.text, "", ""};
    switch (op.kind) {
      case OpKind::set:
        note(m_store.set(user, key, value_for(op.key, op), md));
        break;
      case OpKind::reset:
        note(m_store.reset(user, key, md));
        break;
      case OpKind::set_many: {
        std::vector<std::pair<std::string, Value>> values;
        const std::int64_t mask = op.number % 31 + 1;
        for (int k = 0; k < 5; ++k) {
          if ((mask >> k) & 1)
            values.emplace_back(kKeys[static_cast<std::size_t>(k)], value_for(k, op));
        }
        note(m_store.set_many(user, values, md));
        break;
      }
      case OpKind::restore: {
        if (m_moments.empty()) break;
        const Timestamp to = m_moments[static_cast<std::size_t>(op.number) % m_moments.size()] -
                             std::chrono::microseconds(op.flag ? 0 : 1);
        RestoreOptions ro;
        ro.metadata = md;
        const auto plan = m_store.restore(user, AsOf::at_time(to), ro);
        if (plan.appended) note(*plan.appended);
        break;
      }
      case OpKind::define:
        note(m_store.define(definition_for(op.key % 3, op), md));
        m_defined.insert(op.key % 3);
        break;
      case OpKind::deprecate:
        if (m_defined.count(op.key % 3) == 0) break;
        note(m_store.deprecate(kKeys[static_cast<std::size_t>(op.key % 3)], op.text, md));
        break;
      case OpKind::snapshot:
        (void)m_store.snapshot(user);
        break;
    }
  }

  void run_all(const std::vector<Op>& ops) {
    for (const Op& op : ops) run(op);
  }

  [[nodiscard]] const std::vector<Timestamp>& moments() const noexcept { return m_moments; }

 private:
  void note(const AppendResult& r) {
    if (!r.duplicate) m_moments.push_back(r.recorded_at);
  }
  Store& m_store;
  std::vector<Timestamp> m_moments;
  std::set<int> m_defined;
};

// The same preferences through the two stores' facades: get_all (values and defaults) per user.
void assert_same_views(Store& source, Store& restored) {
  for (const auto& user : kUsers) {
    const auto expected = everything(source.get_all(user));
    const auto actual = everything(restored.get_all(user));
    RC_ASSERT(expected == actual);
  }
}

// Every user's state in the restored store, through get_all and state_as_of(latest), is the
// source's state as of `as_of` (named `moment` in a failure).
void assert_restored_as_of(Store& source, Store& restored, const AsOf& as_of,
                           const std::string& moment) {
  for (const auto& user : kUsers) {
    const auto expected = render(source.state_as_of(user, as_of).state);
    const auto actual = user_values(restored.get_all(user));
    if (expected != actual) {
      RC_FAIL(user + " as of " + moment + ": source state_as_of " + show(expected) +
              "\nrestored get_all " + show(actual));
    }
    RC_ASSERT(render(restored.state_as_of(user, AsOf::latest()).state) == expected);
  }
}

// ------------------------------------------------------------------------------------------
// 1. Round trip

TEST(BackupRoundTrip, RestoredDatabaseEqualsTheSourceRowForRow) {
  TempDir dir;
  int run = 0;
  check_property(
      [&] {
        const auto ops = *gen_history();
        const auto chunk_records = *rc::gen::inRange<std::size_t>(1, 9);
        // Small restore batches split streams, definitions and inline projection work over
        // several statements; 2000 (the default) does it all at once.
        const auto batch_size = *rc::gen::element<std::size_t>(1, 2, 3, 5, 2000);
        ScratchDatabase source_db;
        ScratchDatabase target_db;
        Store source(open_options(source_db.url()));
        HistoryDriver driver(source);
        driver.run_all(ops);

        const fs::path file = dir / ("round-trip-" + std::to_string(run++) + ".backup");
        BackupOptions bo;
        bo.chunk_records = chunk_records;
        const auto made = source.backup(file, bo);
        const auto source_events = count_rows(source_db.url(), "events");
        RC_ASSERT(made.header.event_count == source_events);
        RC_ASSERT(made.header.until_position == max_position(source_db.url()));
        RC_ASSERT(made.header.snapshot_count == count_rows(source_db.url(), "snapshots"));
        RC_ASSERT(storage::verify_backup(file).ok);

        Store target(open_options(target_db.url()));
        BackupRestoreOptions ro;
        ro.batch_size = batch_size;
        std::vector<storage::BackupProgress> progress;
        ro.progress = [&](const storage::BackupProgress& p) { progress.push_back(p); };
        const auto restored = target.restore_backup(file, ro);
        RC_ASSERT(!progress.empty());
        RC_ASSERT(progress.back().events == source_events);
        RC_ASSERT(progress.back().snapshots == made.header.snapshot_count);
        for (std::size_t i = 1; i < progress.size(); ++i) {
          RC_ASSERT(progress[i - 1].events <= progress[i].events);
        }
        RC_ASSERT(restored.events == source_events);
        RC_ASSERT(restored.skipped_events == 0);
        RC_ASSERT(restored.until_position == made.header.until_position);

        const std::string differences = compare_databases(source_db.url(), target_db.url());
        if (!differences.empty()) RC_FAIL(differences);
        assert_same_views(source, target);
        // The restore recorded itself, so an incremental can follow.
        RC_ASSERT(query_value(target_db.url(),
                              "SELECT operation || ' ' || since_position || ' ' || until_position "
                              "FROM prefstore.backup_history") ==
                  "restored 0 " + std::to_string(made.header.until_position));

        // The asynchronous read models, built from the log on both sides.
        catch_up_projections(source);
        catch_up_projections(target);
        const std::string counts = rows_difference("preference_value_counts", source_db.url(),
                                                   target_db.url(), kValueCountsSql) +
                                   rows_difference("preference_value_holders", source_db.url(),
                                                   target_db.url(), kValueHoldersSql) +
                                   counts_against_current(target_db.url());
        if (!counts.empty()) RC_FAIL(counts);

        // New appends go after every restored position, and are projected (inline and async).
        const std::int64_t restored_end = max_position(target_db.url());
        const auto appended = target.set("ada", "calendar.zoom", 123.25);
        RC_ASSERT(appended.global_position > restored_end);
        const auto defined = target.define(definition_for(0, Op{}));
        RC_ASSERT(defined.global_position > appended.global_position);
        RC_ASSERT(target.get("ada", "calendar.zoom") == std::optional<Value>(123.25));
        catch_up_projections(target);
        RC_ASSERT(query_value(target_db.url(),
                              "SELECT value::text FROM prefstore.preference_value_holders WHERE "
                              "stream_id = 'ada' AND key = 'calendar.zoom'") == "123.25");
        RC_ASSERT(value_counts_checkpoint(target_db.url()) ==
                  std::to_string(defined.global_position));
      },
      10, 30);
}

// TESTING #7 and DESIGN pitfall 9: a restore into a database of a fresh cluster, whose
// transaction ids are far below the ones the source's log was written with. A commit-safe
// reader (the projection runner) must still see every restored event and every new one.
TEST(BackupRoundTrip, RestoreIntoAFreshClusterWithLowerTransactionIds) {
  TempDir dir;
  ScratchDatabase source_db;
  {
    // Push the test cluster's transaction ids well above those of a new cluster.
    pqxx::connection conn(source_db.url());
    pqxx::nontransaction tx(conn);
    const auto now = tx.exec("SELECT pg_current_xact_id()::text::bigint")[0][0].as<std::int64_t>();
    for (std::int64_t i = now; i < 4000; ++i) tx.exec("SELECT pg_current_xact_id()");
  }
  Store source(open_options(source_db.url()));
  HistoryDriver driver(source);
  for (int i = 0; i < 40; ++i) {
    Op op;
    op.kind = i % 10 == 3   ? OpKind::define
              : i % 10 == 7 ? OpKind::set_many
              : i % 10 == 9 ? OpKind::restore
                            : OpKind::set;
    op.user = i % 5;
    op.key = (i / 5) % 5;
    op.number = 5 + 11 * i;
    op.text = "zone " + std::to_string(i % 4) + " ü";
    op.items = {"email", "push"};
    driver.run(op);
  }
  (void)source.snapshot(kUsers[0]);
  const fs::path file = dir / "to-fresh-cluster.backup";
  (void)source.backup(file);

  storage::LocalServerOptions o = storage::local_server_options_from_environment();
  o.home = prefstore::testing::make_temp_dir("prefstore-fresh-cluster");
  o.durable = false;
  o.database = "restored";
  storage::LocalServer server(o);
  struct Cleanup {
    storage::LocalServer& server;
    fs::path home;
    ~Cleanup() {
      std::error_code ec;
      try {
        server.stop(storage::StopMode::immediate);
        fs::remove_all(server.cluster_dir(), ec);
      } catch (const std::exception& e) {
        std::cerr << "could not stop the second cluster: " << e.what() << std::endl;
      }
      fs::remove_all(home, ec);
    }
  } cleanup{server, o.home};
  server.start();
  const std::string target_url = server.url();
  Store target(open_options(target_url));
  const auto source_lowest = std::stoll(
      query_value(source_db.url(), "SELECT min(transaction_id)::text FROM prefstore.events"));
  const auto target_now = std::stoll(query_value(target_url, "SELECT pg_current_xact_id()::text"));
  std::cout << "source log's transaction ids from " << source_lowest << "; the fresh cluster is at "
            << target_now << "\n";
  ASSERT_GT(source_lowest, target_now + 1000);

  (void)target.restore_backup(file);
  EXPECT_EQ(compare_databases(source_db.url(), target_url), "");
  catch_up_projections(source);
  catch_up_projections(target);
  EXPECT_EQ(rows_difference("value counts", source_db.url(), target_url, kValueCountsSql), "");
  EXPECT_EQ(counts_against_current(target_url, "value counts against the inline state"), "");
  // New appends are read by the commit-safe reader too.
  const auto appended = target.set("fresh-user", "calendar.zoom", 7.5);
  catch_up_projections(target);
  EXPECT_EQ(value_counts_checkpoint(target_url), std::to_string(appended.global_position));
  EXPECT_EQ(query_value(target_url,
                        "SELECT value::text FROM prefstore.preference_value_holders WHERE "
                        "stream_id = 'fresh-user'"),
            "7.5");
}

// ------------------------------------------------------------------------------------------
// 2. Point in time

TEST(BackupPointInTime, RestoreUntilTimeOrPositionEqualsTheSourceStateAsOfThen) {
  TempDir dir;
  int run = 0;
  check_property(
      [&] {
        const auto ops = *gen_history();
        ScratchDatabase source_db;
        Store source(open_options(source_db.url()));
        HistoryDriver driver(source);
        driver.run_all(ops);
        if (driver.moments().empty()) RC_DISCARD("the history wrote nothing");

        const fs::path file = dir / ("pit-" + std::to_string(run++) + ".backup");
        BackupOptions bo;
        bo.chunk_records = 3;
        (void)source.backup(file, bo);
        const auto& moments = driver.moments();
        const auto [min_it, max_it] = std::minmax_element(moments.begin(), moments.end());

        // --- until_time: a moment of the history (or just before / after one), or outside it.
        const auto pick = *rc::gen::inRange<std::size_t>(0, moments.size() + 2);
        const auto delta = std::chrono::microseconds(*rc::gen::inRange(-1, 2));
        Timestamp t = pick < moments.size()    ? moments[pick] + delta
                      : pick == moments.size() ? *min_it - std::chrono::microseconds(1)
                                               : *max_it + std::chrono::seconds(1);
        const std::string t_micros = std::to_string(to_unix_micros(t));
        {
          ScratchDatabase target_db;
          Store target(open_options(target_db.url()));
          BackupRestoreOptions ro;
          ro.until_time = t;
          const auto summary = target.restore_backup(file, ro);
          const std::string where = micros_sql("recorded_at") + " <= " + t_micros;
          const std::string d = first_difference("events until " + format_timestamp(t),
                                                 query_rows(source_db.url(), events_sql(where)),
                                                 query_rows(target_db.url(), events_sql()));
          if (!d.empty()) RC_FAIL(d);
          RC_ASSERT(summary.skipped_events ==
                    count_rows(source_db.url(), "events") - count_rows(target_db.url(), "events"));
          assert_restored_as_of(source, target, AsOf::at_time(t), format_timestamp(t));
        }

        // --- until_position
        const std::int64_t end = max_position(source_db.url());
        const auto p = *rc::gen::inRange<std::int64_t>(0, end + 1);
        {
          ScratchDatabase target_db;
          Store target(open_options(target_db.url()));
          BackupRestoreOptions ro;
          ro.until_position = p;
          const auto summary = target.restore_backup(file, ro);
          const std::string d = first_difference(
              "events until position " + std::to_string(p),
              query_rows(source_db.url(), events_sql("global_position <= " + std::to_string(p))),
              query_rows(target_db.url(), events_sql()));
          if (!d.empty()) RC_FAIL(d);
          RC_ASSERT(summary.until_position == p);
          assert_restored_as_of(source, target, AsOf::at_position(p),
                                "position " + std::to_string(p));
          // New appends go after every restored position.
          const std::int64_t restored_end = max_position(target_db.url());
          RC_ASSERT(target.set("ada", "calendar.show_weekends", true).global_position >
                    restored_end);
        }
      },
      8, 30);
}

// ------------------------------------------------------------------------------------------
// 3. Incremental

TEST(BackupIncremental, FullPlusIncrementalEqualsTheSourceAndBrokenChainsAreRefused) {
  TempDir dir;
  int run = 0;
  check_property(
      [&] {
        const auto before = *gen_history();
        const auto after = *gen_history();
        ScratchDatabase source_db;
        Store source(open_options(source_db.url()));
        HistoryDriver driver(source);
        driver.run_all(before);
        const std::string n = std::to_string(run++);
        const fs::path full_file = dir / ("full-" + n + ".backup");
        const fs::path incr_file = dir / ("incr-" + n + ".backup");
        BackupOptions bo;
        bo.chunk_records = 4;
        const auto full = source.backup(full_file, bo);

        // Phase 2. Snapshots only of users written in it: a snapshot taken now of a stream not
        // written since the full backup ends before since_position, and belongs to no
        // incremental backup by the contract.
        std::map<std::string, std::int64_t> versions;
        for (const auto& u : kUsers) versions[u] = source.version(u);
        for (const Op& op : after) {
          if (op.kind != OpKind::snapshot) driver.run(op);
        }
        (void)source.set("ada", "calendar.zoom", 0.5);  // the incremental is never empty
        for (const auto& u : kUsers) {
          if (source.version(u) != versions[u]) (void)source.snapshot(u);
        }
        bo.since_position = full.header.until_position;
        const auto incr = source.backup(incr_file, bo);
        RC_ASSERT(incr.header.since_position == full.header.until_position);
        RC_ASSERT(incr.header.until_position == max_position(source_db.url()));
        RC_ASSERT(incr.header.event_count ==
                  std::stoll(query_value(source_db.url(),
                                         "SELECT count(*) FROM prefstore.events WHERE "
                                         "global_position > " +
                                             std::to_string(full.header.until_position))));

        // The incremental alone: refused, nothing written.
        {
          ScratchDatabase empty_db;
          Store empty(open_options(empty_db.url()));
          RC_ASSERT_THROWS_AS(empty.restore_backup(incr_file), UsageError);
          const std::string written = non_empty_tables(empty_db.url());
          if (!written.empty()) RC_FAIL("refused incremental wrote: " + written);
        }

        ScratchDatabase target_db;
        Store target(open_options(target_db.url()));
        (void)target.restore_backup(full_file);
        catch_up_projections(target);
        RC_ASSERT(count_rows(target_db.url(), "projection_checkpoints") > 0);
        const auto second = target.restore_backup(incr_file);
        RC_ASSERT(second.events == incr.header.event_count);
        // The asynchronous read models start again from the beginning of the log.
        RC_ASSERT(count_rows(target_db.url(), "projection_checkpoints") == 0);
        RC_ASSERT(count_rows(target_db.url(), "preference_value_counts") == 0);
        RC_ASSERT(count_rows(target_db.url(), "preference_value_holders") == 0);
        const std::string differences = compare_databases(source_db.url(), target_db.url());
        if (!differences.empty()) RC_FAIL(differences);
        assert_same_views(source, target);

        // The same incremental again: refused, nothing written.
        const Rows before_again = dump(target_db.url());
        RC_ASSERT_THROWS_AS(target.restore_backup(incr_file), UsageError);
        std::string written = first_difference("target", before_again, dump(target_db.url()));
        if (!written.empty()) RC_FAIL("the refused incremental wrote: " + written);
        // And the full one again.
        RC_ASSERT_THROWS_AS(target.restore_backup(full_file), UsageError);
        written = first_difference("target", before_again, dump(target_db.url()));
        if (!written.empty()) RC_FAIL("the refused full backup wrote: " + written);

        catch_up_projections(source);
        catch_up_projections(target);
        const std::string counts = rows_difference("preference_value_counts", source_db.url(),
                                                   target_db.url(), kValueCountsSql) +
                                   counts_against_current(target_db.url());
        if (!counts.empty()) RC_FAIL(counts);
      },
      5, 20);
}

// An incremental backup goes on top of the restore it continues, not on top of a database that
// was written since: its positions would repeat those of the new appends.
TEST(BackupIncremental, IncrementalOnADatabaseWrittenSinceItsChainIsRefused) {
  TempDir dir;
  ScratchDatabase source_db;
  Store source(open_options(source_db.url()));
  for (int i = 0; i < 5; ++i) (void)source.set("ada", "calendar.default_meeting_minutes", 10 + i);
  const auto full = source.backup(dir / "full.backup");
  for (int i = 0; i < 5; ++i) (void)source.set("bob", "calendar.default_meeting_minutes", 20 + i);
  BackupOptions bo;
  bo.since_position = full.header.until_position;
  (void)source.backup(dir / "incr.backup", bo);

  ScratchDatabase target_db;
  Store target(open_options(target_db.url()));
  (void)target.restore_backup(dir / "full.backup");
  // The restored database lives on: a new user writes, taking positions 6.. as the source did.
  for (int i = 0; i < 3; ++i) (void)target.set("cyd", "calendar.default_meeting_minutes", 30 + i);
  const Rows before = dump(target_db.url());
  bool refused = false;
  try {
    (void)target.restore_backup(dir / "incr.backup");
  } catch (const UsageError& e) {
    refused = true;
    std::cout << "refused (usage): " << e.what() << "\n";
  } catch (const ConflictError& e) {
    refused = true;
    std::cout << "refused (conflict): " << e.what() << "\n";
  }
  EXPECT_TRUE(refused) << "the incremental was restored on top of a database written since its "
                          "chain; positions now repeat:\n"
                       << query_value(target_db.url(),
                                      "SELECT string_agg(global_position || ' ' || stream_id, ', ' "
                                      "ORDER BY global_position) FROM prefstore.events WHERE "
                                      "global_position IN (SELECT global_position FROM "
                                      "prefstore.events GROUP BY 1 HAVING count(*) > 1)");
  EXPECT_EQ(first_difference("target", before, dump(target_db.url())), "");
}

// ------------------------------------------------------------------------------------------
// 4. Consistency under concurrent writers

// An inline projection that keeps each append's transaction open for a moment after its events
// took their positions, so commits come out of position order (DESIGN pitfall 1).
class SlowCommit final : public projections::Projection {
 public:
  [[nodiscard]] std::string name() const override { return "slow_commit"; }
  [[nodiscard]] std::vector<std::string> tables() const override { return {}; }
  [[nodiscard]] bool is_inline() const override { return true; }
  void apply(const std::vector<RecordedEvent>& batch, projections::ProjectionContext&) override {
    const auto micros = 200 + (batch.front().global_position * 7919) % 2500;
    std::this_thread::sleep_for(std::chrono::microseconds(micros));
  }
};

// "global_position event_id" of every event of a backup file, in file order.
Rows file_events(const fs::path& file) {
  storage::BackupReader reader(file);
  Rows out;
  (void)reader.read(
      [&](const storage::BackupEvent& e) {
        out.push_back(std::to_string(e.global_position) + " " + e.event_id);
      },
      {});
  return out;
}

Rows source_events(const std::string& url, std::int64_t after, std::int64_t until) {
  Rows out;
  for (const auto& row : query_rows(url,
                                    "SELECT global_position || ' ' || event_id FROM "
                                    "prefstore.events WHERE global_position > " +
                                        std::to_string(after) + " AND global_position <= " +
                                        std::to_string(until) + " ORDER BY global_position")) {
    out.push_back(row.substr(1, row.size() - 2));  // unquote
  }
  return out;
}

TEST(BackupConcurrency, BackupsDuringFourWritersMissNothingAndRepeatNothing) {
  TempDir dir;
  ScratchDatabase source_db;
  StoreOptions so = open_options(source_db.url());
  so.pool.max_size = 10;
  so.inline_projections = {std::make_shared<SlowCommit>()};
  Store source(so);

  std::atomic<bool> stop{false};
  std::atomic<long> acknowledged{0};
  std::mutex errors_mutex;
  std::vector<std::string> errors;
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(1000 + w));
      while (!stop.load()) {
        const std::string user = "user-" + std::to_string(rng() % 24);
        const auto minutes = static_cast<std::int64_t>(5 + rng() % 400);
        try {
          switch (rng() % 10) {
            case 0:
              (void)source.set_many(user, {{"calendar.default_meeting_minutes", minutes},
                                           {"calendar.timezone", std::string("Europe/Oslo")},
                                           {"calendar.show_weekends", minutes % 2 == 0}});
              break;
            case 1:
              (void)source.reset(user, "calendar.timezone");
              break;
            case 2:
              if (w == 0) {
                PreferenceDefinition d;
                d.key = "calendar.timezone";
                d.type = ValueType::string;
                d.default_value = std::string("UTC");
                d.description = "zone " + std::to_string(minutes);
                (void)source.define(d);
                break;
              }
              [[fallthrough]];
            default:
              (void)source.set(user, "calendar.default_meeting_minutes", minutes);
          }
          acknowledged.fetch_add(1);
        } catch (const std::exception& e) {
          const std::lock_guard lock(errors_mutex);
          errors.emplace_back(e.what());
        }
      }
    });
  }
  const auto wait_for = [&](long n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acknowledged.load() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  wait_for(150);
  BackupOptions bo;
  bo.chunk_records = 16;
  const auto full = source.backup(dir / "full.backup", bo);
  const long at_full = acknowledged.load();
  wait_for(at_full + 150);
  bo.since_position = full.header.until_position;
  const auto incr = source.backup(dir / "incr.backup", bo);
  const long at_incr = acknowledged.load();
  wait_for(at_incr + 50);
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " writes failed, first: " << errors.front();
  bo.since_position = incr.header.until_position;
  const auto last = source.backup(dir / "last.backup", bo);  // quiet: the rest of the log

  std::cout << acknowledged.load() << " writes acknowledged; full backup "
            << full.header.event_count << " events up to position " << full.header.until_position
            << ", incremental " << incr.header.event_count << " events up to "
            << incr.header.until_position << ", last " << last.header.event_count
            << " events up to " << last.header.until_position << "\n";
  EXPECT_GT(incr.header.event_count, 0);
  EXPECT_GT(last.header.event_count, 0);

  // Each file holds exactly the source's events of its range: none missing, none repeated.
  EXPECT_EQ(
      first_difference("full backup", source_events(source_db.url(), 0, full.header.until_position),
                       file_events(dir / "full.backup")),
      "");
  EXPECT_EQ(first_difference("incremental backup",
                             source_events(source_db.url(), full.header.until_position,
                                           incr.header.until_position),
                             file_events(dir / "incr.backup")),
            "");
  EXPECT_EQ(first_difference("last backup",
                             source_events(source_db.url(), incr.header.until_position,
                                           last.header.until_position),
                             file_events(dir / "last.backup")),
            "");
  EXPECT_EQ(last.header.until_position, max_position(source_db.url()));

  ScratchDatabase target_db;
  Store target(open_options(target_db.url()));
  (void)target.restore_backup(dir / "full.backup");
  (void)target.restore_backup(dir / "incr.backup");
  EXPECT_EQ(first_difference(
                "restored full + incremental",
                query_rows(source_db.url(), events_sql("global_position <= " +
                                                       std::to_string(incr.header.until_position))),
                query_rows(target_db.url(), events_sql())),
            "");
  (void)target.restore_backup(dir / "last.backup");
  EXPECT_EQ(compare_databases(source_db.url(), target_db.url()), "");
  EXPECT_EQ(count_rows(target_db.url(), "events"), count_rows(source_db.url(), "events"));
  EXPECT_EQ(query_value(target_db.url(),
                        "SELECT count(*) FROM (SELECT event_id FROM prefstore.events GROUP BY 1 "
                        "HAVING count(*) > 1) d"),
            "0");
}

// A restore into a database that is being written to (allow_non_empty; the writers' positions
// lie after the file's) holds the writers off while it runs, and a projection runner working
// through it ends with the same counts as the inline state (DESIGN pitfall 9).
TEST(BackupConcurrency, RestoreIntoALiveDatabaseLosesNoWriteAndProjectionsAgree) {
  TempDir dir;
  ScratchDatabase source_db;
  {
    Store source(open_options(source_db.url()));
    for (int i = 0; i < 150; ++i) {
      const std::int64_t minutes = 5 + i;
      (void)source.set_many("user-" + std::to_string(i % 30),
                            {{"calendar.default_meeting_minutes", minutes},
                             {"calendar.timezone", "zone " + std::to_string(i % 7)},
                             {"calendar.show_weekends", i % 2 == 0}});
    }
    BackupOptions bo;
    bo.chunk_records = 50;
    (void)source.backup(dir / "source.backup", bo);
  }
  ScratchDatabase target_db;
  admin_in(target_db.url(), "SELECT setval('prefstore.events_global_position_seq', 1000000)");
  StoreOptions to = open_options(target_db.url());
  to.pool.max_size = 10;
  Store target(to);
  projections::RunnerOptions ro;
  ro.poll_interval = std::chrono::milliseconds(20);
  ro.batch_size = 40;
  projections::ProjectionRunner runner(target.pool(), projections::default_projections(), ro);
  std::jthread runner_thread([&](std::stop_token stop) { runner.run(stop); });

  std::atomic<bool> stop{false};
  std::atomic<long> acknowledged{0};
  std::atomic<long> failed{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (std::int64_t i = 0; !stop.load(); ++i) {
        try {
          (void)target.set("live-" + std::to_string(w) + "-" + std::to_string(i % 5),
                           "calendar.default_meeting_minutes", 5 + i % 400);
          acknowledged.fetch_add(1);
        } catch (const std::exception& e) {
          failed.fetch_add(1);
          std::cerr << "write failed: " << e.what() << std::endl;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  BackupRestoreOptions options;
  options.allow_non_empty = true;
  options.batch_size = 50;
  const auto summary = target.restore_backup(dir / "source.backup", options);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  stop = true;
  for (auto& t : writers) t.join();
  runner_thread.request_stop();
  runner_thread.join();
  std::cout << acknowledged.load() << " live writes, " << summary.events << " events restored\n";

  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(summary.events, 450);
  EXPECT_EQ(
      first_difference("restored events", query_rows(source_db.url(), events_sql()),
                       query_rows(target_db.url(), events_sql("stream_id NOT LIKE 'live-%'"))),
      "");
  EXPECT_EQ(std::to_string(acknowledged.load()),
            query_value(target_db.url(),
                        "SELECT count(*) FROM prefstore.events WHERE stream_id LIKE 'live-%'"));
  EXPECT_EQ(query_value(target_db.url(),
                        "SELECT count(*) FROM (SELECT global_position FROM prefstore.events GROUP "
                        "BY 1 HAVING count(*) > 1) d"),
            "0");
  EXPECT_EQ(query_value(target_db.url(),
                        "SELECT count(*) FROM prefstore.streams s WHERE version <> (SELECT "
                        "count(*) FROM prefstore.events e WHERE e.stream_id = s.stream_id)"),
            "0");
  // The inline state of every user is the fold of their log.
  for (const auto& user : query_rows(target_db.url(),
                                     "SELECT stream_id FROM prefstore.streams WHERE stream_id NOT "
                                     "LIKE '$%' ORDER BY 1")) {
    const std::string id = user.substr(1, user.size() - 2);
    EXPECT_EQ(show(user_values(target.get_all(id))),
              show(render(target.state_as_of(id, AsOf::latest()).state)))
        << id;
  }
  catch_up_projections(target);
  EXPECT_EQ(counts_against_current(target_db.url(), "value counts"), "");
}

// ------------------------------------------------------------------------------------------
// CLI

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ------------------------------------------------------------------------------------------
// 5. Corrupt files

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::uint64_t u64_at(const std::string& bytes, std::size_t offset) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(bytes.at(offset + static_cast<std::size_t>(i)));
  }
  return v;
}

struct Layout {
  std::size_t header_end = 0;
  std::vector<std::pair<std::size_t, std::size_t>> chunks;  // [begin, end)
  std::size_t trailer = 0;
};

// The parts of a backup file, from docs/backup-format.md.
Layout layout_of(const std::string& bytes) {
  Layout l;
  if (bytes.compare(0, 16, "PREFSTORE-BACKUP") != 0) throw std::runtime_error("no magic");
  const auto h = static_cast<std::size_t>(u64_at(bytes, 20) & 0xffffffffu);
  l.header_end = 24 + h + 32;
  std::size_t at = l.header_end;
  while (bytes.compare(at, 4, "CHNK") == 0) {
    const auto payload = static_cast<std::size_t>(u64_at(bytes, at + 20));
    l.chunks.emplace_back(at, at + 36 + payload + 32);
    at += 36 + payload + 32;
  }
  if (bytes.compare(at, 4, "TRLR") != 0 || at + 92 != bytes.size()) {
    throw std::runtime_error("no trailer where expected");
  }
  l.trailer = at;
  return l;
}

TEST(BackupCorruption, EveryTruncationAndFlippedByteIsRefusedWithNothingWritten) {
  TempDir dir;
  ScratchDatabase source_db;
  Store source(open_options(source_db.url()));
  HistoryDriver driver(source);
  for (int i = 0; i < 24; ++i) {
    Op op;
    op.kind = i % 8 == 7 ? OpKind::define : OpKind::set;
    op.user = i % 3;
    op.key = i % 5;
    op.number = 5 + i;
    op.text = "zone-" + std::to_string(i) + " 🙂";
    op.items = {"email", "push"};
    driver.run(op);
  }
  for (int u = 0; u < 3; ++u) (void)source.snapshot(kUsers[static_cast<std::size_t>(u)]);
  const fs::path good = dir / "good.backup";
  BackupOptions bo;
  bo.chunk_records = 4;
  const auto made = source.backup(good, bo);
  const std::string bytes = read_file(good);
  const Layout layout = layout_of(bytes);
  ASSERT_GE(layout.chunks.size(), 6u);
  ASSERT_EQ(made.trailer.chunk_count, layout.chunks.size());

  ScratchDatabase target_db;
  Store target(open_options(target_db.url()));
  pqxx::connection target_conn(target_db.url());
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", target_db.url()}};
  const fs::path bad = dir / "bad.backup";
  int cases = 0;
  // Restoring `damaged` must throw CorruptDataError, write nothing, and verify must say not ok.
  const auto expect_refused = [&](const std::string& damaged, const std::string& what) {
    ++cases;
    write_file(bad, damaged);
    try {
      (void)target.restore_backup(bad);
      ADD_FAILURE() << what << ": restored without an error";
    } catch (const CorruptDataError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": expected CorruptDataError, got " << e.what();
    }
    pqxx::nontransaction check(target_conn);
    EXPECT_EQ(check.exec(kNonEmptyTablesSql)[0][0].as<std::string>(), "") << what;
    const auto verified = storage::verify_backup(bad);
    EXPECT_FALSE(verified.ok) << what;
    EXPECT_FALSE(verified.problem.empty()) << what;
    return verified;
  };

  // Truncations: every boundary, one byte either side, and random cuts.
  std::set<std::size_t> cuts = {0,
                                1,
                                15,
                                16,
                                23,
                                24,
                                layout.header_end - 1,
                                layout.header_end,
                                layout.header_end + 1,
                                bytes.size() - 1};
  for (const auto& [begin, end] : layout.chunks) {
    for (const std::size_t at : {begin, end}) {
      cuts.insert(at - 1);
      cuts.insert(at);
      cuts.insert(at + 1);
    }
  }
  cuts.insert(layout.trailer + 60);
  std::mt19937 rng(20240601);
  for (int i = 0; i < 20; ++i) cuts.insert(rng() % bytes.size());
  for (const std::size_t cut : cuts) {
    if (cut >= bytes.size()) continue;
    expect_refused(bytes.substr(0, cut), "truncated to " + std::to_string(cut) + " of " +
                                             std::to_string(bytes.size()) + " bytes");
  }
  // Bytes appended.
  expect_refused(bytes + "x", "one byte appended");

  // One flipped byte in every chunk: in its frame, its payload and its checksum.
  for (std::size_t i = 0; i < layout.chunks.size(); ++i) {
    const auto [begin, end] = layout.chunks[i];
    for (const std::size_t at :
         {begin + 5, begin + 17, begin + 36 + (end - begin - 68) / 2, end - 1}) {
      std::string damaged = bytes;
      damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
      const std::string what = "chunk " + std::to_string(i) + ", byte " + std::to_string(at);
      const auto verified = expect_refused(damaged, what);
      EXPECT_EQ(verified.bad_chunk, std::optional<std::uint64_t>(i))
          << what << ": " << verified.problem;
      EXPECT_TRUE(contains(verified.problem, "chunk " + std::to_string(i)))
          << what << ": " << verified.problem;
      EXPECT_EQ(verified.chunks_checked, i) << what;
    }
  }
  // The header and the trailer.
  for (const std::size_t at :
       {std::size_t{3}, std::size_t{17}, std::size_t{30}, layout.header_end - 1, layout.trailer + 2,
        layout.trailer + 6, layout.trailer + 14, layout.trailer + 40, bytes.size() - 1}) {
    std::string damaged = bytes;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
    expect_refused(damaged, "header or trailer byte " + std::to_string(at));
  }
  // Two chunks swapped.
  {
    const auto [b1, e1] = layout.chunks[1];
    const auto [b2, e2] = layout.chunks[2];
    const std::string swapped = bytes.substr(0, b1) + bytes.substr(b2, e2 - b2) +
                                bytes.substr(b1, e1 - b1) + bytes.substr(e2);
    expect_refused(swapped, "chunks 1 and 2 swapped");
  }
  // A chunk of another backup of the same data (same bytes but for the checksums, which start
  // from that backup's header digest), and a chunk dropped.
  {
    const fs::path other = dir / "other.backup";
    (void)source.backup(other, bo);
    const std::string other_bytes = read_file(other);
    const Layout other_layout = layout_of(other_bytes);
    ASSERT_EQ(other_layout.chunks, layout.chunks);
    const auto [b, e] = layout.chunks[2];
    ASSERT_EQ(other_bytes.substr(b, e - b - 32), bytes.substr(b, e - b - 32));
    const auto verified =
        expect_refused(bytes.substr(0, b) + other_bytes.substr(b, e - b) + bytes.substr(e),
                       "chunk 2 taken from another backup");
    EXPECT_EQ(verified.bad_chunk, std::optional<std::uint64_t>(2)) << verified.problem;
    expect_refused(bytes.substr(0, b) + bytes.substr(e), "chunk 2 dropped");
  }
  {
    const auto missing = storage::verify_backup(dir / "no-such.backup");
    EXPECT_FALSE(missing.ok);
    EXPECT_THROW((void)target.restore_backup(dir / "no-such.backup"), UnavailableError);
  }
  std::cout << cases << " damaged files refused\n";

  // The CLI: verify names the chunk and exits 8; restore exits 8 and writes nothing.
  for (std::size_t i = 0; i < layout.chunks.size(); ++i) {
    const auto [begin, end] = layout.chunks[i];
    std::string damaged = bytes;
    const std::size_t at = begin + 36 + (end - begin - 68) / 2;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    write_file(bad, damaged);
    const auto v = run_cli("backup verify " + bad.string(), {});
    EXPECT_EQ(v.exit_code, 8) << v.output;
    EXPECT_TRUE(contains(v.output, "chunk " + std::to_string(i))) << v.output;
    EXPECT_TRUE(contains(v.output, "first bad chunk: " + std::to_string(i))) << v.output;
    const auto r = run_cli("backup restore --quiet " + bad.string(), env);
    EXPECT_EQ(r.exit_code, 8) << r.output;
    EXPECT_EQ(non_empty_tables(target_db.url()), "") << "chunk " << i;
  }
  write_file(bad, bytes.substr(0, layout.chunks[3].first + 10));
  auto v = run_cli("backup verify " + bad.string(), {});
  EXPECT_EQ(v.exit_code, 8) << v.output;
  EXPECT_TRUE(contains(v.output, "chunk 3")) << v.output;
  auto r = run_cli("backup restore --quiet " + bad.string(), env);
  EXPECT_EQ(r.exit_code, 8) << r.output;
  EXPECT_EQ(non_empty_tables(target_db.url()), "");

  // The undamaged file verifies and restores (the checks above can tell the difference).
  v = run_cli("backup verify " + good.string(), {});
  EXPECT_EQ(v.exit_code, 0) << v.output;
  r = run_cli("backup restore --quiet " + good.string(), env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(compare_databases(source_db.url(), target_db.url()), "");
}

// ------------------------------------------------------------------------------------------
// The file itself: no password in it, private, replaced only when complete

TEST(BackupFileSafety, NoPasswordInTheFileOrHistoryPrivateModeAndAFailedBackupKeepsTheOldFile) {
  TempDir dir;
  ScratchDatabase db;
  // The test cluster trusts local connections, so any password is accepted and must not show.
  const std::string secret = "Sup3rS3cretPassw0rd";
  const std::string url = db.url() + " password=" + secret;
  Store store(open_options(url));
  (void)store.set("ada", "calendar.timezone", std::string("Europe/Paris"));
  const fs::path file = dir / "secret.backup";
  const auto made = store.backup(file);
  EXPECT_FALSE(contains(read_file(file), secret));
  EXPECT_FALSE(contains(made.header.source, secret)) << made.header.source;
  EXPECT_FALSE(contains(query_value(db.url(),
                                    "SELECT string_agg(source || file, ',') FROM "
                                    "prefstore.backup_history"),
                        secret));
  const auto perms = fs::status(file).permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none)
      << "backup files hold user data";
  const auto cli = run_cli("backup create --quiet " + (dir / "cli.backup").string(),
                           {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_FALSE(contains(cli.output, secret)) << cli.output;
  EXPECT_FALSE(contains(read_file(dir / "cli.backup"), secret));

  // A backup that fails (since past the log's end) leaves the old file as it was, no partial.
  const std::string before = read_file(file);
  BackupOptions bo;
  bo.since_position = made.header.until_position + 1;
  EXPECT_THROW((void)store.backup(file, bo), UsageError);
  EXPECT_EQ(read_file(file), before);
  EXPECT_FALSE(fs::exists(dir / "secret.backup.partial"));
  bo.since_position = -1;
  EXPECT_THROW((void)store.backup(file, bo), UsageError);
  EXPECT_EQ(read_file(file), before);
  EXPECT_TRUE(storage::verify_backup(file).ok);
}

// ------------------------------------------------------------------------------------------
// Well-formed files (every checksum right) whose records do not make a valid log: restore
// refuses them, writing nothing (the position sequence included).

struct CraftedBackup {
  storage::BackupHeader header;
  std::vector<storage::BackupEvent> events;
};

CraftedBackup read_backup(const fs::path& file) {
  storage::BackupReader reader(file);
  CraftedBackup b{reader.header(), {}};
  (void)reader.read([&](const storage::BackupEvent& e) { b.events.push_back(e); }, {});
  return b;
}

void write_backup(const fs::path& file, CraftedBackup b) {
  b.header.backup_id = new_event_id();
  b.header.event_count = static_cast<std::int64_t>(b.events.size());
  b.header.snapshot_count = 0;
  for (const auto& e : b.events) {
    b.header.until_position = std::max(b.header.until_position, e.global_position);
  }
  storage::BackupWriterOptions o;
  o.chunk_records = 2;
  storage::BackupWriter writer(file, b.header, o);
  for (const auto& e : b.events) writer.add(e);
  (void)writer.finish();
}

class BackupCrafted : public ::testing::Test {
 protected:
  void SetUp() override {
    Store source(open_options(m_source_db.url()));
    for (int i = 0; i < 3; ++i) {
      (void)source.set("ada", "calendar.default_meeting_minutes", std::int64_t{30 + i});
      (void)source.set("bob", "calendar.timezone", "Europe/Berlin " + std::to_string(i));
    }
    (void)source.backup(m_dir / "source.backup");
    m_backup = read_backup(m_dir / "source.backup");
    ASSERT_EQ(m_backup.events.size(), 6u);
    m_target = std::make_unique<Store>(open_options(m_target_db.url()));
  }
  // Restores `b` into the empty target: it must throw a prefstore error and write nothing.
  void expect_refused(const CraftedBackup& b, const std::string& what) {
    const fs::path file = m_dir / "crafted.backup";
    write_backup(file, b);
    ASSERT_TRUE(storage::verify_backup(file).ok) << what << ": the file itself is well formed";
    const std::string sequence = position_sequence(m_target_db.url());
    try {
      (void)m_target->restore_backup(file);
      ADD_FAILURE() << what << ": restored; the target holds " << event_list(m_target_db.url());
    } catch (const Error& e) {
      std::cout << what << ": "
                << (dynamic_cast<const CorruptDataError*>(&e) != nullptr  ? "CorruptDataError"
                    : dynamic_cast<const ConflictError*>(&e) != nullptr   ? "ConflictError"
                    : dynamic_cast<const DatabaseError*>(&e) != nullptr   ? "DatabaseError"
                    : dynamic_cast<const ValidationError*>(&e) != nullptr ? "ValidationError"
                                                                          : "other Error")
                << ": " << e.what() << "\n";
    }
    EXPECT_EQ(non_empty_tables(m_target_db.url()), "") << what;
    EXPECT_EQ(position_sequence(m_target_db.url()), sequence)
        << what
        << ": the refused restore moved the position sequence (setval is not undone by "
           "the rollback)";
  }

  TempDir m_dir;
  ScratchDatabase m_source_db;
  ScratchDatabase m_target_db;
  std::unique_ptr<Store> m_target;
  CraftedBackup m_backup;
};

TEST_F(BackupCrafted, TheUntouchedRecordsRestore) {
  // The control: rewritten by the test's own writer, the records restore as they are.
  write_backup(m_dir / "same.backup", m_backup);
  (void)m_target->restore_backup(m_dir / "same.backup");
  EXPECT_EQ(compare_databases(m_source_db.url(), m_target_db.url()), "");
}

TEST_F(BackupCrafted, RepeatedPositionIsRefused) {
  CraftedBackup b = m_backup;
  b.events[1].global_position = b.events[0].global_position;  // ada v1 and bob v1 share it
  expect_refused(b, "two events at one position");
}

TEST_F(BackupCrafted, StreamVersionGapIsRefused) {
  CraftedBackup b = m_backup;
  b.events.erase(b.events.begin() + 2);  // ada v2
  expect_refused(b, "ada without its version 2");
}

TEST_F(BackupCrafted, PayloadThatIsNotAJsonObjectIsRefused) {
  CraftedBackup b = m_backup;
  b.events[3].payload = "[1, 2]";
  expect_refused(b, "a payload that is an array");
  b = m_backup;
  b.events[3].payload = "not json at all";
  expect_refused(b, "a payload that is not JSON");
  b = m_backup;
  b.events[3].metadata = "";
  expect_refused(b, "empty metadata");
}

// The payload is JSON text inside the restore's batch; text that closes its object and opens
// another must not add an event that the file does not hold.
TEST_F(BackupCrafted, PayloadCannotAddAnEventOfItsOwn) {
  CraftedBackup b = m_backup;
  storage::BackupEvent& e = b.events[5];
  // The text closes the event's object (with its own metadata and time) and opens another,
  // which the event's real metadata and time then close.
  e.payload = e.payload + ", \"metadata\": " + e.metadata +
              ", \"at\": " + std::to_string(e.recorded_at) +
              "}, {\"p\": 999, \"s\": \"mallory\", \"v\": 1, " + "\"id\": \"" + new_event_id() +
              "\", \"t\": \"PreferenceSet\", \"sv\": 1, \"payload\": {\"key\": "
              "\"calendar.zoom\", \"type\": \"double\", \"value\": 6.66}";
  expect_refused(b, "a payload that carries another event");
}

// ------------------------------------------------------------------------------------------
// 6. Refused targets

class BackupRefusals : public ::testing::Test {
 protected:
  void SetUp() override {
    m_source = std::make_unique<Store>(open_options(m_source_db.url()));
    for (int i = 0; i < 4; ++i) {
      (void)m_source->set("ada", "calendar.default_meeting_minutes", std::int64_t{30 + i});
      (void)m_source->set("bob", "calendar.timezone", "Europe/Berlin " + std::to_string(i));
    }
    m_made = m_source->backup(m_dir / "source.backup");
    m_target = std::make_unique<Store>(open_options(m_target_db.url()));
  }
  // Restoring the source's backup into the target throws E and writes nothing.
  template <class E>
  void expect_refused(const BackupRestoreOptions& options, const std::string& what) {
    const Rows before = dump(m_target_db.url());
    const std::string sequence = position_sequence(m_target_db.url());
    try {
      (void)m_target->restore_backup(m_dir / "source.backup", options);
      ADD_FAILURE() << what << ": restored without an error; the target now holds:\n"
                    << event_list(m_target_db.url());
    } catch (const E& e) {
      std::cout << what << ": " << e.what() << "\n";
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": expected another error, got " << e.what();
    }
    EXPECT_EQ(first_difference("target", before, dump(m_target_db.url())), "") << what;
    EXPECT_EQ(position_sequence(m_target_db.url()), sequence)
        << what << ": the position sequence moved";
  }
  // A restore into a database that is not empty (the CLI's --force).
  static BackupRestoreOptions forced() {
    BackupRestoreOptions o;
    o.allow_non_empty = true;
    return o;
  }

  TempDir m_dir;
  ScratchDatabase m_source_db;
  ScratchDatabase m_target_db;
  std::unique_ptr<Store> m_source;
  std::unique_ptr<Store> m_target;
  storage::BackupSummary m_made;
};

TEST_F(BackupRefusals, FullBackupIntoANonEmptyDatabaseIsAUsageError) {
  (void)m_target->set("zed", "calendar.timezone", std::string("Asia/Tokyo"));
  expect_refused<UsageError>({}, "full backup into a database with one event");
}

// The target's own events take positions 1..3 on another stream: the file's positions 1..3
// clash although no stream version or event id does.
TEST_F(BackupRefusals, ForcedRestoreWithClashingPositionsIsAConflictWithNothingWritten) {
  for (int i = 0; i < 3; ++i) {
    (void)m_target->set("zed", "calendar.timezone", "Asia/Tokyo " + std::to_string(i));
  }
  expect_refused<ConflictError>(forced(), "forced restore, positions 1..3 taken by another stream");
}

TEST_F(BackupRefusals, ForcedRestoreWithClashingStreamVersionsIsAConflictWithNothingWritten) {
  // A position past the file's end, so only the stream version (ada 1) clashes.
  admin_in(m_target_db.url(), "SELECT setval('prefstore.events_global_position_seq', 1000)");
  (void)m_target->set("ada", "calendar.timezone", std::string("Asia/Tokyo"));
  expect_refused<ConflictError>(forced(), "forced restore, ada v1 taken");
}

TEST_F(BackupRefusals, ForcedRestoreOfTheSameBackupTwiceIsAConflictWithNothingWritten) {
  (void)m_target->restore_backup(m_dir / "source.backup");
  EXPECT_EQ(compare_databases(m_source_db.url(), m_target_db.url()), "");
  expect_refused<ConflictError>(forced(), "forced restore of the same events again");
}

TEST_F(BackupRefusals, ForcedRestoreIntoADisjointLogAddsTheEvents) {
  // The positive case of allow_non_empty: the target's own events lie after the file's.
  admin_in(m_target_db.url(), "SELECT setval('prefstore.events_global_position_seq', 1000)");
  (void)m_target->set("zed", "calendar.timezone", std::string("Asia/Tokyo"));
  catch_up_projections(*m_target);
  ASSERT_EQ(count_rows(m_target_db.url(), "preference_value_counts"), 1);
  const auto summary = m_target->restore_backup(m_dir / "source.backup", forced());
  // The asynchronous read models were emptied with their checkpoints, and catch up again.
  EXPECT_EQ(count_rows(m_target_db.url(), "projection_checkpoints"), 0);
  EXPECT_EQ(count_rows(m_target_db.url(), "preference_value_counts"), 0);
  catch_up_projections(*m_target);
  EXPECT_EQ(counts_against_current(m_target_db.url(), "value counts"), "");
  EXPECT_EQ(summary.events, m_made.header.event_count);
  EXPECT_EQ(first_difference("events", query_rows(m_source_db.url(), events_sql()),
                             query_rows(m_target_db.url(), events_sql("stream_id <> 'zed'"))),
            "");
  EXPECT_EQ(m_target->get("ada", "calendar.default_meeting_minutes"),
            std::optional<Value>(std::int64_t{33}));
  EXPECT_EQ(m_target->get("zed", "calendar.timezone"), std::optional<Value>("Asia/Tokyo"));
  EXPECT_GT(m_target->set("ada", "calendar.zoom", 2.0).global_position, 1001);
}

// ------------------------------------------------------------------------------------------
// 7. The recovery drill, end to end with the CLI

TEST(BackupDrill, DropTheDatabaseRestoreItAndEverythingReadsTheSame) {
  TempDir dir;
  const std::string url = TestCluster::instance().fresh_database();
  const std::string name = database_name(url);
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", url},
                                                  {"PREFSTORE_ACTOR", "grace@ops"}};
  const auto ok = [&](const std::string& args) {
    const auto r = run_cli(args, env);
    EXPECT_EQ(r.exit_code, 0) << "prefstore " << args << "\n" << r.output;
    return r.output;
  };
  ok("migrate");
  ok("define calendar.timezone --type string --default UTC --description 'IANA time zone'");
  ok("define calendar.default_meeting_minutes --type int --default 30 --min 5 --max 480");
  ok("define notifications.channels --type string_list --default email --allowed email push sms "
     "--max-items 3");
  ok("set ada calendar.timezone Europe/Paris --reason 'moved to Paris'");
  ok("set ada calendar.default_meeting_minutes 45 --actor ada@example.com");
  ok("set 'björn' notifications.channels push,sms --source calendar-web");
  ok("set 'björn' calendar.timezone 'America/Sao_Paulo'");
  ok("reset ada calendar.default_meeting_minutes");
  ok("set ada calendar.timezone Asia/Tokyo --correlation-id req-42");
  ok("deprecate calendar.default_meeting_minutes --note 'use calendar.meeting_length'");
  ok("projections catch-up");

  const std::vector<std::string> reads = {"get ada --json",
                                          "get 'björn' --json",
                                          "history ada --json",
                                          "history 'björn' --json",
                                          "history '$def:calendar.timezone' --json",
                                          "definitions",
                                          "get ada calendar.default_meeting_minutes"};
  std::map<std::string, std::string> before;
  for (const auto& args : reads) before[args] = ok(args);
  const auto events_before = query_rows(url, events_sql());
  ASSERT_EQ(events_before.size(), 10u);

  const std::string file = (dir / "drill.backup").string();
  const std::string created = ok("backup create --quiet --chunk-records 2 " + file);
  EXPECT_TRUE(contains(created, "10 events")) << created;
  EXPECT_TRUE(contains(ok("backup verify " + file), "OK")) << file;

  admin("DROP DATABASE " + name + " WITH (FORCE)");
  admin("CREATE DATABASE " + name);
  EXPECT_EQ(query_value(url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'prefstore'"),
            "0");  // nothing there any more
  ok("migrate");
  const std::string restored = ok("backup restore --quiet " + file);
  EXPECT_TRUE(contains(restored, "restored 10 events")) << restored;

  for (const auto& args : reads) EXPECT_EQ(ok(args), before[args]) << "prefstore " << args;
  EXPECT_EQ(first_difference("events", events_before, query_rows(url, events_sql())), "");

  // The asynchronous projections are caught up: lag 0 at the log's last position.
  const std::string status = ok("projections status");
  const std::string last = std::to_string(max_position(url));
  for (const std::string projection : {"preference_value_counts", "snapshots"}) {
    const std::regex line("(^|\\n)" + projection + "\\s+(\\S+)\\s+(\\d+)\\s+(\\d+)\\s");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(status, m, line)) << projection << " missing:\n" << status;
    EXPECT_EQ(m[3].str(), last) << status;
    EXPECT_EQ(m[4].str(), "0") << status;
  }
  EXPECT_EQ(query_value(url,
                        "SELECT users FROM prefstore.preference_value_counts WHERE key = "
                        "'calendar.timezone' AND value = '\"Asia/Tokyo\"'"),
            "1");

  // The CLI refuses to restore into the database that now holds the log (exit 2), and with
  // --force the clashing events are a conflict (exit 4); either way nothing changes.
  const auto again = run_cli("backup restore --quiet " + file, env);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  const auto forced = run_cli("backup restore --quiet --force " + file, env);
  EXPECT_EQ(forced.exit_code, 4) << forced.output;
  EXPECT_EQ(first_difference("events", events_before, query_rows(url, events_sql())), "");

  // Point in time with the CLI, into other databases: --position 8 (before the second Tokyo
  // write) and --until the moment of event 5, against `get --as-of` on the restored original.
  const std::string t5 = query_value(
      url,
      "SELECT to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
      "FROM prefstore.events WHERE global_position = 5");
  for (const auto& [restore_args, as_of] : std::vector<std::pair<std::string, std::string>>{
           {"--position 8", "position:8"}, {"--until " + t5, t5}}) {
    const std::string other_url = TestCluster::instance().fresh_database();
    const std::map<std::string, std::string> other_env = {{"PREFSTORE_DATABASE_URL", other_url}};
    const auto r = run_cli("backup restore --quiet " + restore_args + " " + file, other_env);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    for (const std::string user : {"ada", "'björn'"}) {
      // `get --as-of` tells on stderr which version it read; only the JSON is compared.
      const auto then =
          run_cli("get " + user + " --json --as-of " + as_of + " 2>/dev/null | cat", env);
      const auto restored_now = run_cli("get " + user + " --json", other_env);
      EXPECT_EQ(restored_now.exit_code, 0) << restored_now.output;
      EXPECT_EQ(restored_now.output, then.output) << user << " restored with " << restore_args;
      if (std::string(user) == "ada") {
        EXPECT_TRUE(contains(then.output, "Europe/Paris")) << then.output;
      }
    }
  }

  // Life goes on: a new write lands after the restored log and reads back.
  ok("set ada calendar.timezone Europe/Lisbon");
  EXPECT_EQ(max_position(url), std::stoll(last) + 1);
  EXPECT_TRUE(contains(ok("get ada calendar.timezone"), "Europe/Lisbon"));
}

}  // namespace
}  // namespace prefstore

namespace prefstore {
namespace {

// Issue 5: every truncation point of a sample backup is refused by restore (not only by
// verify), and nothing is written by any of the attempts; the untouched file then restores.
TEST(BackupCorruption, EveryTruncationPointOfASmallBackupIsRefusedByRestore) {
  TempDir dir;
  ScratchDatabase source_db;
  Store source(open_options(source_db.url()));
  (void)source.set("ada", "calendar.timezone", std::string("Europe/Berlin"));
  (void)source.set("bob", "calendar.default_meeting_minutes", std::int64_t{45});
  ASSERT_TRUE(source.snapshot("ada"));
  const fs::path good = dir / "small.backup";
  BackupOptions options;
  options.chunk_records = 1;
  const auto made = source.backup(good, options);
  ASSERT_EQ(made.trailer.chunk_count, 3u);
  const std::string bytes = read_file(good);

  ScratchDatabase target_db;
  Store target(open_options(target_db.url()));
  const fs::path bad = dir / "cut.backup";
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    write_file(bad, bytes.substr(0, cut));
    EXPECT_THROW((void)target.restore_backup(bad), CorruptDataError) << "cut at byte " << cut;
  }
  pqxx::connection conn(target_db.url());
  pqxx::nontransaction check(conn);
  EXPECT_EQ(check.exec(kNonEmptyTablesSql)[0][0].as<std::string>(), "");
  (void)target.restore_backup(good);
  EXPECT_EQ(target.get("ada", "calendar.timezone"), Value(std::string("Europe/Berlin")));
  EXPECT_EQ(target.get("bob", "calendar.default_meeting_minutes"), Value(std::int64_t{45}));
}

}  // namespace
}  // namespace prefstore
