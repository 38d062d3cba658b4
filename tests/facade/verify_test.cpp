// Tamper evidence: Store::verify (storage/verify.hpp) and `prefstore verify`.
//
// - VerifyClean: a calendar assistant's history (five keys and a deprecated one, four users,
//   set / reset / set_many, a point-in-time restore, snapshots, preference_value_counts caught
//   up) verifies clean, through the API and the CLI (also as prefstore_reader); every stream's
//   head computed in C++ equals the SQL aggregate prefstore.hash_chain over its rows; a
//   projection behind the log is counted as behind, not wrong; an erasure through
//   prefstore.erase_stream() is listed and stays clean before and after preference_value_counts
//   applies it, but holders that outlive it once the checkpoint has passed it are named.
// - VerifyTamper: a superuser disables the append-only trigger and edits one event's payload,
//   its metadata, its recorded_at or its chain_hash, deletes an event in the middle or at the
//   end, or swaps two events' payloads: verify names exactly the first bad event (stream,
//   version, position, id), as the only problem, through the API and the CLI (exit 8).
// - VerifyTamperChain: a chain rewritten consistently passes the log check, but its head differs
//   from the one recorded before and the read models name the rewritten event.
// - VerifyReadModels: a changed preferences_current value, stream row version, definition,
//   value holder or checkpoint is named; a snapshot with a flipped byte is a warning only; an
//   intact snapshot whose state differs from the fold is a problem.
// - VerifyBaselines: retention baselines written as a superuser the way migration 0006's
//   compact_stream() writes them verify clean; a baseline without its StreamCompacted record or
//   with another chain head is named. Events older than a StreamErased record are named.
// - VerifyProperty: random histories verify clean, and changing one character inside a string
//   of any one event's payload is detected at exactly that event.
// - VerifyScale: a 40,000-event stream among 500 small ones, verified in bounded pages, and an
//   edited event deep inside it named (the time is printed; PREFSTORE_VERIFY_SCALE_EVENTS sets
//   the long stream's length).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/storage/unit_of_work.hpp"
#include "prefstore/store.hpp"
#include "prefstore/verify.hpp"
#include "property.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

using prefstore::testing::admin;
using prefstore::testing::check_property;
using prefstore::testing::database_name;
using prefstore::testing::run_cli;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::TestCluster;
using Kind = VerifyProblemKind;

// ------------------------------------------------------------------------------------------
// Databases and SQL as the superuser

std::unique_ptr<Store> open_store(const std::string& url, bool strict = true) {
  StoreOptions o;
  o.database_url = url;
  o.strict = strict;
  o.pool.max_size = 4;
  return std::make_unique<Store>(o);
}

// Runs statements in one transaction as the cluster's superuser.
void superuser(const std::string& url, const std::vector<std::string>& statements) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  for (const auto& sql : statements) tx.exec(sql);
  tx.commit();
}

// Runs statements with the append-only trigger switched off, as a tamperer with superuser
// rights would, and switches it on again (one transaction).
void tamper(const std::string& url, const std::vector<std::string>& statements) {
  std::vector<std::string> all{"ALTER TABLE prefstore.events DISABLE TRIGGER events_append_only"};
  all.insert(all.end(), statements.begin(), statements.end());
  all.emplace_back("ALTER TABLE prefstore.events ENABLE TRIGGER events_append_only");
  superuser(url, all);
}

std::string query_value(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::read_transaction tx(conn);
  const auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? std::string() : r[0][0].c_str();
}

std::int64_t query_int(const std::string& url, const std::string& sql) {
  return std::stoll(query_value(url, sql));
}

// An event as verify names it.
struct EventRef {
  std::string stream;
  std::int64_t version = 0;
  std::int64_t position = 0;
  std::string event_id;
};

EventRef event_at(const std::string& url, const std::string& stream, std::int64_t version) {
  pqxx::connection conn(url);
  pqxx::read_transaction tx(conn);
  const auto r = tx.exec_params(
      "SELECT global_position, event_id::text FROM prefstore.events WHERE stream_id = $1 AND "
      "stream_version = $2",
      stream, version);
  if (r.empty()) throw std::runtime_error("no event " + stream + " v" + std::to_string(version));
  return {stream, version, r[0][0].as<std::int64_t>(), r[0][1].as<std::string>()};
}

void catch_up_projections(Store& store) {
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
}

VerifyReport verify(const std::string& url, VerifyOptions options = {}) {
  auto store = open_store(url);
  return store->verify(options);
}

// Every finding, one per line, for failure messages.
std::string render(const VerifyReport& r) {
  std::string out = std::to_string(r.problem_count) + " problems, " +
                    std::to_string(r.streams_checked) + " streams, " +
                    std::to_string(r.events_checked) + " events\n";
  const auto line = [&](const char* label, const VerifyProblem& p) {
    out += std::string(label) + " " + storage::to_string(p.kind) + " " + p.stream_id + " v" +
           std::to_string(p.stream_version) + " @" + std::to_string(p.global_position) + " " +
           p.event_id + ": " + p.message + "\n";
  };
  for (const auto& p : r.problems) line("PROBLEM", p);
  for (const auto& p : r.warnings) line("WARNING", p);
  for (const auto& n : r.notes) out += "note: " + n + "\n";
  return out;
}

// The CLI line that names an event.
std::string cli_line(Kind kind, const EventRef& e) {
  return std::string("PROBLEM ") + storage::to_string(kind) + " stream=" + e.stream +
         " version=" + std::to_string(e.version) + " position=" + std::to_string(e.position) +
         " event=" + e.event_id + ":";
}

testing::CommandResult cli(const std::string& url, const std::string& args) {
  return run_cli(args, {{"PREFSTORE_DATABASE_URL", url}});
}

// ------------------------------------------------------------------------------------------
// The calendar assistant's history, written once into a template database

const Metadata kPlatform{"platform-team", "prefstore-cli", "calendar launch", "", ""};

Metadata by(const std::string& user, const char* source, const char* reason = "") {
  return Metadata{"user:" + user, source, reason, "", ""};
}

PreferenceDefinition definition(const std::string& key, ValueType type, Value default_value,
                                const std::string& description) {
  PreferenceDefinition d;
  d.key = key;
  d.type = type;
  d.default_value = std::move(default_value);
  d.description = description;
  return d;
}

