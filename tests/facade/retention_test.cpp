// Retention (storage/retention.hpp, migration 0006) through the Store and the CLI, against a
// real PostgreSQL, on the calendar assistant's data (working hours, time zone, meeting length,
// reminders, notification channels). Every case gets a scratch database of its own.
//
// - Compaction keeps the current state, get_all, the rows of every read model (live and
//   rebuilt from the log), and every as-of read at or after the baseline (by version, position
//   and time); as-of reads before it are refused with a message naming the user, the moment,
//   the baseline and the compaction; streams with nothing old enough stay as they were.
// - The "$audit" record holds who, when, why, how many events and the chain head; the baseline
//   keeps event V's place and chain hash, so every later link of the chain still holds.
// - Only prefstore_owner compacts; the append-only trigger still refuses a plain DELETE.
// - A projection that has read part of the events up to V makes the stream skipped; one that
//   has read none of them reads the baseline instead and agrees.
// - Backups round-trip a compacted store; a second compaction folds the baseline into a new one;
//   a dry run writes nothing; the CLI prints what it did and exits 0 / 2 / 3 / 4 / 7.
// - RetentionModel (rapidcheck, state pattern): random histories and random cut-offs, compacted
//   repeatedly: the state now and as of every moment at or after the newest baseline equal the
//   model's fold; every moment before it is refused.
//
// Run count: RetentionModel 30 runs, sizes up to 30; RC_PARAMS overrides them.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/as_of.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/retention.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/storage/unit_of_work.hpp"
#include "prefstore/storage/verify.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "render.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

namespace fs = std::filesystem;
using prefstore::testing::check_property;
using prefstore::testing::quoted;
using prefstore::testing::render;
using prefstore::testing::render_values;
using prefstore::testing::run_cli;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::value_line;
using storage::CompactOptions;
using storage::CompactReport;

constexpr const char* kOwner = "prefstore_owner";
constexpr const char* kReason = "retention policy: preference history older than 400 days";

// ------------------------------------------------------------------------------------------
// Databases, as the test cluster's superuser.

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

void exec_sql(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec(sql);
  tx.commit();
}