void define_calendar_keys(Store& store) {
  auto start = definition("calendar.working_hours.start", ValueType::string, std::string("09:00"),
                          "When the working day starts (HH:MM, local time)");
  start.constraints.pattern = "[0-2][0-9]:[0-5][0-9]";
  store.define(start, kPlatform);
  store.define(definition("calendar.time_zone", ValueType::string, std::string("UTC"),
                          "IANA time zone of the calendar"),
               kPlatform);
  auto minutes = definition("calendar.default_meeting_minutes", ValueType::integer,
                            std::int64_t{30}, "Length of a new meeting");
  minutes.constraints.min = 5;
  minutes.constraints.max = 480;
  store.define(minutes, kPlatform);
  auto reminders = definition("reminders.default_minutes", ValueType::integer, std::int64_t{10},
                              "Minutes before an event that a reminder goes out");
  reminders.constraints.min = 0;
  reminders.constraints.max = 1440;
  store.define(reminders, kPlatform);
  auto channels = definition("notifications.channels", ValueType::string_list, StringList{"email"},
                             "Where notifications go");
  channels.constraints.allowed_values =
      std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
  channels.constraints.max_items = 3;
  store.define(channels, kPlatform);
  store.define(definition("calendar.timezone", ValueType::string, std::string("UTC"),
                          "Old name of calendar.time_zone"),
               kPlatform);
  store.deprecate("calendar.timezone", "use calendar.time_zone", kPlatform);
}

// ada's versions: 1 start 08:30, 2 minutes 45, 3 time zone Europe/London, 4 channels, 5 reminders
// 15, 6 reset minutes, 7 time zone Europe/Berlin and 8 reminders 5 (one set_many), 9 restore to
// after 5, 10 minutes 50 (after the snapshots).
void write_calendar_history(Store& store) {
  define_calendar_keys(store);
  store.set("ada", "calendar.working_hours.start", std::string("08:30"), by("ada", "calendar-web"));
  store.set("ada", "calendar.default_meeting_minutes", std::int64_t{45},
            by("ada", "calendar-web", "settings page"));
  store.set("ada", "calendar.time_zone", std::string("Europe/London"), by("ada", "mobile"));
  store.set("ada", "notifications.channels", StringList{"email", "push"}, by("ada", "mobile"));
  const auto fifth =
      store.set("ada", "reminders.default_minutes", std::int64_t{15}, by("ada", "calendar-web"));
  store.reset("ada", "calendar.default_meeting_minutes", by("ada", "calendar-web"));
  store.set_many("ada",
                 {{"calendar.time_zone", std::string("Europe/Berlin")},
                  {"reminders.default_minutes", std::int64_t{5}}},
                 by("ada", "travel-sync", "moved to Berlin"));
  RestoreOptions restore;
  restore.metadata = Metadata{"support:grace", "support-console", "ticket 4711", "", ""};
  (void)store.restore("ada", AsOf::at_position(fifth.global_position), restore);

  store.set("grace", "calendar.time_zone", std::string("America/New_York"), by("grace", "mobile"));
  store.set("grace", "calendar.default_meeting_minutes", std::int64_t{25},
            by("grace", "calendar-web"));
  store.set("grace", "notifications.channels", StringList{"sms"}, by("grace", "mobile"));

  store.set("linus", "calendar.working_hours.start", std::string("10:00"),
            by("linus", "calendar-web"));
  store.set("linus", "calendar.time_zone", std::string("Europe/Helsinki"), by("linus", "mobile"));
  store.reset("linus", "calendar.time_zone", by("linus", "mobile"));
  store.set("linus", "calendar.time_zone", std::string("Europe/Helsinki"), by("linus", "mobile"));

  store.set("zoë", "calendar.time_zone", std::string("Pacific/Auckland"),
            by("zoë", "mobile", "déménagement"));
  store.set("zoë", "calendar.default_meeting_minutes", std::int64_t{60}, by("zoë", "mobile"));

  (void)store.snapshot_all();
  store.set("ada", "calendar.default_meeting_minutes", std::int64_t{50}, by("ada", "calendar-web"));
  store.set("zoë", "reminders.default_minutes", std::int64_t{20}, by("zoë", "mobile"));
  catch_up_projections(store);
}

const std::string& history_template() {
  static const std::string name = [] {
    const std::string url = TestCluster::instance().fresh_database();
    {
      auto store = open_store(url);
      write_calendar_history(*store);
    }
    return database_name(url);
  }();
  return name;
}

// A copy of the calendar history, dropped at the end of its scope.
class HistoryDatabase {
 public:
  HistoryDatabase() {
    static std::atomic<int> counter{0};
    const std::string& source = history_template();
    m_name = "verify_copy_" + std::to_string(counter.fetch_add(1));
    admin("DROP DATABASE IF EXISTS " + m_name + " WITH (FORCE)");
    admin("CREATE DATABASE " + m_name + " TEMPLATE " + source + " STRATEGY FILE_COPY");
    m_url = TestCluster::instance().url(m_name);
  }
  HistoryDatabase(const HistoryDatabase&) = delete;
  HistoryDatabase& operator=(const HistoryDatabase&) = delete;
  ~HistoryDatabase() {
    try {
      admin("DROP DATABASE IF EXISTS " + m_name + " WITH (FORCE)");
    } catch (const std::exception& e) {
      std::cerr << "could not drop " << m_name << ": " << e.what() << std::endl;
    }
  }
  [[nodiscard]] const std::string& url() const noexcept { return m_url; }

 private:
  std::string m_name;
  std::string m_url;
};

// Expects exactly one problem, of `kind`, naming event e.
void expect_only_problem(const VerifyReport& report, Kind kind, const EventRef& e) {
  ASSERT_EQ(report.problem_count, 1) << render(report);
  ASSERT_EQ(report.problems.size(), 1u) << render(report);
  const VerifyProblem& p = report.problems[0];
  EXPECT_EQ(p.kind, kind) << render(report);
  EXPECT_EQ(p.stream_id, e.stream) << render(report);
  EXPECT_EQ(p.stream_version, e.version) << render(report);
  EXPECT_EQ(p.global_position, e.position) << render(report);
  EXPECT_EQ(p.event_id, e.event_id) << render(report);
  EXPECT_NE(p.message.find("stream " + e.stream + " version " + std::to_string(e.version) +
                           " (position " + std::to_string(e.position)),
            std::string::npos)
      << p.message;
}

// ------------------------------------------------------------------------------------------
// VerifyClean