// Runs sql as `role` in a transaction that is rolled back; returns the error's message, or ""
// when the statement succeeded.
std::string error_as(const std::string& url, const std::string& role, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec("SET ROLE " + role);
  try {
    tx.exec(sql);
  } catch (const pqxx::sql_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* const kEventsSql =
    "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, "
    "payload::text, metadata::text, recorded_at, transaction_id, encode(chain_hash, 'hex') "
    "FROM prefstore.events ORDER BY global_position";
const char* const kCurrentSql =
    "SELECT stream_id, key, value_type, value::text, version, updated_at, updated_by, "
    "last_position FROM prefstore.preferences_current ORDER BY stream_id, key";
const char* const kCurrentValuesSql =
    "SELECT stream_id, key, value_type, value::text FROM prefstore.preferences_current "
    "ORDER BY stream_id, key";
const char* const kValueCountsSql =
    "SELECT key, value_type, value::text, users FROM prefstore.preference_value_counts "
    "WHERE users > 0 ORDER BY key, value_type, value::text";
const char* const kValueHoldersSql =
    "SELECT stream_id, key, value_type, value::text FROM prefstore.preference_value_holders "
    "ORDER BY stream_id, key";
const char* const kCountsFromCurrentSql =
    "SELECT key, value_type, value::text, count(*) FROM prefstore.preferences_current "
    "GROUP BY key, value_type, value::text ORDER BY key, value_type, value::text";
const char* const kSnapshotsSql =
    "SELECT * FROM prefstore.snapshots ORDER BY stream_id, stream_version";
const char* const kStreamsSql = "SELECT * FROM prefstore.streams ORDER BY stream_id";
const char* const kEventsWithoutTransactionSql =
    "SELECT global_position, stream_id, stream_version, event_id, event_type, payload::text, "
    "metadata::text, recorded_at, encode(chain_hash, 'hex') FROM prefstore.events "
    "ORDER BY global_position";
const char* const kStreamRowsSql =
    "SELECT stream_id, version, last_recorded_at FROM prefstore.streams ORDER BY stream_id";

// ------------------------------------------------------------------------------------------
// Stores and the calendar assistant's data.

StoreOptions options_for(const std::string& url, const std::string& role, bool strict = true) {
  StoreOptions o;
  o.database_url = url;
  o.strict = strict;
  o.pool.max_size = 4;
  o.pool.role = role;
  o.definitions_refresh = std::chrono::milliseconds(0);
  return o;
}

Metadata by(std::string actor, std::string source = "calendar-web", std::string reason = {}) {
  Metadata m;
  m.actor = std::move(actor);
  m.source = std::move(source);
  m.reason = std::move(reason);
  return m;
}

Value str(const char* v) {
  return Value(std::string(v));
}

void define_calendar(Store& store) {
  const auto define = [&](const char* key, ValueType type, Value default_value,
                          Constraints constraints = {}) {
    PreferenceDefinition d;
    d.key = key;
    d.type = type;
    d.default_value = std::move(default_value);
    d.constraints = std::move(constraints);
    (void)store.define(d, by("platform-team", "prefstore-cli"));
  };
  Constraints hours;
  hours.pattern = "[0-2][0-9]:[0-5][0-9]";
  define("calendar.working_hours.start", ValueType::string, str("09:00"), hours);
  define("calendar.time_zone", ValueType::string, str("UTC"));
  Constraints minutes;
  minutes.min = 5;
  minutes.max = 480;
  define("calendar.default_meeting_minutes", ValueType::integer, Value(std::int64_t{30}), minutes);
  Constraints reminder;
  reminder.min = 0;
  reminder.max = 1440;
  define("reminders.default_minutes", ValueType::integer, Value(std::int64_t{10}), reminder);
  Constraints channels;
  channels.allowed_values = std::vector<Value>{str("email"), str("push"), str("sms")};
  define("notifications.channels", ValueType::string_list, Value(StringList{"email"}), channels);
}

// The moments of a scenario: `cut` lies after every "old" event and before every "new" one.
struct Calendar {
  Timestamp cut{};
  Timestamp old_last{};  // recorded_at of the newest old event
};

Timestamp later(Timestamp a, Timestamp b) {
  return a < b ? b : a;
}

// alice: 8 old events (sets, a reset, a set_many of two, a point-in-time restore), then 3 new;
// bob: 2 old, 1 new; dave: 1 old (nothing to compact: one event); carol: 2 new.
Calendar write_calendar(Store& store) {
  define_calendar(store);
  Calendar c;
  const auto note = [&](const storage::AppendResult& r) {
    c.old_last = later(c.old_last, r.recorded_at);
  };
  note(store.set("alice", "calendar.time_zone", str("Europe/London"), by("alice@example.com")));
  note(store.set("alice", "calendar.working_hours.start", str("08:30"), by("alice@example.com")));
  note(store.set("alice", "calendar.default_meeting_minutes", Value(std::int64_t{45}),
                 by("alice@example.com")));
  note(store.set("alice", "notifications.channels", Value(StringList{"email", "push"}),
                 by("alice@example.com", "calendar-mobile")));
  note(store.reset("alice", "calendar.default_meeting_minutes",
                   by("support@example.com", "support-console", "ticket 4711")));
  note(store.set_many("alice",
                      {{"reminders.default_minutes", Value(std::int64_t{15})},
                       {"calendar.time_zone", str("Europe/Berlin")}},
                      by("alice@example.com", "calendar-mobile", "moved to Berlin")));
  RestoreOptions restore;
  restore.metadata = by("support@example.com", "support-console", "ticket 4712: undo");
  const auto plan = store.restore("alice", AsOf::at_version(3), restore);
  if (!plan.appended) throw std::logic_error("the scenario's restore appended nothing");
  note(*plan.appended);
  note(store.set("bob", "calendar.time_zone", str("America/New_York"), by("bob@example.com")));
  note(
      store.set("bob", "reminders.default_minutes", Value(std::int64_t{5}), by("bob@example.com")));
  note(store.set("dave", "calendar.time_zone", str("Asia/Tokyo"), by("dave@example.com")));
  c.cut = c.old_last + std::chrono::microseconds(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  (void)store.set("alice", "calendar.working_hours.start", str("09:15"), by("alice@example.com"));
  (void)store.set("alice", "notifications.channels", Value(StringList{"sms"}),
                  by("alice@example.com"));
  (void)store.reset("alice", "reminders.default_minutes", by("alice@example.com"));
  (void)store.set("bob", "calendar.default_meeting_minutes", Value(std::int64_t{25}),
                  by("bob@example.com"));
  (void)store.set("carol", "calendar.time_zone", str("Australia/Sydney"), by("carol@example.com"));
  (void)store.set("carol", "calendar.default_meeting_minutes", Value(std::int64_t{60}),
                  by("carol@example.com"));
  return c;
}

const std::vector<std::string> kUsers = {"alice", "bob", "carol", "dave"};

CompactOptions compact_before(Timestamp cut, std::optional<std::string> user = std::nullopt) {
  CompactOptions o;
  o.policy.before = cut;
  o.user = std::move(user);
  o.reason = kReason;
  o.actor = "retention-cron";
  return o;
}

// A user's state as of a moment, values and version only ("v8\n" + value lines).
std::string values_at(Store& store, const std::string& user, const AsOf& as_of) {
  const auto state = store.state_as_of(user, as_of);
  return "v" + std::to_string(state.version) + "\n" + render_values(state.state);
}

// get_all's values and whether each is a default.
std::string render_all(const std::map<std::string, ResolvedPreference>& all) {
  std::string out;
  for (const auto& [key, r] : all)
    out += (r.is_default ? "default " : "") + value_line(key, r.value);
  return out;
}

// Everything observable of a user now and at every moment of their history: get_all, and the
// state as of each event's version, position and time.
struct Observed {
  std::vector<RecordedEvent> history;
  std::string all;
  std::map<std::string, std::string> at;  // "version 3", "position 17", time text -> values
};

Observed observe(Store& store, const std::string& user) {
  Observed o;
  o.history = store.history(user);
  o.all = render_all(store.get_all(user));
  for (const RecordedEvent& e : o.history) {
    for (const AsOf& as_of : {AsOf::at_version(e.stream_version),
                              AsOf::at_position(e.global_position), AsOf::at_time(e.recorded_at)}) {
      o.at[as_of.describe()] = values_at(store, user, as_of);
    }
  }
  return o;
}

// The moments of `before`'s events at or after version `from`, as of which `store` must still
// agree with `before`.
void expect_same_from(Store& store, const std::string& user, const Observed& before,
                      std::int64_t from) {
  EXPECT_EQ(render_all(store.get_all(user)), before.all) << user;
  for (const RecordedEvent& e : before.history) {
    if (e.stream_version < from) continue;
    for (const AsOf& as_of : {AsOf::at_version(e.stream_version),
                              AsOf::at_position(e.global_position), AsOf::at_time(e.recorded_at)}) {
      EXPECT_EQ(values_at(store, user, as_of), before.at.at(as_of.describe()))
          << user << " as of " << as_of.describe();
    }
  }
}

// The message of the ValidationError that state_as_of(user, as_of) throws, or "" when none.
std::string refusal(Store& store, const std::string& user, const AsOf& as_of) {
  try {
    (void)store.state_as_of(user, as_of);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "";
}

void catch_up(Store& store) {
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
}

void save_snapshot_at(Store& store, const std::string& user, std::int64_t version) {
  storage::UnitOfWork uow(store.pool());
  const auto state = storage::load_state(uow, user, AsOf::at_version(version));
  ASSERT_TRUE(storage::save_snapshot(uow, user, state));
  uow.commit();
}

std::vector<std::int64_t> snapshot_versions(Store& store, const std::string& user) {
  std::vector<std::int64_t> out;
  for (const auto& info : storage::list_snapshots(store.pool(), user)) {
    out.push_back(info.stream_version);
  }
  return out;
}

// The StreamCompacted records of "$audit", oldest first.
std::vector<std::pair<RecordedEvent, StreamCompacted>> compaction_records(Store& store) {
  std::vector<std::pair<RecordedEvent, StreamCompacted>> out;
  for (RecordedEvent& e : store.history(std::string(kAuditStreamId))) {
    if (const auto* c = std::get_if<StreamCompacted>(&e.data)) {
      StreamCompacted record = *c;
      out.emplace_back(std::move(e), std::move(record));
    }
  }
  return out;
}

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { m_store = std::make_unique<Store>(options_for(m_db.url(), kOwner)); }
  Store& store() { return *m_store; }
  const std::string& url() const { return m_db.url(); }

  ScratchDatabase m_db;
  std::unique_ptr<Store> m_store;
};

// ------------------------------------------------------------------------------------------
// What compaction keeps.

TEST_F(RetentionTest, CompactionKeepsTheCurrentStateAndEveryMomentFromTheBaselineOn) {
  const Calendar c = write_calendar(store());
  save_snapshot_at(store(), "alice", 3);
  save_snapshot_at(store(), "alice", 8);
  save_snapshot_at(store(), "alice", 10);
  std::map<std::string, Observed> before;
  for (const auto& user : kUsers) before[user] = observe(store(), user);
  const Rows values_before = query_rows(url(), kCurrentValuesSql);
  const std::string chain_head_8 = query_value(
      url(),
      "SELECT encode(chain_hash, 'hex') FROM prefstore.events WHERE stream_id = 'alice' AND "
      "stream_version = 8");

  std::vector<storage::CompactedStream> reported;
  CompactOptions options = compact_before(c.cut);
  options.on_stream = [&](const storage::CompactedStream& s) { reported.push_back(s); };
  const CompactReport report = store().compact(options);

  EXPECT_EQ(report.cutoff, c.cut);
  EXPECT_FALSE(report.dry_run);
  EXPECT_EQ(report.streams_examined, 4);
  EXPECT_EQ(report.streams_compacted, 2);
  EXPECT_EQ(report.events_removed, 10);
  EXPECT_EQ(report.streams_skipped, 0);
  ASSERT_EQ(reported.size(), 2U);
  EXPECT_EQ(reported[0].stream_id, "alice");
  EXPECT_TRUE(reported[0].compacted);
  EXPECT_EQ(reported[0].first_version, 1);
  EXPECT_EQ(reported[0].up_to_version, 8);
  EXPECT_EQ(reported[0].events, 8);
  EXPECT_EQ(reported[0].up_to_recorded_at, before["alice"].history[7].recorded_at);
  EXPECT_EQ(reported[0].preferences, 3);  // time zone, working hours, meeting minutes
  EXPECT_EQ(reported[0].chain_head, chain_head_8);
  EXPECT_GT(reported[0].audit_position, before["carol"].history.back().global_position);
  EXPECT_EQ(reported[1].stream_id, "bob");
  EXPECT_EQ(reported[1].up_to_version, 2);
  EXPECT_EQ(reported[1].events, 2);

  // Current state, preferences_current's values and every moment from the baseline on.
  EXPECT_EQ(query_rows(url(), kCurrentValuesSql), values_before);
  expect_same_from(store(), "alice", before["alice"], 8);
  expect_same_from(store(), "bob", before["bob"], 2);
  for (const std::string user : {"carol", "dave"}) {  // nothing old enough: untouched
    EXPECT_EQ(store().history(user), before[user].history) << user;
    expect_same_from(store(), user, before[user], 1);
  }

  // The log: alice starts with the baseline in event 8's place; events 9-11 are untouched.
  const auto history = store().history("alice");
  ASSERT_EQ(history.size(), 4U);
  const RecordedEvent& baseline_event = history[0];
  const RecordedEvent& replaced = before["alice"].history[7];
  EXPECT_EQ(baseline_event.stream_version, 8);
  EXPECT_EQ(baseline_event.global_position, replaced.global_position);
  EXPECT_EQ(baseline_event.recorded_at, replaced.recorded_at);
  EXPECT_NE(baseline_event.event_id, replaced.event_id);
  ASSERT_TRUE(std::holds_alternative<PreferencesBaseline>(baseline_event.data));
  const auto& baseline = std::get<PreferencesBaseline>(baseline_event.data);
  EXPECT_EQ(baseline.chain_head, chain_head_8);
  EXPECT_EQ(baseline.compacted_events, 8);
  std::string baseline_values;
  for (const PreferenceSet& p : baseline.preferences) baseline_values += value_line(p.key, p.value);
  EXPECT_EQ("v8\n" + baseline_values, before["alice"].at.at("version 8"));
  EXPECT_EQ(baseline_event.metadata.actor, "retention-cron");
  EXPECT_EQ(baseline_event.metadata.reason, kReason);
  for (std::size_t k = 1; k < history.size(); ++k) {
    EXPECT_EQ(history[k], before["alice"].history[7 + k]);
  }
  EXPECT_EQ(store().version("alice"), 11);

  // Every snapshot of the stream is gone (they name removed events); reads fold from the
  // baseline until the policy writes new ones.
  EXPECT_EQ(snapshot_versions(store(), "alice"), (std::vector<std::int64_t>{}));
  EXPECT_EQ(store().state_as_of("alice", AsOf::at_version(9)).snapshot_version, 0);
  save_snapshot_at(store(), "alice", 10);
  EXPECT_EQ(store().state_as_of("alice", AsOf::at_version(10)).snapshot_version, 10);

  // preferences_current rows set at or before version 8 now point at the baseline, as a
  // rebuild from the log would make them.
  const auto current = storage::CurrentState(store().pool()).get_all("alice");
  const PreferenceEntry& tz = current.at("calendar.time_zone");
  EXPECT_EQ(tz.version, 8);
  EXPECT_EQ(tz.updated_by, "retention-cron");
  EXPECT_EQ(tz.last_position, replaced.global_position);
  EXPECT_EQ(tz.updated_at, replaced.recorded_at);
  EXPECT_EQ(current.at("calendar.working_hours.start").version, 9);
}

TEST_F(RetentionTest, AsOfBeforeTheBaselineIsRefusedNamingUserMomentBaselineAndCompaction) {
  const Calendar c = write_calendar(store());
  const auto before = store().history("alice");
  (void)store().compact(compact_before(c.cut));
  const auto records = compaction_records(store());
  ASSERT_EQ(records.size(), 2U);
  const RecordedEvent& v8 = before[7];

  const AsOf moment = AsOf::at_version(3);
  EXPECT_EQ(refusal(store(), "alice", moment),
            "history of alice before version 8 (" + format_timestamp(v8.recorded_at) +
                ") was compacted by retention on " +
                format_timestamp(records[0].first.recorded_at) +
                ": its state as of version 3 is no longer known; ask for a moment at or after "
                "version 8 (position " +
                std::to_string(v8.global_position) + ", " + format_timestamp(v8.recorded_at) + ")");
  for (std::size_t k = 0; k < 7; ++k) {
    const RecordedEvent& e = before[k];
    for (const AsOf& as_of : {AsOf::at_version(e.stream_version),
                              AsOf::at_position(e.global_position), AsOf::at_time(e.recorded_at)}) {
      const std::string message = refusal(store(), "alice", as_of);
      EXPECT_TRUE(contains(message, "history of alice before version 8 (") &&
                  contains(message, "its state as of " + as_of.describe() + " is no longer"))
          << as_of.describe() << ": " << message;
    }
  }
  // One microsecond before event 8 is before the baseline too; version 0 is the empty state.
  EXPECT_NE(refusal(store(), "alice", AsOf::at_time(v8.recorded_at - std::chrono::microseconds(1))),
            "");
  EXPECT_EQ(values_at(store(), "alice", AsOf::at_version(0)), "v0\n");

  // Every read as of a moment goes through the same load.
  EXPECT_THROW((void)store().get("alice", "calendar.time_zone", moment), ValidationError);
  EXPECT_THROW((void)store().get_all("alice", moment), ValidationError);
  EXPECT_THROW((void)store().diff("alice", moment, AsOf::latest()), ValidationError);
  EXPECT_THROW((void)store().restore("alice", moment), ValidationError);
  EXPECT_EQ(store().version("alice"), 11);  // the refused restore appended nothing
  const auto diff = store().diff("alice", AsOf::at_version(8), AsOf::latest());
  EXPECT_EQ(diff.from_version, 8);
  EXPECT_EQ(diff.to_version, 11);
}

TEST_F(RetentionTest, TheAuditRecordHoldsWhoWhenWhyHowManyAndTheChainHead) {
  const Calendar c = write_calendar(store());
  const std::string chain_head_8 = query_value(
      url(),
      "SELECT encode(chain_hash, 'hex') FROM prefstore.events WHERE stream_id = 'alice' AND "
      "stream_version = 8");
  const auto last_before = store().set("erin", "calendar.time_zone", str("UTC"), by("erin"));
  (void)store().compact(compact_before(c.cut, "alice"));
  const auto first_after = store().set("erin", "calendar.time_zone", str("CET"), by("erin"));

  const auto records = compaction_records(store());
  ASSERT_EQ(records.size(), 1U);
  const auto& [event, record] = records[0];
  EXPECT_EQ(record.stream_id, "alice");
  EXPECT_EQ(record.up_to_version, 8);
  EXPECT_EQ(record.events, 8);
  EXPECT_EQ(record.older_than, c.cut);
  EXPECT_EQ(record.chain_head, chain_head_8);
  EXPECT_EQ(event.metadata.actor, "retention-cron");
  EXPECT_EQ(event.metadata.reason, kReason);
  EXPECT_GE(event.recorded_at, last_before.recorded_at);
  EXPECT_LE(event.recorded_at, first_after.recorded_at);
  // The baseline names its record.
  const RecordedEvent baseline = store().history("alice").front();
  EXPECT_EQ(baseline.metadata.causation_id, event.event_id);
  // bob was not asked for.
  EXPECT_EQ(store().history("bob").size(), 3U);
}

TEST_F(RetentionTest, TheChainStillLinksFromTheBaselineOn) {
  const Calendar c = write_calendar(store());
  const char* const heads_sql =
      "SELECT stream_id, stream_version, encode(chain_hash, 'hex') FROM prefstore.events "
      "WHERE (stream_id = 'alice' AND stream_version >= 8) OR (stream_id = 'bob' AND "
      "stream_version >= 2) ORDER BY stream_id, stream_version";
  const Rows heads_before = query_rows(url(), heads_sql);
  ASSERT_EQ(heads_before.size(), 6U);
  (void)store().compact(compact_before(c.cut));
  // The baseline keeps the hash of the event it replaced, and so does every later event.
  EXPECT_EQ(query_rows(url(), heads_sql), heads_before);
  // Every link after the baseline, recomputed from the events' columns.
  const std::string broken = query_value(
      url(),
      "SELECT count(*) FILTER (WHERE e.chain_hash IS DISTINCT FROM prefstore.chain_step("
      "p.chain_hash, prefstore.event_canonical_bytes(e.global_position, e.stream_id, "
      "e.stream_version, e.event_id, e.event_type, e.schema_version, e.recorded_at, e.payload, "
      "e.metadata))) || '/' || count(*) FROM prefstore.events e JOIN prefstore.events p "
      "ON p.stream_id = e.stream_id AND p.stream_version = e.stream_version - 1 "
      "WHERE e.stream_id IN ('alice', 'bob')");
  EXPECT_EQ(broken, "0/4");
  // And verify, which checks chains, versions, baselines against their records and the read
  // models against the fold, finds nothing wrong.
  const storage::VerifyReport verified = storage::verify_store(store().pool());
  EXPECT_TRUE(verified.clean()) << (verified.problems.empty() ? std::string()
                                                              : verified.problems[0].message);
  EXPECT_EQ(verified.compaction_records, 2);
}

TEST_F(RetentionTest, EveryReadModelRebuiltFromTheLogEqualsTheLiveOne) {
  const Calendar c = write_calendar(store());
  catch_up(store());
  const Rows values_before = query_rows(url(), kCurrentValuesSql);
  const Rows counts_before = query_rows(url(), kValueCountsSql);
  const Rows holders_before = query_rows(url(), kValueHoldersSql);
  (void)store().compact(compact_before(c.cut));
  catch_up(store());  // reads the "$audit" records only
  const Rows current_live = query_rows(url(), kCurrentSql);
  EXPECT_EQ(query_rows(url(), kValueCountsSql), counts_before);

  for (const auto& projection : projections::rebuildable_projections()) {
    (void)projections::rebuild_projection(store().pool(), *projection);
  }
  EXPECT_EQ(query_rows(url(), kCurrentSql), current_live);
  EXPECT_EQ(query_rows(url(), kCurrentValuesSql), values_before);
  EXPECT_EQ(query_rows(url(), kValueCountsSql), counts_before);
  EXPECT_EQ(query_rows(url(), kValueHoldersSql), holders_before);
  EXPECT_EQ(render_all(store().get_all("alice")),
            "\"calendar.default_meeting_minutes\" = int 45\n"
            "\"calendar.time_zone\" = string \"Europe/London\"\n"
            "\"calendar.working_hours.start\" = string \"09:15\"\n"
            "\"notifications.channels\" = list [\"sms\"]\n"
            "default \"reminders.default_minutes\" = int 10\n");
}

// ------------------------------------------------------------------------------------------
// Who may compact, and what still cannot happen.

TEST_F(RetentionTest, WriterAndReaderCannotCompactAndAPlainDeleteIsStillRefused) {
  const Calendar c = write_calendar(store());
  const Rows events_before = query_rows(url(), kEventsSql);
  for (const std::string role : {"prefstore_writer", "prefstore_reader"}) {
    StoreOptions o = options_for(url(), role);
    o.migrate_on_open = false;
    Store other(o);
    try {
      (void)other.compact(compact_before(c.cut));
      ADD_FAILURE() << role << " compacted";
    } catch (const PermissionError& e) {
      EXPECT_EQ(e.sqlstate(), "42501");
      EXPECT_TRUE(contains(e.what(), "role " + role +
                                         " may not execute prefstore.compact_stream(); compact as "
                                         "a member of prefstore_owner"))
          << e.what();
    }
    EXPECT_EQ(other
                  .compact([&] {
                    auto dry = compact_before(c.cut);
                    dry.dry_run = true;
                    return dry;
                  }())
                  .streams_compacted,
              2)
        << role << " may plan";
    const std::string call =
        "SELECT * FROM prefstore.compact_stream('alice', 8, '{}'::jsonb, gen_random_uuid(), "
        "now(), 'r', 'a', gen_random_uuid())";
    EXPECT_TRUE(
        contains(error_as(url(), role, call), "permission denied for function compact_stream"))
        << role;
    EXPECT_TRUE(contains(error_as(url(), role,
                                  "DELETE FROM prefstore.events WHERE stream_id = "
                                  "'alice' AND stream_version <= 2"),
                         "permission denied for table events"))
        << role;
  }
  // The owner may delete only with a matching audit record in the same transaction.
  EXPECT_TRUE(contains(error_as(url(), kOwner,
                                "DELETE FROM prefstore.events WHERE stream_id = 'alice' AND "
                                "stream_version <= 2"),
                       "prefstore.events is append-only: DELETE is not allowed"));
  // And the function checks what it is given.
  const std::string wrong_head =
      "SELECT * FROM prefstore.compact_stream('alice', 8, '{\"chain_head\": \"" +
      std::string(64, '0') +
      "\", \"compacted_events\": 8, \"preferences\": []}'::jsonb, gen_random_uuid(), now(), 'r', "
      "'a', gen_random_uuid())";
  EXPECT_TRUE(contains(error_as(url(), kOwner, wrong_head),
                       "the baseline of stream 'alice' at version 8 does not fit the log"));
  EXPECT_TRUE(contains(error_as(url(), kOwner,
                                "SELECT * FROM prefstore.compact_stream('dave', 1, '{}'::jsonb, "
                                "gen_random_uuid(), now(), 'r', 'a', gen_random_uuid())"),
                       "a baseline must replace at least two events"));
  EXPECT_TRUE(contains(error_as(url(), kOwner,
                                "SELECT * FROM prefstore.compact_stream('alice', 10, '{}'::jsonb, "
                                "gen_random_uuid(), '2000-01-01', 'r', 'a', gen_random_uuid())"),
                       "not before the cut-off"));
  EXPECT_TRUE(contains(error_as(url(), kOwner,
                                "SELECT * FROM prefstore.compact_stream('alice', 8, '{}'::jsonb, "
                                "gen_random_uuid(), now(), ' ', 'a', gen_random_uuid())"),
                       "needs a reason"));
  EXPECT_EQ(query_rows(url(), kEventsSql), events_before);

  // Options a run refuses before it starts.
  CompactOptions none = compact_before(c.cut);
  none.policy = {};
  EXPECT_THROW((void)store().compact(none), ValidationError);
  CompactOptions both = compact_before(c.cut);
  both.policy.older_than = std::chrono::hours(24);
  EXPECT_THROW((void)store().compact(both), ValidationError);
  CompactOptions future = compact_before(c.cut + std::chrono::hours(1));
  EXPECT_THROW((void)store().compact(future), ValidationError);
  CompactOptions no_reason = compact_before(c.cut);
  no_reason.reason = " \t";
  EXPECT_THROW((void)store().compact(no_reason), ValidationError);
  EXPECT_THROW((void)store().compact(compact_before(c.cut, "$audit")), ValidationError);
  EXPECT_EQ(query_rows(url(), kEventsSql), events_before);
}

// ------------------------------------------------------------------------------------------
// Projections.

TEST_F(RetentionTest, AProjectionThatReadPartOfTheEventsMakesTheStreamSkipped) {
  const Calendar c = write_calendar(store());
  catch_up(store());
  // preference_value_counts is put back to alice's third event: it has read part of them.
  exec_sql(url(),
           "UPDATE prefstore.projection_checkpoints c SET last_transaction_id = e.transaction_id, "
           "last_position = e.global_position FROM prefstore.events e WHERE e.stream_id = "
           "'alice' AND e.stream_version = 3 AND c.projection_name = 'preference_value_counts'");
  const auto alice_before = store().history("alice");

  std::vector<storage::CompactedStream> reported;
  CompactOptions options = compact_before(c.cut);
  options.on_stream = [&](const storage::CompactedStream& s) { reported.push_back(s); };
  const CompactReport report = store().compact(options);
  EXPECT_EQ(report.streams_compacted, 1);  // bob: the projection has read none of his events
  EXPECT_EQ(report.streams_skipped, 1);
  ASSERT_EQ(report.skipped.size(), 1U);
  EXPECT_EQ(report.skipped[0].stream_id, "alice");
  EXPECT_FALSE(report.skipped[0].compacted);
  EXPECT_TRUE(contains(report.skipped[0].skipped_reason,
                       "projection preference_value_counts (at position " +
                           std::to_string(alice_before[2].global_position) +
                           ") has read only part of versions 1 to 8"))
      << report.skipped[0].skipped_reason;
  EXPECT_TRUE(contains(report.skipped[0].skipped_reason, "prefstore projections catch-up"));
  ASSERT_EQ(reported.size(), 2U);
  EXPECT_EQ(reported[0].stream_id, "alice");
  EXPECT_FALSE(reported[0].compacted);
  EXPECT_EQ(store().history("alice"), alice_before);

  // Caught up, alice is compacted, and the counts still agree with the current state.
  catch_up(store());
  const CompactReport again = store().compact(options);
  EXPECT_EQ(again.streams_compacted, 1);
  EXPECT_EQ(again.streams_skipped, 0);
  EXPECT_EQ(store().history("alice").front().stream_version, 8);
  catch_up(store());
  EXPECT_EQ(query_rows(url(), kValueCountsSql), query_rows(url(), kCountsFromCurrentSql));
}

TEST_F(RetentionTest, AProjectionThatReadNoneOfTheEventsReadsTheBaselineInstead) {
  const Calendar c = write_calendar(store());  // no projection has run: no checkpoints
  const CompactReport report = store().compact(compact_before(c.cut));
  EXPECT_EQ(report.streams_compacted, 2);
  catch_up(store());
  EXPECT_EQ(query_rows(url(), kValueCountsSql), query_rows(url(), kCountsFromCurrentSql));
  EXPECT_EQ(query_rows(url(), kValueHoldersSql), query_rows(url(), kCurrentValuesSql));
}

// ------------------------------------------------------------------------------------------
// Backups, a second compaction, dry runs.

TEST_F(RetentionTest, ACompactedStoreRoundTripsThroughABackup) {
  const Calendar c = write_calendar(store());
  (void)store().compact(compact_before(c.cut));
  std::map<std::string, Observed> source;
  for (const auto& user : kUsers) source[user] = observe(store(), user);
  const fs::path dir = prefstore::testing::make_temp_dir("prefstore-retention-test");
  const fs::path file = dir / "prefs.psb";
  const auto summary = store().backup(file);
  EXPECT_EQ(summary.trailer.event_count, std::stoll(query_value(url(),
                                                                "SELECT count(*) FROM "
                                                                "prefstore.events")));

  ScratchDatabase target;
  Store restored(options_for(target.url(), kOwner));
  const auto result = restored.restore_backup(file);
  EXPECT_EQ(result.events, summary.trailer.event_count);
  fs::remove_all(dir);

  // Transaction ids are the restore's own (pitfall 9); everything else is as it was.
  for (const char* sql : {kEventsWithoutTransactionSql, kCurrentSql, kStreamRowsSql}) {
    EXPECT_EQ(query_rows(target.url(), sql), query_rows(url(), sql)) << sql;
  }
  for (const auto& user : kUsers) {
    const std::int64_t first = restored.history(user).front().stream_version;
    expect_same_from(restored, user, source[user], first);
  }
  EXPECT_EQ(refusal(restored, "alice", AsOf::at_version(7)),
            refusal(store(), "alice", AsOf::at_version(7)));
  EXPECT_NE(refusal(restored, "alice", AsOf::at_version(7)), "");
  EXPECT_TRUE(storage::verify_store(restored.pool()).clean());
  // New writes continue the chain on the copy.
  EXPECT_EQ(
      restored.set("alice", "calendar.time_zone", str("Europe/Paris"), by("alice")).stream_version,
      12);
}

TEST_F(RetentionTest, ASecondCompactionFoldsTheBaselineIntoANewOne) {
  const Calendar c = write_calendar(store());
  (void)store().compact(compact_before(c.cut));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto marker = store().set("erin", "calendar.time_zone", str("UTC"), by("erin"));
  const Timestamp cut2 = marker.recorded_at;  // after every event so far but erin's
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  (void)store().set("alice", "calendar.time_zone", str("Europe/Madrid"), by("alice@example.com"));
  std::map<std::string, Observed> before;
  for (const auto& user : kUsers) before[user] = observe(store(), user);

  std::vector<storage::CompactedStream> reported;
  CompactOptions options = compact_before(cut2);
  options.on_stream = [&](const storage::CompactedStream& s) { reported.push_back(s); };
  const CompactReport report = store().compact(options);
  ASSERT_EQ(reported.size(), 3U);  // alice, bob, carol; dave and erin have one event
  EXPECT_EQ(reported[0].stream_id, "alice");
  EXPECT_EQ(reported[0].first_version, 8);
  EXPECT_EQ(reported[0].up_to_version, 11);
  EXPECT_EQ(reported[0].events, 4);
  EXPECT_EQ(reported[1].stream_id, "bob");
  EXPECT_EQ(reported[1].first_version, 2);
  EXPECT_EQ(reported[1].up_to_version, 3);
  EXPECT_EQ(reported[2].stream_id, "carol");
  EXPECT_EQ(reported[2].events, 2);
  EXPECT_EQ(report.events_removed, 4 + 2 + 2);

  const auto alice = store().history("alice");
  ASSERT_EQ(alice.size(), 2U);  // the new baseline and version 12
  const auto& baseline = std::get<PreferencesBaseline>(alice[0].data);
  EXPECT_EQ(alice[0].stream_version, 11);
  EXPECT_EQ(baseline.compacted_events, 4);
  expect_same_from(store(), "alice", before["alice"], 11);
  expect_same_from(store(), "bob", before["bob"], 3);
  expect_same_from(store(), "carol", before["carol"], 2);
  EXPECT_TRUE(contains(refusal(store(), "alice", AsOf::at_version(9)),
                       "history of alice before version 11 ("));
  const auto records = compaction_records(store());
  ASSERT_EQ(records.size(), 5U);
  EXPECT_EQ(records[2].second.stream_id, "alice");
  EXPECT_EQ(records[2].second.up_to_version, 11);
  EXPECT_EQ(records[2].second.events, 4);
  EXPECT_EQ(records[2].second.older_than, cut2);
  EXPECT_TRUE(storage::verify_store(store().pool()).clean());
  // Nothing more to do: a third run with the same cut-off compacts nothing.
  EXPECT_EQ(store().compact(compact_before(cut2)).streams_compacted, 0);
}

TEST_F(RetentionTest, ADryRunWritesNothingAndPlansWhatTheRunDoes) {
  const Calendar c = write_calendar(store());
  catch_up(store());
  save_snapshot_at(store(), "alice", 3);
  const auto tables = [&] {
    Rows all;
    for (const char* sql : {kEventsSql, kCurrentSql, kSnapshotsSql, kStreamsSql}) {
      const Rows rows = query_rows(url(), sql);
      all.insert(all.end(), rows.begin(), rows.end());
    }
    return all;
  };
  const Rows before = tables();
  CompactOptions dry = compact_before(c.cut);
  dry.dry_run = true;
  std::vector<storage::CompactedStream> planned;
  dry.on_stream = [&](const storage::CompactedStream& s) { planned.push_back(s); };
  const CompactReport plan = store().compact(dry);
  EXPECT_TRUE(plan.dry_run);
  EXPECT_EQ(tables(), before);

  std::vector<storage::CompactedStream> done;
  CompactOptions run = compact_before(c.cut);
  run.on_stream = [&](const storage::CompactedStream& s) { done.push_back(s); };
  const CompactReport report = store().compact(run);
  EXPECT_EQ(plan.streams_compacted, report.streams_compacted);
  EXPECT_EQ(plan.events_removed, report.events_removed);
  ASSERT_EQ(planned.size(), done.size());
  for (std::size_t k = 0; k < planned.size(); ++k) {
    EXPECT_EQ(planned[k].stream_id, done[k].stream_id);
    EXPECT_EQ(planned[k].up_to_version, done[k].up_to_version);
    EXPECT_EQ(planned[k].preferences, done[k].preferences);
    EXPECT_EQ(planned[k].chain_head, done[k].chain_head);
    EXPECT_EQ(planned[k].audit_position, 0);
  }
}

// ------------------------------------------------------------------------------------------
// The command line.

TEST_F(RetentionTest, TheCliCompactsReportsAndRefuses) {
  const Calendar c = write_calendar(store());
  const std::map<std::string, std::string> env{{"PREFSTORE_DATABASE_URL", url()}};
  const std::string cut = format_timestamp(c.cut);
  const std::string common = " --before " + cut + " --reason 'retention policy' --actor ops";

  auto r = run_cli("compact" + common + " --dry-run", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "alice: would compact versions 1-8 (8 events, the last recorded "))
      << r.output;
  EXPECT_TRUE(contains(r.output, "bob: would compact versions 1-2 (2 events")) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "would compact 2 of 4 user streams examined (10 events recorded "
                       "before " +
                           cut + " would go), 0 skipped; nothing was written"))
      << r.output;
  EXPECT_EQ(store().history("alice").size(), 11U);

  // Without prefstore_owner it stops before any stream.
  r = run_cli("compact" + common,
              {{"PREFSTORE_DATABASE_URL", url()}, {"PREFSTORE_ROLE", "prefstore_writer"}});
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "may not execute prefstore.compact_stream()")) << r.output;

  r = run_cli("compact" + common + " --user alice", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "alice: compacted versions 1-8 (8 events, the last recorded "))
      << r.output;
  EXPECT_TRUE(contains(r.output, "into a baseline of 3 preferences, chain head ")) << r.output;
  EXPECT_TRUE(contains(r.output,
                       " of $audit\ncompacted 1 of 1 user streams examined (8 events "
                       "recorded before " +
                           cut + " removed), 0 skipped\n"))
      << r.output;

  r = run_cli("get alice --as-of version:3", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "history of alice before version 8 (")) << r.output;
  r = run_cli("get alice calendar.time_zone --as-of version:8", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Europe/London")) << r.output;

  // A lagging projection: exit 4, the stream named on stdout.
  catch_up(store());
  exec_sql(url(),
           "UPDATE prefstore.projection_checkpoints c SET last_transaction_id = e.transaction_id, "
           "last_position = e.global_position FROM prefstore.events e WHERE e.stream_id = 'bob' "
           "AND e.stream_version = 1 AND c.projection_name = 'preference_value_counts'");
  r = run_cli("compact" + common, env);
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "bob: skipped: projection preference_value_counts")) << r.output;

  // Nothing that old; and the refusals of the command line itself.
  r = run_cli("compact --older-than 36500 --reason 'retention policy'", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "compacted 0 of 4 user streams examined")) << r.output;
  EXPECT_EQ(run_cli("compact --before " + cut, env).exit_code, 2);  // no --reason
  EXPECT_EQ(run_cli("compact --reason r", env).exit_code, 2);       // no cut-off
  EXPECT_EQ(run_cli("compact --older-than 3 --before " + cut + " --reason r", env).exit_code, 2);
  EXPECT_EQ(run_cli("compact --before yesterday --reason r", env).exit_code, 2);
  EXPECT_EQ(run_cli("compact --older-than 3 --reason ' '", env).exit_code, 3);
}

// ------------------------------------------------------------------------------------------
// RetentionModel: random histories, random cut-offs, repeated compactions.

using Change = std::pair<std::string, std::optional<Value>>;
using ModelState = std::map<std::string, Value>;

const std::vector<std::string> kKeys = {"calendar.time_zone", "calendar.working_hours.start",
                                        "calendar.default_meeting_minutes",
                                        "reminders.default_minutes", "notifications.channels"};

struct RetentionModel {
  std::vector<std::vector<Change>> events;  // every event of the user's history, version order
  std::vector<std::size_t> write_ends;      // events.size() after each write
  std::int64_t baseline = 0;                // version of the newest baseline (0: none)

  // The state at version v (the fold of the first v events).
  [[nodiscard]] ModelState at(std::int64_t v) const {
    ModelState state;
    for (std::int64_t k = 0; k < v && k < static_cast<std::int64_t>(events.size()); ++k) {
      for (const auto& [key, value] : events[static_cast<std::size_t>(k)]) {
        if (value) {
          state[key] = normalized(*value);
        } else {
          state.erase(key);
        }
      }
    }
    return state;
  }
  [[nodiscard]] std::int64_t version() const { return static_cast<std::int64_t>(events.size()); }
  void add_write(std::vector<std::vector<Change>> write) {
    for (auto& e : write) events.push_back(std::move(e));
    write_ends.push_back(events.size());
  }
};