TEST(VerifyClean, CalendarHistoryVerifiesCleanAndEveryHeadEqualsTheSqlChain) {
  HistoryDatabase db;
  std::vector<StreamHead> heads;
  VerifyOptions options;
  options.batch_size = 3;  // pages cut through streams
  options.streams_per_page = 2;
  std::vector<VerifyProgress> progress;
  options.on_stream = [&](const StreamHead& h) { heads.push_back(h); };
  options.progress = [&](const VerifyProgress& p) { progress.push_back(p); };
  const VerifyReport report = verify(db.url(), options);
  EXPECT_TRUE(report.clean()) << render(report);
  EXPECT_TRUE(report.warnings.empty()) << render(report);
  EXPECT_EQ(report.streams_checked, query_int(db.url(), "SELECT count(*) FROM prefstore.streams"));
  EXPECT_EQ(report.events_checked, query_int(db.url(), "SELECT count(*) FROM prefstore.events"));
  EXPECT_EQ(report.log_end_position,
            query_int(db.url(), "SELECT max(global_position) FROM prefstore.events"));
  EXPECT_GE(report.snapshots_checked, 4);
  EXPECT_GT(report.projection_rows_checked, 20);
  EXPECT_EQ(report.value_counts_streams_behind, 0);
  EXPECT_TRUE(report.notes.empty()) << render(report);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().streams, report.streams_checked);
  EXPECT_EQ(progress.back().events, report.events_checked);

  // Every head: the C++ chain equals the SQL aggregate over the stream's rows and the stored
  // chain_hash of its last event.
  ASSERT_EQ(static_cast<std::int64_t>(heads.size()), report.streams_checked);
  pqxx::connection conn(db.url());
  pqxx::read_transaction tx(conn);
  for (const StreamHead& h : heads) {
    EXPECT_TRUE(h.intact) << h.stream_id;
    const auto sql = tx.exec_params(
        "SELECT encode(prefstore.hash_chain(prefstore.event_canonical_bytes(global_position, "
        "stream_id, stream_version, event_id, event_type, schema_version, recorded_at, payload, "
        "metadata) ORDER BY stream_version), 'hex'), max(stream_version), "
        "encode((array_agg(chain_hash ORDER BY stream_version DESC))[1], 'hex') "
        "FROM prefstore.events WHERE stream_id = $1",
        h.stream_id);
    EXPECT_EQ(h.chain_head, sql[0][0].as<std::string>()) << h.stream_id;
    EXPECT_EQ(h.chain_head, sql[0][2].as<std::string>()) << h.stream_id;
    EXPECT_EQ(h.version, sql[0][1].as<std::int64_t>()) << h.stream_id;
  }
  std::set<std::string> names;
  for (const auto& h : heads) names.insert(h.stream_id);
  for (const char* s : {"ada", "grace", "linus", "zoë", "$def:calendar.time_zone",
                        "$def:notifications.channels", "$def:calendar.timezone"}) {
    EXPECT_TRUE(names.contains(s)) << s;
  }
}

TEST(VerifyClean, OneStreamAndLogOnlyRunsAreCleanToo) {
  HistoryDatabase db;
  VerifyOptions one;
  one.stream_id = "ada";
  const VerifyReport ada = verify(db.url(), one);
  EXPECT_TRUE(ada.clean()) << render(ada);
  EXPECT_EQ(ada.streams_checked, 1);
  EXPECT_EQ(ada.events_checked, 10);
  VerifyOptions definition_stream;
  definition_stream.stream_id = "$def:calendar.timezone";
  const VerifyReport def = verify(db.url(), definition_stream);
  EXPECT_TRUE(def.clean()) << render(def);
  EXPECT_EQ(def.events_checked, 2);
  VerifyOptions log_only;
  log_only.check_projections = false;
  const VerifyReport log = verify(db.url(), log_only);
  EXPECT_TRUE(log.clean()) << render(log);
  EXPECT_EQ(log.projection_rows_checked, 0);
  VerifyOptions nobody;
  nobody.stream_id = "nobody";
  const VerifyReport none = verify(db.url(), nobody);
  EXPECT_TRUE(none.clean()) << render(none);
  EXPECT_EQ(none.streams_checked, 0);
  EXPECT_EQ(none.notes.size(), 1u) << render(none);
}

TEST(VerifyClean, TheCliSaysCleanAndExitsZeroAlsoAsTheReaderRole) {
  HistoryDatabase db;
  const auto all = cli(db.url(), "verify --all");
  EXPECT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find(": clean"), std::string::npos) << all.output;
  // The progress line is for a terminal; a log or a pipe gets only the results.
  EXPECT_EQ(all.output.find("\rverify: "), std::string::npos) << all.output;
  const auto one = cli(db.url(), "verify ada --quiet");
  EXPECT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("verified 1 streams, 10 events"), std::string::npos) << one.output;
  const auto json = cli(db.url(), "verify --all --json --quiet");
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"clean\":true"), std::string::npos) << json.output;
  const std::string ada_head = query_value(
      db.url(),
      "SELECT encode(chain_hash, 'hex') FROM prefstore.events WHERE stream_id = 'ada' AND "
      "stream_version = 10");
  EXPECT_NE(json.output.find("{\"stream_id\":\"ada\",\"version\":10,\"last_position\":" +
                             std::to_string(event_at(db.url(), "ada", 10).position) +
                             ",\"chain_head\":\"" + ada_head + "\",\"intact\":true}"),
            std::string::npos)
      << json.output;
  const auto neither = cli(db.url(), "verify");
  EXPECT_EQ(neither.exit_code, 2) << neither.output;

  // A login role with prefstore_reader's SELECT only: verify needs nothing more.
  admin(
      "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'verify_auditor') "
      "THEN CREATE ROLE verify_auditor LOGIN; END IF; END $$");
  admin("GRANT prefstore_reader TO verify_auditor");
  const auto reader = cli(db.url() + " user=verify_auditor", "verify --all --quiet");
  EXPECT_EQ(reader.exit_code, 0) << reader.output;
  EXPECT_NE(reader.output.find(": clean"), std::string::npos) << reader.output;
}

TEST(VerifyClean, AProjectionBehindTheLogIsBehindNotWrong) {
  HistoryDatabase db;
  {
    auto store = open_store(db.url());
    store->set("grace", "calendar.time_zone", std::string("Europe/Rome"), by("grace", "mobile"));
    store->set("newcomer", "calendar.time_zone", std::string("Asia/Tokyo"),
               by("newcomer", "mobile"));
  }
  const VerifyReport report = verify(db.url());
  EXPECT_TRUE(report.clean()) << render(report);
  EXPECT_EQ(report.value_counts_streams_behind, 2) << render(report);
}

TEST(VerifyClean, AnErasureIsListedAndVerifiesClean) {
  HistoryDatabase db;
  superuser(db.url(), {"SELECT * FROM prefstore.erase_stream('grace', 'GDPR request 17', 'dpo', "
                       "'6f1c2d3e-0000-4000-8000-000000000001')"});
  // preference_value_counts has not reached the erasure yet: grace's holders wait for it.
  const VerifyReport report = verify(db.url());
  EXPECT_TRUE(report.clean()) << render(report);
  EXPECT_EQ(report.erasure_records, 1);
  ASSERT_EQ(report.notes.size(), 1u) << render(report);
  EXPECT_NE(report.notes[0].find("1 erased streams still have rows"), std::string::npos);
  VerifyOptions one;
  one.stream_id = "grace";
  const VerifyReport grace = verify(db.url(), one);
  EXPECT_TRUE(grace.clean()) << render(grace);
  EXPECT_EQ(grace.erasure_records, 1);
  ASSERT_EQ(grace.notes.size(), 1u) << render(grace);
  EXPECT_NE(grace.notes[0].find("erased at position"), std::string::npos) << grace.notes[0];
  // Caught up, the projection forgets her.
  catch_up_projections(*open_store(db.url()));
  const VerifyReport after = verify(db.url());
  EXPECT_TRUE(after.clean()) << render(after);
  EXPECT_TRUE(after.notes.empty()) << render(after);
}

TEST(VerifyClean, HoldersThatOutliveAnErasureTheProjectionPassedAreNamed) {
  HistoryDatabase db;
  // The erasure, and a checkpoint moved past its record without the projection's work (as if
  // the projection had skipped it).
  superuser(db.url(),
            {"SELECT * FROM prefstore.erase_stream('grace', 'GDPR request 17', 'dpo', "
             "'6f1c2d3e-0000-4000-8000-000000000001')",
             "UPDATE prefstore.projection_checkpoints c SET last_transaction_id = "
             "e.transaction_id, last_position = e.global_position FROM prefstore.events e WHERE "
             "e.stream_id = '$audit' AND c.projection_name = 'preference_value_counts'"});
  const VerifyReport report = verify(db.url());
  ASSERT_EQ(report.problem_count, 1) << render(report);
  const VerifyProblem& p = report.problems[0];
  EXPECT_EQ(p.kind, Kind::projection_mismatch);
  EXPECT_EQ(p.stream_id, "grace");
  EXPECT_NE(p.message.find("outlived the erasure"), std::string::npos) << p.message;
}

// ------------------------------------------------------------------------------------------
// VerifyTamper

struct TamperCase {
  const char* name;
  std::vector<std::string> statements;  // as a superuser, with the append-only trigger off
  Kind kind;
  std::int64_t named_version;  // the event of ada that verify must name
};

void PrintTo(const TamperCase& c, std::ostream* out) {
  *out << c.name;
}

class VerifyTamper : public ::testing::TestWithParam<TamperCase> {};

const char* const kAda = "UPDATE prefstore.events SET ";
std::string ada_version(int v) {
  return " WHERE stream_id = 'ada' AND stream_version = " + std::to_string(v);
}

TEST_P(VerifyTamper, NamesExactlyTheFirstBadEvent) {
  const TamperCase& c = GetParam();
  HistoryDatabase db;  // verifies clean (VerifyClean)
  // Named before the tampering (a deleted event cannot be looked up afterwards).
  const EventRef named = event_at(db.url(), "ada", c.named_version);
  tamper(db.url(), c.statements);

  const VerifyReport report = verify(db.url());
  expect_only_problem(report, c.kind, named);
  VerifyOptions one;
  one.stream_id = "ada";
  expect_only_problem(verify(db.url(), one), c.kind, named);
  VerifyOptions log_only;
  log_only.check_projections = false;
  expect_only_problem(verify(db.url(), log_only), c.kind, named);

  const auto all = cli(db.url(), "verify --all --quiet");
  EXPECT_EQ(all.exit_code, 8) << all.output;
  EXPECT_NE(all.output.find(cli_line(c.kind, named)), std::string::npos)
      << "expected " << cli_line(c.kind, named) << " in\n"
      << all.output;
  EXPECT_NE(all.output.find(": 1 problem\n"), std::string::npos) << all.output;
  const auto json = cli(db.url(), "verify ada --json");
  EXPECT_EQ(json.exit_code, 8) << json.output;
  EXPECT_NE(json.output.find("\"event_id\":\"" + named.event_id + "\""), std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find("\"intact\":false"), std::string::npos) << json.output;
}

INSTANTIATE_TEST_SUITE_P(
    Tampering, VerifyTamper,
    ::testing::Values(
        TamperCase{"EditedPayload",
                   {kAda +
                    std::string("payload = jsonb_set(payload, '{value}', "
                                "'\"Europe/Paris\"')") +
                    ada_version(3)},
                   Kind::chain_mismatch,
                   3},
        TamperCase{"EditedMetadata",
                   {kAda +
                    std::string("metadata = jsonb_set(metadata, '{actor}', "
                                "'\"user:mallory\"')") +
                    ada_version(3)},
                   Kind::chain_mismatch,
                   3},
        TamperCase{
            "EditedRecordedAt",
            {kAda + std::string("recorded_at = recorded_at - interval '1 hour'") + ada_version(3)},
            Kind::chain_mismatch,
            3},
        TamperCase{"EditedChainHash",
                   {kAda + std::string("chain_hash = sha256('forged'::bytea)") + ada_version(3)},
                   Kind::chain_mismatch,
                   3},
        TamperCase{"EditedFirstEvent",
                   {kAda + std::string("payload = jsonb_set(payload, '{value}', '\"07:30\"')") +
                    ada_version(1)},
                   Kind::chain_mismatch,
                   1},
        TamperCase{
            "EditedLastEvent",
            {kAda + std::string("payload = jsonb_set(payload, '{value}', '55')") + ada_version(10)},
            Kind::chain_mismatch,
            10},
        TamperCase{"DeletedMiddleEvent",
                   {"DELETE FROM prefstore.events" + ada_version(3)},
                   Kind::version_gap,
                   4},
        TamperCase{"DeletedFirstEvent",
                   {"DELETE FROM prefstore.events" + ada_version(1)},
                   Kind::version_gap,
                   2},
        TamperCase{"DeletedLastEvent",
                   {"DELETE FROM prefstore.events" + ada_version(10)},
                   Kind::stream_version_mismatch,
                   9},
        TamperCase{"SwappedPayloads",
                   {"UPDATE prefstore.events e SET payload = o.payload FROM prefstore.events o "
                    "WHERE e.stream_id = 'ada' AND o.stream_id = 'ada' AND "
                    "((e.stream_version = 2 AND o.stream_version = 4) OR "
                    "(e.stream_version = 4 AND o.stream_version = 2))"},
                   Kind::chain_mismatch,
                   2},
        TamperCase{"UnreadablePayloadWithARecomputedLink",
                   // A payload that no longer decodes, its link recomputed with the database's
                   // own function (and every later link): the chain holds, decoding fails.
                   {kAda + std::string("payload = '{\"key\": 5}'") + ada_version(10),
                    kAda +
                        std::string("chain_hash = prefstore.chain_step((SELECT chain_hash "
                                    "FROM prefstore.events WHERE stream_id = 'ada' AND "
                                    "stream_version = 9), prefstore.event_canonical_bytes("
                                    "global_position, stream_id, stream_version, event_id, "
                                    "event_type, schema_version, recorded_at, payload, "
                                    "metadata))") +
                        ada_version(10)},
                   Kind::unreadable_event,
                   10}),
    [](const ::testing::TestParamInfo<TamperCase>& param) {
      return std::string(param.param.name);
    });