// The values a user set (not the defaults), in render_values' form.
std::string render_values(const std::map<std::string, ResolvedPreference>& all) {
  std::string out;
  for (const auto& [key, r] : all) {
    if (!r.is_default) out += value_line(key, r.value);
  }
  return out;
}

std::string render_values(const ModelState& state) {
  std::string out;
  for (const auto& [key, value] : state) out += value_line(key, value);
  return out;
}

struct ModelDatabase {
  std::string url;
  std::unique_ptr<Store> store;
};

ModelDatabase& model_database() {
  // Never destroyed: the cluster is shut down at the end of the program, before statics die.
  static ModelDatabase* d = [] {
    auto* out = new ModelDatabase;
    out->url = prefstore::testing::TestCluster::instance().fresh_database();
    out->store = std::make_unique<Store>(options_for(out->url, kOwner, false));
    return out;
  }();
  return *d;
}

struct RetentionSut {
  Store* store = nullptr;
  std::string user;
  // Position and time of every version, recorded while the events were there.
  std::vector<std::pair<std::int64_t, Timestamp>> moments;

  RetentionSut() {
    static std::atomic<int> runs{0};
    store = model_database().store.get();
    user = "u" + std::to_string(runs.fetch_add(1));
  }

  // Records the moments of the events a write appended; writes are strictly ordered in time.
  void record(const storage::AppendResult& r) {
    if (!moments.empty()) RC_ASSERT(r.recorded_at > moments.back().second);
    for (const RecordedEvent& e :
         store->history(user, 1000, static_cast<std::int64_t>(moments.size()))) {
      moments.emplace_back(e.global_position, e.recorded_at);
    }
    RC_ASSERT(static_cast<std::int64_t>(moments.size()) == r.stream_version);
  }
};