// A superuser who rewrites a chain consistently (every link recomputed after the change) passes
// the chain check; the read models still disagree, and the head differs from one recorded
// before.
TEST(VerifyTamperChain, AConsistentRewriteIsCaughtByTheReadModelsAndARecordedHead) {
  HistoryDatabase db;
  std::string head_before;
  VerifyOptions options;
  options.stream_id = "linus";
  options.on_stream = [&](const StreamHead& h) { head_before = h.chain_head; };
  ASSERT_TRUE(verify(db.url(), options).clean());
  std::vector<std::string> rewrite{
      "UPDATE prefstore.events SET payload = jsonb_set(payload, '{value}', '\"Europe/Oslo\"') "
      "WHERE stream_id = 'linus' AND stream_version = 4"};
  for (int v = 4; v <= 4; ++v) {
    rewrite.push_back(
        "UPDATE prefstore.events SET chain_hash = prefstore.chain_step((SELECT chain_hash FROM "
        "prefstore.events WHERE stream_id = 'linus' AND stream_version = " +
        std::to_string(v - 1) +
        "), prefstore.event_canonical_bytes(global_position, stream_id, stream_version, "
        "event_id, event_type, schema_version, recorded_at, payload, metadata)) WHERE "
        "stream_id = 'linus' AND stream_version = " +
        std::to_string(v));
  }
  tamper(db.url(), rewrite);
  std::string head_after;
  options.on_stream = [&](const StreamHead& h) { head_after = h.chain_head; };
  options.check_projections = false;
  EXPECT_TRUE(verify(db.url(), options).clean()) << "the log alone is consistent again";
  EXPECT_NE(head_after, head_before) << "but its head is not the one recorded";
  options.check_projections = true;
  // preferences_current, the snapshot at version 4 and the value holder all still hold the
  // value the event had: each names the rewritten event.
  const VerifyReport report = verify(db.url(), options);
  ASSERT_EQ(report.problem_count, 3) << render(report);
  std::multiset<Kind> kinds;
  for (const auto& p : report.problems) {
    kinds.insert(p.kind);
    EXPECT_EQ(p.stream_version, 4) << render(report);
    EXPECT_NE(p.message.find("Europe/Oslo"), std::string::npos) << render(report);
  }
  EXPECT_EQ(kinds, (std::multiset<Kind>{Kind::projection_mismatch, Kind::projection_mismatch,
                                        Kind::snapshot_mismatch}));
}

// ------------------------------------------------------------------------------------------
// VerifyReadModels

TEST(VerifyReadModels, AChangedCurrentValueIsAProjectionMismatchNamingItsEvent) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.preferences_current SET value = '\"Mars/Olympus\"' "
                       "WHERE stream_id = 'grace' AND key = 'calendar.time_zone'"});
  const EventRef set = event_at(db.url(), "grace", 1);
  const VerifyReport report = verify(db.url());
  expect_only_problem(report, Kind::projection_mismatch, set);
  EXPECT_NE(report.problems[0].message.find("Mars/Olympus"), std::string::npos) << render(report);
  EXPECT_NE(report.problems[0].message.find("America/New_York"), std::string::npos)
      << render(report);
  const auto out = cli(db.url(), "verify grace");
  EXPECT_EQ(out.exit_code, 8) << out.output;
  EXPECT_NE(out.output.find(cli_line(Kind::projection_mismatch, set)), std::string::npos)
      << out.output;
  // The log alone is intact.
  VerifyOptions log_only;
  log_only.check_projections = false;
  EXPECT_TRUE(verify(db.url(), log_only).clean());
}

TEST(VerifyReadModels, AMissingAndAnExtraCurrentRowAreNamed) {
  HistoryDatabase db;
  superuser(db.url(),
            {"DELETE FROM prefstore.preferences_current WHERE stream_id = 'zoë' AND key = "
             "'calendar.default_meeting_minutes'",
             "INSERT INTO prefstore.preferences_current (stream_id, key, value_type, value, "
             "version, updated_at, updated_by, last_position) VALUES ('linus', "
             "'reminders.default_minutes', 'int', '3', 2, now(), 'user:linus', 1)"});
  const VerifyReport report = verify(db.url());
  ASSERT_EQ(report.problem_count, 2) << render(report);
  EXPECT_EQ(report.problems[0].stream_id, "linus") << render(report);
  EXPECT_NE(report.problems[0].message.find("no value for the key"), std::string::npos);
  EXPECT_EQ(report.problems[1].stream_id, "zoë") << render(report);
  EXPECT_EQ(report.problems[1].stream_version, 2);
  EXPECT_NE(report.problems[1].message.find("has no row"), std::string::npos);
}

TEST(VerifyReadModels, AChangedStreamRowVersionIsNamed) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.streams SET version = 7 WHERE stream_id = 'linus'"});
  const EventRef last = event_at(db.url(), "linus", 4);
  const VerifyReport report = verify(db.url());
  expect_only_problem(report, Kind::stream_version_mismatch, last);
  EXPECT_NE(report.problems[0].message.find("at version 7"), std::string::npos) << render(report);
  const auto out = cli(db.url(), "verify --all --quiet");
  EXPECT_EQ(out.exit_code, 8) << out.output;
  EXPECT_NE(out.output.find(cli_line(Kind::stream_version_mismatch, last)), std::string::npos)
      << out.output;
}

TEST(VerifyReadModels, AChangedDefinitionIsNamed) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.preference_definitions SET max_value = 1000 WHERE key = "
                       "'calendar.default_meeting_minutes'"});
  const VerifyReport report = verify(db.url());
  ASSERT_EQ(report.problem_count, 1) << render(report);
  const VerifyProblem& p = report.problems[0];
  EXPECT_EQ(p.kind, Kind::projection_mismatch);
  EXPECT_EQ(p.stream_id, "$def:calendar.default_meeting_minutes");
  EXPECT_EQ(p.stream_version, 1);
  EXPECT_NE(p.message.find("max_value"), std::string::npos) << p.message;
}

TEST(VerifyReadModels, AChangedValueHolderAndItsCountsAreNamed) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.preference_value_holders SET value = '\"Asia/Tokyo\"' "
                       "WHERE stream_id = 'zoë' AND key = 'calendar.time_zone'"});
  // The holder row of zoë, then the two values whose counts no longer add up.
  const VerifyReport report = verify(db.url());
  ASSERT_EQ(report.problem_count, 3) << render(report);
  EXPECT_EQ(report.problems[0].stream_id, "zoë") << render(report);
  EXPECT_EQ(report.problems[0].stream_version, 1) << render(report);
  EXPECT_NE(report.problems[0].message.find("preference_value_holders"), std::string::npos);
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(report.problems[i].stream_id, "") << render(report);
    EXPECT_NE(report.problems[i].message.find("preference_value_counts says"), std::string::npos)
        << render(report);
  }
}

TEST(VerifyReadModels, ACheckpointPastTheLogIsNamed) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.projection_checkpoints SET last_position = "
                       "last_position + 1000 WHERE projection_name = 'preference_value_counts'"});
  const VerifyReport report = verify(db.url());
  ASSERT_GE(report.problem_count, 1) << render(report);
  EXPECT_EQ(report.problems.back().kind, Kind::checkpoint_ahead) << render(report);
  EXPECT_NE(report.problems.back().message.find("preference_value_counts"), std::string::npos);
}

TEST(VerifyReadModels, ASnapshotWithAFlippedByteIsAWarningOnly) {
  HistoryDatabase db;
  superuser(db.url(), {"UPDATE prefstore.snapshots SET state = set_byte(state, 12, "
                       "get_byte(state, 12) # 1) WHERE stream_id = 'ada'"});
  const VerifyReport report = verify(db.url());
  EXPECT_TRUE(report.clean()) << render(report);
  ASSERT_EQ(report.warnings.size(), 1u) << render(report);
  EXPECT_EQ(report.warnings[0].kind, Kind::damaged_snapshot);
  EXPECT_EQ(report.warnings[0].stream_id, "ada");
  EXPECT_EQ(report.warnings[0].stream_version, 9);
  EXPECT_NE(report.warnings[0].message.find("checksum mismatch"), std::string::npos);
  const auto out = cli(db.url(), "verify ada");
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("WARNING damaged_snapshot stream=ada version=9"), std::string::npos)
      << out.output;
}

TEST(VerifyReadModels, AnIntactSnapshotThatDiffersFromTheFoldIsAProblem) {
  HistoryDatabase db;
  {
    auto store = open_store(db.url());
    storage::UnitOfWork uow(store->pool());
    storage::StreamState state = storage::load_state(uow, "grace", AsOf::latest());
    state.state.at("calendar.default_meeting_minutes").value = std::int64_t{90};
    ASSERT_TRUE(storage::save_snapshot(uow, "grace", state));  // a valid checksum
    uow.commit();
  }
  const EventRef last = event_at(db.url(), "grace", 3);
  const VerifyReport report = verify(db.url());
  expect_only_problem(report, Kind::snapshot_mismatch, last);
  EXPECT_NE(report.problems[0].message.find("calendar.default_meeting_minutes"), std::string::npos)
      << render(report);
}

// ------------------------------------------------------------------------------------------
// VerifyBaselines (retention rows written as a superuser, as migration 0006 writes them)

// Compacts ada up to version `up_to` the way prefstore.compact_stream() does: a StreamCompacted
// record in "$audit" (with `record_head`, or the true chain head when empty; none when
// with_record is false), the events up to it deleted, a baseline in the last one's place,
// preferences_current pointed at it, older snapshots deleted.
void compact_ada(const std::string& url, std::int64_t up_to, bool with_record,
                 const std::string& record_head = "") {
  PreferencesBaseline baseline;
  std::string head;
  {
    auto store = open_store(url);
    const storage::StreamState state = store->state_as_of("ada", AsOf::at_version(up_to));
    for (const auto& [key, entry] : state.state) {
      baseline.preferences.push_back(PreferenceSet{key, entry.value});
    }
  }
  head = query_value(url,
                     "SELECT encode(chain_hash, 'hex') FROM prefstore.events WHERE stream_id = "
                     "'ada' AND stream_version = " +
                         std::to_string(up_to));
  baseline.chain_head = head;
  baseline.compacted_events = up_to;
  const EncodedEvent encoded = encode(baseline);
  const std::string v = std::to_string(up_to);
  const std::string of_v =
      " FROM prefstore.events WHERE stream_id = 'ada' AND stream_version = " + v;
  std::vector<std::string> statements;
  statements.push_back(
      "CREATE TEMP TABLE replaced ON COMMIT DROP AS SELECT global_position, "
      "recorded_at, transaction_id" +
      of_v);
  if (with_record) {
    statements.push_back(
        "INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at, "
        "last_recorded_at) VALUES ('$audit', 1, now(), now(), clock_timestamp()) ON CONFLICT "
        "(stream_id) DO UPDATE SET version = st.version + 1, updated_at = now(), "
        "last_recorded_at = greatest(clock_timestamp(), st.last_recorded_at)");
    statements.push_back(
        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
        "schema_version, payload, metadata, recorded_at) SELECT '$audit', s.version, "
        "gen_random_uuid(), 'StreamCompacted', 1, jsonb_build_object('stream_id', 'ada', "
        "'up_to_version', " +
        v + ", 'events', " + v + ", 'older_than', '2030-01-01T00:00:00.000000Z', 'chain_head', '" +
        (record_head.empty() ? head : record_head) +
        "'), '{\"actor\": \"retention-bot\", \"reason\": \"keep one year\"}', "
        "s.last_recorded_at FROM prefstore.streams s WHERE s.stream_id = '$audit'");
  }
  statements.push_back(
      "DELETE FROM prefstore.events WHERE stream_id = 'ada' AND stream_version "
      "<= " +
      v);
  statements.push_back(
      "INSERT INTO prefstore.events (global_position, stream_id, stream_version, event_id, "
      "event_type, schema_version, payload, metadata, recorded_at, transaction_id) OVERRIDING "
      "SYSTEM VALUE SELECT global_position, 'ada', " +
      v + ", gen_random_uuid(), 'PreferencesBaseline', 1, '" + encoded.payload_json +
      "'::jsonb, '{\"actor\": \"retention-bot\", \"reason\": \"keep one year\"}', recorded_at, "
      "transaction_id FROM replaced");
  statements.push_back(
      "UPDATE prefstore.preferences_current p SET version = " + v +
      ", updated_at = r.recorded_at, updated_by = 'retention-bot', last_position = "
      "r.global_position FROM replaced r WHERE p.stream_id = 'ada' AND p.version <= " +
      v);
  statements.push_back(
      "DELETE FROM prefstore.snapshots WHERE stream_id = 'ada' AND "
      "stream_version < " +
      v);
  if (with_record) {
    superuser(url, statements);
  } else {
    tamper(url, statements);
  }
}

TEST(VerifyBaselines, ABaselineWithItsRecordVerifiesClean) {
  HistoryDatabase db;
  compact_ada(db.url(), 5, true);
  const VerifyReport report = verify(db.url());
  EXPECT_TRUE(report.clean()) << render(report);
  EXPECT_EQ(report.compaction_records, 1);
  // The snapshot at version 9, taken before the compaction, still names the removed events for
  // the keys set up to version 5: right values, stale names, a warning.
  ASSERT_EQ(report.warnings.size(), 1u) << render(report);
  EXPECT_EQ(report.warnings[0].stream_version, 9) << render(report);
  EXPECT_NE(report.warnings[0].message.find("before the compaction"), std::string::npos);
  EXPECT_EQ(query_value(db.url(),
                        "SELECT min(stream_version) FROM prefstore.events WHERE "
                        "stream_id = 'ada'"),
            "5");
  // A value set later still follows the baseline's link.
  open_store(db.url())->set("ada", "calendar.time_zone", std::string("Asia/Seoul"),
                            by("ada", "mobile"));
  EXPECT_TRUE(verify(db.url()).clean());
}