using RetentionCommand = rc::state::Command<RetentionModel, RetentionSut>;

rc::Gen<Value> calendar_value() {
  return rc::gen::oneOf(
      rc::gen::map(rc::gen::element<std::string>("UTC", "Europe/London", "Asia/Tokyo", "08:30"),
                   [](std::string v) { return Value(std::move(v)); }),
      rc::gen::map(rc::gen::element<std::int64_t>(5, 15, 30, 45),
                   [](std::int64_t v) { return Value(v); }),
      rc::gen::map(rc::gen::element(StringList{}, StringList{"email"}, StringList{"push", "sms"}),
                   [](StringList l) { return Value(std::move(l)); }));
}

// After a compaction: the state now, and as of every event's version, position and time, equal
// the model's fold when the moment includes the newest baseline; before it they are refused.
void check_history(const RetentionModel& m, RetentionSut& sut) {
  Store& store = *sut.store;
  RC_ASSERT(render_values(store.get_all(sut.user)) == render_values(m.at(m.version())));
  RC_ASSERT(store.version(sut.user) == m.version());
  const std::int64_t b = m.baseline;
  for (std::int64_t v = 1; v <= m.version(); ++v) {
    const auto& [position, time] = sut.moments[static_cast<std::size_t>(v - 1)];
    // As of time t: every event recorded at or before t (a write's events share their time).
    std::int64_t by_time = v;
    while (by_time < m.version() && sut.moments[static_cast<std::size_t>(by_time)].second <= time) {
      ++by_time;
    }
    const std::pair<AsOf, std::int64_t> moments[] = {
        {AsOf::at_version(v), v}, {AsOf::at_position(position), v}, {AsOf::at_time(time), by_time}};
    for (const auto& [as_of, expected_version] : moments) {
      if (b > 0 && expected_version < b) {
        bool refused = false;
        try {
          (void)store.state_as_of(sut.user, as_of);
        } catch (const ValidationError& e) {
          refused = std::string(e.what()).find("was compacted by retention") != std::string::npos;
        }
        RC_ASSERT(refused);
      } else {
        const auto got = store.state_as_of(sut.user, as_of);
        RC_ASSERT(got.version == expected_version);
        RC_ASSERT(render_values(got.state) == render_values(m.at(expected_version)));
      }
    }
  }
  const auto history = store.history(sut.user);
  RC_ASSERT(!history.empty() || m.version() == 0);
  if (!history.empty()) {
    RC_ASSERT(history.front().stream_version == std::max<std::int64_t>(b, 1));
    RC_ASSERT(std::holds_alternative<PreferencesBaseline>(history.front().data) == (b > 0));
  }
}