TEST(VerifyBaselines, ABaselineWithoutItsRecordIsNamed) {
  HistoryDatabase db;
  const EventRef fifth = event_at(db.url(), "ada", 5);
  compact_ada(db.url(), 5, false);
  const std::string baseline_id =
      query_value(db.url(),
                  "SELECT event_id FROM prefstore.events WHERE stream_id = 'ada' AND "
                  "stream_version = 5");
  const VerifyReport report = verify(db.url());
  expect_only_problem(report, Kind::unmatched_baseline,
                      EventRef{"ada", 5, fifth.position, baseline_id});
  EXPECT_NE(report.problems[0].message.find("no record for that version"), std::string::npos)
      << render(report);
}

TEST(VerifyBaselines, ABaselineWhoseRecordHasAnotherChainHeadIsNamed) {
  HistoryDatabase db;
  compact_ada(db.url(), 5, true, std::string(64, 'a'));
  const VerifyReport report = verify(db.url());
  ASSERT_EQ(report.problem_count, 1) << render(report);
  EXPECT_EQ(report.problems[0].kind, Kind::unmatched_baseline);
  EXPECT_EQ(report.problems[0].stream_version, 5);
  EXPECT_NE(report.problems[0].message.find(std::string(64, 'a')), std::string::npos);
}

TEST(VerifyBaselines, EventsOlderThanAnErasureOfTheirStreamAreNamed) {
  HistoryDatabase db;
  const EventRef first = event_at(db.url(), "grace", 1);
  // Erase grace, then put her first event and a stream row back as a superuser.
  superuser(db.url(),
            {"CREATE TEMP TABLE kept ON COMMIT DROP AS SELECT * FROM prefstore.events WHERE "
             "stream_id = 'grace' AND stream_version = 1",
             "SELECT * FROM prefstore.erase_stream('grace', 'GDPR request 18', 'dpo', "
             "'6f1c2d3e-0000-4000-8000-000000000002')",
             "INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) SELECT "
             "stream_id, 1, recorded_at FROM kept",
             "INSERT INTO prefstore.events (global_position, stream_id, stream_version, "
             "event_id, event_type, schema_version, payload, metadata, recorded_at) OVERRIDING "
             "SYSTEM VALUE SELECT global_position, stream_id, stream_version, event_id, "
             "event_type, schema_version, payload, metadata, recorded_at FROM kept"});
  const VerifyReport report = verify(db.url());
  ASSERT_GE(report.problem_count, 1) << render(report);
  const VerifyProblem& p = report.problems[0];
  EXPECT_EQ(p.kind, Kind::erased_stream_present) << render(report);
  EXPECT_EQ(p.stream_id, "grace");
  EXPECT_EQ(p.global_position, first.position);
  EXPECT_EQ(p.event_id, first.event_id);
}

// ------------------------------------------------------------------------------------------
// VerifyProperty

struct Op {
  int kind = 0;  // 0 set string, 1 set int, 2 set list, 3 reset, 4 set_many, 5 restore, 6 snapshot
  int user = 0;
  int key = 0;
  std::string text;
  std::int64_t number = 0;
  int back = 0;  // restore: how many events back
};

const std::vector<std::string> kUsers{"ada", "grace", "kåre", "li.wei"};
const std::vector<std::string> kKeys{"calendar.time_zone", "calendar.working_hours.start",
                                     "notifications.channels", "reminders.note"};

rc::Gen<std::string> gen_text() {
  return rc::gen::container<std::string>(
      rc::gen::element('a', 'b', 'z', 'A', 'Q', '0', '7', ' ', '/', '_', '-', '\xc3', '\xa9'));
}

TEST(VerifyProperty, RandomHistoriesVerifyCleanAndOneChangedCharacterIsFoundAtItsEvent) {
  check_property(
      [] {
        const auto ops = *rc::gen::container<std::vector<Op>>(rc::gen::build<Op>(
            rc::gen::set(&Op::kind, rc::gen::inRange(0, 7)),
            rc::gen::set(&Op::user, rc::gen::inRange(0, 4)),
            rc::gen::set(&Op::key, rc::gen::inRange(0, 4)),
            rc::gen::set(&Op::text, rc::gen::map(gen_text(),
                                                 [](std::string s) {
                                                   // whole UTF-8: "é" is \xc3\xa9; drop stray
                                                   // halves
                                                   std::string out;
                                                   for (std::size_t i = 0; i < s.size(); ++i) {
                                                     if (s[i] == '\xc3' && i + 1 < s.size() &&
                                                         s[i + 1] == '\xa9') {
                                                       out += "\xc3\xa9";
                                                       ++i;
                                                     } else if (s[i] != '\xc3' && s[i] != '\xa9') {
                                                       out += s[i];
                                                     }
                                                   }
                                                   return "v" + out;
                                                 })),
            rc::gen::set(&Op::number, rc::gen::inRange<std::int64_t>(-1000, 1000)),
            rc::gen::set(&Op::back, rc::gen::inRange(1, 6))));
        ScratchDatabase db;
        {
          auto store = open_store(db.url(), false);
          std::map<std::string, std::vector<std::int64_t>> positions;
          store->set("ada", "calendar.time_zone", std::string("UTC"),
                     Metadata{"user:ada", "property", "", "", ""});
          for (const Op& op : ops) {
            const std::string& user = kUsers[static_cast<std::size_t>(op.user)];
            const std::string& key = kKeys[static_cast<std::size_t>(op.key)];
            const Metadata m{"user:" + user, "property", op.text, "", ""};
            std::optional<AppendResult> r;
            switch (op.kind) {
              case 0:
                r = store->set(user, key, op.text, m);
                break;
              case 1:
                r = store->set(user, key, op.number, m);
                break;
              case 2:
                r = store->set(user, key, StringList{op.text, "x"}, m);
                break;
              case 3:
                r = store->reset(user, key, m);
                break;
              case 4:
                r = store->set_many(user, {{key, op.text}, {"reminders.minutes", op.number}}, m);
                break;
              case 5: {
                auto& seen = positions[user];
                if (seen.empty()) break;
                const auto at =
                    seen[seen.size() -
                         std::min<std::size_t>(seen.size(), static_cast<std::size_t>(op.back))];
                RestoreOptions o;
                o.metadata = m;
                const auto plan = store->restore(user, AsOf::at_position(at), o);
                (void)plan;
                break;
              }
              default:
                (void)store->snapshot(user);
            }
            if (r) positions[user].push_back(r->global_position);
          }
          catch_up_projections(*store);
        }
        const VerifyReport clean = verify(db.url());
        RC_ASSERT(clean.clean());
        RC_ASSERT(clean.events_checked ==
                  query_int(db.url(), "SELECT count(*) FROM prefstore.events"));

        // Change one character inside a string of one event's payload (still valid JSON).
        std::vector<std::pair<EventRef, std::string>> candidates;
        {
          pqxx::connection conn(db.url());
          pqxx::read_transaction tx(conn);
          for (const auto& row :
               tx.exec("SELECT stream_id, stream_version, global_position, event_id::text, "
                       "payload::text FROM prefstore.events ORDER BY global_position")) {
            candidates.push_back({EventRef{row[0].as<std::string>(), row[1].as<std::int64_t>(),
                                           row[2].as<std::int64_t>(), row[3].as<std::string>()},
                                  row[4].as<std::string>()});
          }
        }
        RC_PRE(!candidates.empty());
        const auto& [target, payload] =
            candidates[*rc::gen::inRange<std::size_t>(0, candidates.size())];
        // Letters and digits inside string literals (not escapes): each is a safe place.
        std::vector<std::size_t> places;
        bool in_string = false;
        for (std::size_t i = 0; i < payload.size(); ++i) {
          const char c = payload[i];
          if (c == '\\') {
            ++i;
            continue;
          }
          if (c == '"') {
            in_string = !in_string;
            continue;
          }
          if (in_string && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) places.push_back(i);
        }
        RC_PRE(!places.empty());
        const std::size_t place = places[*rc::gen::inRange<std::size_t>(0, places.size())];
        std::string changed = payload;
        changed[place] = changed[place] == 'q' ? 'w' : 'q';
        {
          pqxx::connection conn(db.url());
          pqxx::work tx(conn);
          tx.exec("ALTER TABLE prefstore.events DISABLE TRIGGER events_append_only");
          tx.exec_params(
              "UPDATE prefstore.events SET payload = $1::jsonb WHERE stream_id = $2 AND "
              "stream_version = $3",
              changed, target.stream, target.version);
          tx.exec("ALTER TABLE prefstore.events ENABLE TRIGGER events_append_only");
          tx.commit();
        }
        const VerifyReport report = verify(db.url());
        RC_ASSERT(report.problem_count == 1);
        const VerifyProblem& p = report.problems.at(0);
        RC_ASSERT(p.kind == Kind::chain_mismatch);
        RC_ASSERT(p.stream_id == target.stream);
        RC_ASSERT(p.stream_version == target.version);
        RC_ASSERT(p.global_position == target.position);
        RC_ASSERT(p.event_id == target.event_id);
      },
      8, 20);
}

// ------------------------------------------------------------------------------------------
// VerifyScale

TEST(VerifyScale, ALongStreamAmongManyIsVerifiedInBoundedPages) {
  std::int64_t long_stream = 40000;
  if (const char* n = std::getenv("PREFSTORE_VERIFY_SCALE_EVENTS")) long_stream = std::stoll(n);
  const std::int64_t users = 500;
  const std::int64_t per_user = 10;
  ScratchDatabase db;
  // Loaded as a superuser in three statements (the chain trigger links every row), with
  // preferences_current as the fold gives it.
  const auto load_started = std::chrono::steady_clock::now();
  const std::string n = std::to_string(long_stream);
  const std::string u = std::to_string(users);
  const std::string k = std::to_string(per_user);
  superuser(
      db.url(),
      {"INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) SELECT "
       "'long-stream', " +
           n + ", now() UNION ALL SELECT 'user-' || u, " + k + ", now() FROM generate_series(1, " +
           u + ") AS u",
       "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
       "schema_version, payload, metadata, recorded_at) SELECT 'long-stream', i, "
       "gen_random_uuid(), 'PreferenceSet', 1, CASE WHEN i % 2 = 1 THEN jsonb_build_object('key', "
       "'calendar.time_zone', 'type', 'string', 'value', 'Zone/' || (i % 97)) ELSE "
       "jsonb_build_object('key', 'reminders.default_minutes', 'type', 'int', 'value', i % 60) "
       "END, '{\"actor\": \"importer\", \"source\": \"verify-test\"}', now() FROM "
       "generate_series(1, " +
           n + ") AS i ORDER BY i",
       "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
       "schema_version, payload, metadata, recorded_at) SELECT 'user-' || u, v, "
       "gen_random_uuid(), 'PreferenceSet', 1, jsonb_build_object('key', "
       "'calendar.default_meeting_minutes', 'type', 'int', 'value', 14 + v), '{\"actor\": "
       "\"importer\"}', now() FROM generate_series(1, " +
           u + ") AS u, generate_series(1, " + k + ") AS v ORDER BY u, v",
       "INSERT INTO prefstore.preferences_current (stream_id, key, value_type, value, version, "
       "updated_at, updated_by, last_position) SELECT DISTINCT ON (stream_id, payload->>'key') "
       "stream_id, payload->>'key', payload->>'type', payload->'value', stream_version, "
       "recorded_at, 'importer', global_position FROM prefstore.events ORDER BY stream_id, "
       "payload->>'key', stream_version DESC",
       "ANALYZE prefstore.events"});
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_started).count();
  const std::int64_t total = long_stream + users * per_user;
  auto store = open_store(db.url());

  for (const bool projections : {false, true}) {
    VerifyOptions options;
    options.check_projections = projections;
    options.streams_per_page = 50;
    std::int64_t pages = 0;
    options.progress = [&](const VerifyProgress&) { ++pages; };
    const auto started = std::chrono::steady_clock::now();
    const VerifyReport report = store->verify(options);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_TRUE(report.clean()) << render(report);
    EXPECT_EQ(report.events_checked, total);
    EXPECT_EQ(report.streams_checked, users + 1);
    EXPECT_EQ(pages, users / 50 + 2);  // full pages, the last one, the end
    EXPECT_GT(report.projection_rows_checked, projections ? users : -1);
    std::cout << "[ verify    ] " << total << " events (one stream of " << long_stream << ", "
              << users << " of " << per_user << "), loaded in " << load_seconds << " s; verify "
              << (projections ? "with read models" : "log only") << ": " << seconds << " s ("
              << static_cast<double>(total) / seconds << " events/s)" << std::endl;
  }

  // An event deep in the long stream, edited: named across page boundaries.
  const std::int64_t deep = long_stream * 3 / 4 + 1;
  const EventRef named = event_at(db.url(), "long-stream", deep);
  tamper(db.url(), {"UPDATE prefstore.events SET payload = jsonb_set(payload, '{value}', "
                    "'\"Zone/X\"') WHERE stream_id = 'long-stream' AND stream_version = " +
                    std::to_string(deep)});
  VerifyOptions log_only;
  log_only.check_projections = false;
  expect_only_problem(store->verify(log_only), Kind::chain_mismatch, named);
}

}  // namespace
}  // namespace prefstore