struct Set : RetentionCommand {
  std::string key;
  Value value;
  explicit Set(const RetentionModel&) : key(*rc::gen::elementOf(kKeys)), value(*calendar_value()) {}
  void apply(RetentionModel& m) const override { m.add_write({{{key, value}}}); }
  void run(const RetentionModel&, RetentionSut& sut) const override {
    sut.record(sut.store->set(sut.user, key, value, by("alice@example.com")));
  }
  void show(std::ostream& os) const override {
    os << "Set(" << key << ", " << render(value) << ")";
  }
};

struct SetMany : RetentionCommand {
  std::vector<std::pair<std::string, Value>> values;
  explicit SetMany(const RetentionModel&) {
    const auto keys =
        *rc::gen::nonEmpty(rc::gen::unique<std::vector<std::string>>(rc::gen::elementOf(kKeys)));
    for (const auto& k : keys) values.emplace_back(k, *calendar_value());
  }
  void apply(RetentionModel& m) const override {
    std::vector<std::vector<Change>> write;
    for (const auto& [k, v] : values) write.push_back({{k, v}});
    m.add_write(std::move(write));
  }
  void run(const RetentionModel&, RetentionSut& sut) const override {
    sut.record(sut.store->set_many(sut.user, values, by("calendar-sync")));
  }
  void show(std::ostream& os) const override {
    os << "SetMany(";
    for (const auto& [k, v] : values) os << " " << k << "=" << render(v);
    os << " )";
  }
};

struct Reset : RetentionCommand {
  std::string key;
  explicit Reset(const RetentionModel&) : key(*rc::gen::elementOf(kKeys)) {}
  void apply(RetentionModel& m) const override { m.add_write({{{key, std::nullopt}}}); }
  void run(const RetentionModel&, RetentionSut& sut) const override {
    sut.record(sut.store->reset(sut.user, key, by("support@example.com")));
  }
  void show(std::ostream& os) const override { os << "Reset(" << key << ")"; }
};

// A point-in-time restore to a version: refused before the baseline, else one event with the
// keys that differ (none when nothing does).
struct Restore : RetentionCommand {
  std::int64_t to;
  explicit Restore(const RetentionModel& m)
      : to(*rc::gen::inRange<std::int64_t>(1, std::max<std::int64_t>(m.version(), 1) + 1)) {}
  void checkPreconditions(const RetentionModel& m) const override { RC_PRE(to <= m.version()); }
  [[nodiscard]] bool refused(const RetentionModel& m) const { return to < m.baseline; }
  [[nodiscard]] std::vector<Change> changes(const RetentionModel& m) const {
    const ModelState now = m.at(m.version());
    const ModelState then = m.at(to);
    std::vector<Change> out;
    for (const std::string& key : kKeys) {
      const auto a = now.find(key);
      const auto b = then.find(key);
      if (b != then.end()) {
        if (a == now.end() || render(a->second) != render(b->second))
          out.emplace_back(key, b->second);
      } else if (a != now.end()) {
        out.emplace_back(key, std::nullopt);
      }
    }
    std::sort(out.begin(), out.end(),
              [](const Change& x, const Change& y) { return x.first < y.first; });
    return out;
  }
  void apply(RetentionModel& m) const override {
    if (refused(m)) return;
    auto c = changes(m);
    if (!c.empty()) m.add_write({std::move(c)});
  }
  void run(const RetentionModel& m0, RetentionSut& sut) const override {
    RestoreOptions options;
    options.metadata = by("support@example.com");
    if (refused(m0)) {
      RC_ASSERT_THROWS_AS(sut.store->restore(sut.user, AsOf::at_version(to), options),
                          ValidationError);
      RC_ASSERT(sut.store->version(sut.user) == m0.version());
      return;
    }
    const RestorePlan plan = sut.store->restore(sut.user, AsOf::at_version(to), options);
    RC_ASSERT(plan.appended.has_value() == !changes(m0).empty());
    if (plan.appended) sut.record(*plan.appended);
  }
  void show(std::ostream& os) const override { os << "Restore(to version " << to << ")"; }
};

// Compacts with the cut-off just after write `after` (0: before the first write).
struct Compact : RetentionCommand {
  std::size_t after;
  explicit Compact(const RetentionModel& m)
      : after(*rc::gen::inRange<std::size_t>(0, m.write_ends.size() + 1)) {}
  void checkPreconditions(const RetentionModel& m) const override {
    RC_PRE(!m.write_ends.empty());
    RC_PRE(after <= m.write_ends.size());
  }
  // The version of the last event older than the cut-off, and whether it makes a new baseline.
  [[nodiscard]] std::int64_t up_to(const RetentionModel& m) const {
    return after == 0 ? 0 : static_cast<std::int64_t>(m.write_ends[after - 1]);
  }
  [[nodiscard]] bool compacts(const RetentionModel& m) const {
    return up_to(m) > std::max<std::int64_t>(m.baseline, 1);
  }
  void apply(RetentionModel& m) const override {
    if (compacts(m)) m.baseline = up_to(m);
  }
  void run(const RetentionModel& m0, RetentionSut& sut) const override {
    const Timestamp cut = after == 0 ? sut.moments.front().second
                                     : sut.moments[static_cast<std::size_t>(up_to(m0) - 1)].second +
                                           std::chrono::microseconds(1);
    CompactOptions options = compact_before(cut, sut.user);
    const CompactReport report = sut.store->compact(options);
    RC_ASSERT(report.streams_examined == 1);
    RC_ASSERT(report.streams_skipped == 0);
    RC_ASSERT(report.streams_compacted == (compacts(m0) ? 1 : 0));
    if (compacts(m0)) {
      RC_ASSERT(report.events_removed == up_to(m0) - std::max<std::int64_t>(m0.baseline, 1) + 1);
    }
    check_history(nextState(m0), sut);
  }
  void show(std::ostream& os) const override { os << "Compact(after write " << after << ")"; }
};

TEST(RetentionModel, StateNowAndFromTheBaselineOnAgreeWithTheModelAndEarlierMomentsAreRefused) {
  (void)model_database();
  check_property(
      [] {
        RetentionModel model;
        RetentionSut sut;
        rc::state::check(model, sut,
                         rc::state::gen::execOneOfWithArgs<Set, Set, SetMany, Reset, Restore,
                                                           Compact, Compact>());
      },
      30, 30);
}

}  // namespace
}  // namespace prefstore
