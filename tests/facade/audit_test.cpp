// Audit queries (Store::audit, `prefstore history`, the prefstore.audit_log view): every filter
// alone and combined against a model computed from the events written, both orders, pages that
// concatenate to the whole result, cursors refused with other filters, a rapidcheck property over
// random filter combinations, pages that neither repeat nor skip while writers append, a late
// commit that a plain position keyset would skip, every query shape served by an index on a log
// of 20,000 events, and the CLI's three formats.
//
// cereal's JSON archive configures rapidjson (assertions that throw): it comes first, in a
// block of its own, which clang-format does not reorder (tests/json_include_check.sh).
#include <cereal/archives/json.hpp>

#include <rapidjson/document.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "cli_runner.hpp"
#include "prefstore/audit.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

using prefstore::testing::ScratchDatabase;

// --- the calendar assistant's world -----------------------------------------------------------

const std::vector<std::string> kUsers = {"alice", "bob", "carol", "dave"};
const std::vector<std::string> kKeys = {"calendar.working_hours.start", "calendar.time_zone",
                                        "calendar.default_meeting_minutes",
                                        "reminders.default_minutes", "notifications.channels"};
const std::vector<std::string> kSources = {"settings-web", "calendar-sync", "mobile-app"};
const std::vector<std::string> kTypes = {"PreferenceSet", "PreferenceReset", "PreferenceDefined",
                                         "PreferenceDeprecated", "PreferencesRestored"};
const Metadata kAdmin{"user:grace", "prefstore-admin", "calendar launch", "", ""};

std::unique_ptr<Store> open_store(const std::string& url, bool strict = true,
                                  std::size_t pool = 8) {
  StoreOptions o;
  o.database_url = url;
  o.strict = strict;
  o.pool.max_size = pool;
  return std::make_unique<Store>(o);
}

PreferenceDefinition definition(std::string key, ValueType type, Value default_value,
                                std::string description) {
  PreferenceDefinition d;
  d.key = std::move(key);
  d.type = type;
  d.default_value = std::move(default_value);
  d.description = std::move(description);
  return d;
}

void define_keys(Store& store) {
  auto start = definition("calendar.working_hours.start", ValueType::string, std::string("09:00"),
                          "Start of the working day (HH:MM)");
  start.constraints.pattern = "([01][0-9]|2[0-3]):[0-5][0-9]";
  auto zone =
      definition("calendar.time_zone", ValueType::string, std::string("UTC"), "IANA time zone");
  auto minutes = definition("calendar.default_meeting_minutes", ValueType::integer,
                            std::int64_t{30}, "Length of a new meeting");
  minutes.constraints.min = 5;
  minutes.constraints.max = 480;
  auto reminders = definition("reminders.default_minutes", ValueType::integer, std::int64_t{10},
                              "Reminder before a meeting");
  reminders.constraints.min = 0;
  reminders.constraints.max = 120;
  auto channels = definition("notifications.channels", ValueType::string_list, StringList{"email"},
                             "Where reminders go");
  channels.constraints.allowed_values =
      std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
  for (const auto& d : {start, zone, minutes, reminders, channels}) (void)store.define(d, kAdmin);
}

Value value_for(const std::string& key, int i) {
  static const std::vector<std::string> zones = {"Europe/London", "Asia/Tokyo", "UTC",
                                                 "America/Lima"};
  if (key == "calendar.working_hours.start") return std::string(i % 2 ? "08:00" : "09:30");
  if (key == "calendar.time_zone") return zones[static_cast<std::size_t>(i) % 4];
  if (key == "calendar.default_meeting_minutes") return std::int64_t{15 * (1 + i % 4)};
  if (key == "reminders.default_minutes") return std::int64_t{5 * (1 + i % 3)};
  return StringList{i % 2 ? "email" : "push"};
}

// The world of most tests: definitions, then ~100 changes by four users through three services,
// resets, a set_many, two restores and a deprecation. Reasons hold commas, quotes and a newline.
void write_world(Store& store) {
  define_keys(store);
  for (int i = 0; i < 96; ++i) {
    const std::string& user = kUsers[static_cast<std::size_t>(i) % 4];
    const std::string& key = kKeys[static_cast<std::size_t>(i * 3 + i / 4) % 5];
    Metadata m;
    m.actor = i % 5 == 0 ? "calendar-sync@system" : i % 7 == 0 ? "support:grace" : "user:" + user;
    m.source = kSources[static_cast<std::size_t>(i / 2) % 3];
    m.correlation_id = i % 6 == 0 ? "req-" + std::to_string(i / 6) : "";
    m.reason = i % 8 == 0 ? "moved, \"finally\"\nto Lima" : "settings page";
    if (i % 9 == 4) {
      (void)store.reset(user, key, m);
    } else {
      (void)store.set(user, key, value_for(key, i), m);
    }
  }
  (void)store.set_many("carol",
                       {{"calendar.time_zone", std::string("Asia/Tokyo")},
                        {"reminders.default_minutes", std::int64_t{15}}},
                       {"user:carol", "mobile-app", "trip", "req-batch", ""});
  RestoreOptions restore;
  restore.metadata = {"support:grace", "prefstore-cli", "ticket, 4711", "req-restore", ""};
  if (!store.restore("alice", AsOf::at_version(3), restore).appended) {
    throw std::logic_error("the world's restore of alice changed nothing");
  }
  restore.keys = std::set<std::string>{"notifications.channels", "calendar.time_zone"};
  if (!store.restore("bob", AsOf::at_version(2), restore).appended) {
    throw std::logic_error("the world's restore of bob changed nothing");
  }
  (void)store.deprecate("reminders.default_minutes", "use calendar.reminders", kAdmin);
}

// Every event of the world, read stream by stream (not by the audit query), by position.
std::vector<RecordedEvent> whole_log(Store& store) {
  std::vector<RecordedEvent> all;
  std::vector<std::string> streams = kUsers;
  for (const auto& k : kKeys) streams.push_back(definition_stream_id(k));
  for (const auto& s : streams) {
    const auto h = store.history(s, 1000000);
    all.insert(all.end(), h.begin(), h.end());
  }
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a.global_position < b.global_position; });
  return all;
}

// --- the model --------------------------------------------------------------------------------

// The keys an event is about, worked out here rather than by the library.
std::vector<std::string> model_keys(const EventData& data) {
  if (const auto* s = std::get_if<PreferenceSet>(&data)) return {s->key};
  if (const auto* r = std::get_if<PreferenceReset>(&data)) return {r->key};
  if (const auto* d = std::get_if<PreferenceDefined>(&data)) return {d->definition.key};
  if (const auto* d = std::get_if<PreferenceDeprecated>(&data)) return {d->key};
  std::vector<std::string> keys;
  if (const auto* r = std::get_if<PreferencesRestored>(&data)) {
    for (const auto& c : r->changes) keys.push_back(c.key);
  }
  return keys;
}

bool matches(const RecordedEvent& e, const AuditQuery& q) {
  const auto keys = model_keys(e.data);
  const auto has = [&keys](const auto& pred) {
    return std::any_of(keys.begin(), keys.end(), pred);
  };
  if (q.user && e.stream_id != *q.user) return false;
  if (q.key && !has([&](const std::string& k) { return k == *q.key; })) return false;
  if (q.key_prefix && !has([&](const std::string& k) { return k.rfind(*q.key_prefix, 0) == 0; })) {
    return false;
  }
  if (q.actor && e.metadata.actor != *q.actor) return false;
  if (q.source && e.metadata.source != *q.source) return false;
  if (q.correlation_id && e.metadata.correlation_id != *q.correlation_id) return false;
  if (q.event_type && event_type_name(e.data) != *q.event_type) return false;
  if (q.from_time && e.recorded_at < *q.from_time) return false;
  if (q.to_time && e.recorded_at > *q.to_time) return false;
  if (q.from_position && e.global_position < *q.from_position) return false;
  if (q.to_position && e.global_position > *q.to_position) return false;
  return true;
}

std::vector<std::int64_t> expected(const std::vector<RecordedEvent>& log, const AuditQuery& q) {
  std::vector<std::int64_t> out;
  for (const auto& e : log) {
    if (matches(e, q)) out.push_back(e.global_position);
  }
  if (q.order == AuditOrder::newest_first) std::reverse(out.begin(), out.end());
  return out;
}

struct Walk {
  std::vector<RecordedEvent> events;
  std::vector<std::int64_t> positions;
  std::vector<std::size_t> page_sizes;
  std::optional<std::string> resume_cursor;
};

// Every page of q, following next_cursor.
Walk walk(Store& store, AuditQuery q) {
  Walk w;
  for (int pages = 0; pages < 100000; ++pages) {
    const AuditPage page = store.audit(q);
    w.page_sizes.push_back(page.events.size());
    for (const auto& e : page.events) {
      w.events.push_back(e);
      w.positions.push_back(e.global_position);
    }
    w.resume_cursor = page.resume_cursor;
    if (!page.next_cursor) break;
    q.cursor = page.next_cursor;
  }
  return w;
}

std::string show(const AuditQuery& q) {
  std::ostringstream out;
  const auto field = [&out](const char* name, const auto& v) {
    if (v) out << name << "=" << *v << " ";
  };
  field("user", q.user);
  field("key", q.key);
  field("key_prefix", q.key_prefix);
  field("actor", q.actor);
  field("source", q.source);
  field("event_type", q.event_type);
  field("correlation_id", q.correlation_id);
  if (q.from_time) out << "from_time=" << format_timestamp(*q.from_time) << " ";
  if (q.to_time) out << "to_time=" << format_timestamp(*q.to_time) << " ";
  field("from_position", q.from_position);
  field("to_position", q.to_position);
  out << (q.order == AuditOrder::newest_first ? "newest" : "oldest") << " limit=" << q.limit;
  return out.str();
}

// --- the world, written once for the tests that only read it -----------------------------------

class AuditTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    s_db = new ScratchDatabase();
    s_store = open_store(s_db->url()).release();
    write_world(*s_store);
    s_log = new std::vector<RecordedEvent>(whole_log(*s_store));
  }
  static void TearDownTestSuite() {
    delete s_log;
    delete s_store;
    delete s_db;
  }
  // Checks that q, walked page by page, gives exactly the model's events in order.
  static void expect_model(AuditQuery q) {
    const auto want = expected(*s_log, q);
    const Walk got = walk(*s_store, q);
    EXPECT_EQ(got.positions, want) << show(q);
    for (std::size_t i = 0; i + 1 < got.page_sizes.size(); ++i) {
      EXPECT_EQ(static_cast<std::int64_t>(got.page_sizes[i]), q.limit) << show(q);
    }
  }
  static const RecordedEvent& nth(std::size_t i) { return (*s_log)[i]; }

  static ScratchDatabase* s_db;
  static Store* s_store;
  static std::vector<RecordedEvent>* s_log;
};
ScratchDatabase* AuditTest::s_db = nullptr;
Store* AuditTest::s_store = nullptr;
std::vector<RecordedEvent>* AuditTest::s_log = nullptr;

TEST_F(AuditTest, TheWorldHasEveryKindOfEvent) {
  std::set<std::string> types;
  for (const auto& e : *s_log) types.insert(event_type_name(e.data));
  EXPECT_EQ(types, std::set<std::string>(kTypes.begin(), kTypes.end()));
  EXPECT_GT(s_log->size(), 100u);
}

TEST_F(AuditTest, NoFilterReturnsTheWholeLogInBothOrders) {
  for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
    AuditQuery q;
    q.order = order;
    q.limit = 10000;
    expect_model(q);
  }
}

TEST_F(AuditTest, EachFilterAloneMatchesTheModel) {
  std::vector<AuditQuery> queries;
  const auto add = [&queries](auto set) {
    AuditQuery q;
    set(q);
    queries.push_back(q);
  };
  for (const auto& u : kUsers) add([&](AuditQuery& q) { q.user = u; });
  add([](AuditQuery& q) { q.user = "$def:calendar.time_zone"; });
  add([](AuditQuery& q) { q.user = "nobody"; });
  for (const auto& k : kKeys) add([&](AuditQuery& q) { q.key = k; });
  for (const char* p : {"calendar.", "calendar.working", "c", "reminders.", "notifications",
                        "notifications.channels", "zebra"}) {
    add([&](AuditQuery& q) { q.key_prefix = p; });
  }
  for (const char* a :
       {"user:alice", "calendar-sync@system", "support:grace", "user:grace", "user:nobody"}) {
    add([&](AuditQuery& q) { q.actor = a; });
  }
  for (const char* s :
       {"settings-web", "calendar-sync", "mobile-app", "prefstore-admin", "prefstore-cli", "fax"}) {
    add([&](AuditQuery& q) { q.source = s; });
  }
  for (const auto& t : kTypes) add([&](AuditQuery& q) { q.event_type = t; });
  for (const char* c : {"req-0", "req-3", "req-batch", "req-restore", "req-none"}) {
    add([&](AuditQuery& q) { q.correlation_id = c; });
  }
  const std::size_t n = s_log->size();
  add([&](AuditQuery& q) { q.from_time = nth(n / 3).recorded_at; });
  add([&](AuditQuery& q) { q.to_time = nth(n / 3).recorded_at; });
  add([&](AuditQuery& q) {
    q.from_time = nth(n / 4).recorded_at;
    q.to_time = nth(n / 2).recorded_at;
  });
  add([&](AuditQuery& q) { q.from_position = nth(n / 2).global_position; });
  add([&](AuditQuery& q) { q.to_position = nth(n / 2).global_position; });
  add([&](AuditQuery& q) {
    q.from_position = nth(10).global_position;
    q.to_position = nth(20).global_position;
  });
  for (auto q : queries) {
    for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
      q.order = order;
      q.limit = 1000;
      expect_model(q);
      q.limit = 4;
      expect_model(q);
    }
  }
}

TEST_F(AuditTest, FiltersCombineAsAnd) {
  std::vector<AuditQuery> queries(6);
  queries[0].user = "alice";
  queries[0].key = "calendar.time_zone";
  queries[1].user = "carol";
  queries[1].key_prefix = "calendar.";
  queries[1].source = "mobile-app";
  queries[2].actor = "calendar-sync@system";
  queries[2].event_type = "PreferenceReset";
  queries[3].source = "settings-web";
  queries[3].from_time = nth(s_log->size() / 2).recorded_at;
  queries[3].key = "calendar.working_hours.start";
  queries[4].correlation_id = "req-restore";
  queries[4].key = "notifications.channels";
  queries[4].event_type = "PreferencesRestored";
  queries[5].key_prefix = "calendar";
  queries[5].to_time = nth(s_log->size() / 2).recorded_at;
  queries[5].from_position = nth(5).global_position;
  for (auto q : queries) {
    for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
      q.order = order;
      for (const std::int64_t limit : {1, 3, 1000}) {
        q.limit = limit;
        expect_model(q);
      }
    }
  }
}

TEST_F(AuditTest, RestoresAreFoundByEveryKeyTheyRestored) {
  AuditQuery q;
  q.event_type = "PreferencesRestored";
  const auto restores = walk(*s_store, q).events;
  ASSERT_EQ(restores.size(), 2u);
  for (const auto& r : restores) {
    const auto keys = model_keys(r.data);
    ASSERT_FALSE(keys.empty());
    EXPECT_EQ(audit_event_keys(r.data), keys);
    for (const auto& k : keys) {
      AuditQuery by_key;
      by_key.key = k;
      const auto found = walk(*s_store, by_key).positions;
      EXPECT_NE(std::find(found.begin(), found.end(), r.global_position), found.end()) << k;
    }
  }
}

TEST_F(AuditTest, PagesConcatenateToTheWholeResultWithoutDuplicates) {
  for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
    AuditQuery all;
    all.order = order;
    all.limit = 10000;
    const auto whole = walk(*s_store, all).positions;
    ASSERT_EQ(whole.size(), s_log->size());
    for (const std::int64_t limit : {1, 2, 7, 50}) {
      AuditQuery q = all;
      q.limit = limit;
      const Walk w = walk(*s_store, q);
      EXPECT_EQ(w.positions, whole) << "limit " << limit;
      EXPECT_EQ(std::set<std::int64_t>(w.positions.begin(), w.positions.end()).size(),
                w.positions.size());
      // Full pages, then the last one (absent cursor at the end; never an empty last page
      // unless the result is empty).
      for (std::size_t i = 0; i + 1 < w.page_sizes.size(); ++i) {
        EXPECT_EQ(static_cast<std::int64_t>(w.page_sizes[i]), limit);
      }
      EXPECT_GT(w.page_sizes.back(), 0u);
    }
  }
}

TEST_F(AuditTest, TheLimitMayChangeBetweenPages) {
  AuditQuery q;
  q.key_prefix = "calendar.";
  q.limit = 3;
  std::vector<std::int64_t> got;
  for (std::int64_t limit = 3;; limit = limit % 11 + 2) {
    q.limit = limit;
    const auto page = s_store->audit(q);
    for (const auto& e : page.events) got.push_back(e.global_position);
    if (!page.next_cursor) break;
    q.cursor = page.next_cursor;
  }
  AuditQuery all;
  all.key_prefix = "calendar.";
  EXPECT_EQ(got, expected(*s_log, all));
}

TEST_F(AuditTest, ACursorIsRefusedWithOtherFiltersOrOrder) {
  AuditQuery q;
  q.user = "alice";
  q.limit = 2;
  const auto page = s_store->audit(q);
  ASSERT_TRUE(page.next_cursor.has_value());
  const auto refused = [&](AuditQuery other, const std::string& words) {
    other.cursor = page.next_cursor;
    try {
      (void)s_store->audit(other);
      ADD_FAILURE() << "accepted the cursor with " << show(other);
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(*page.next_cursor), std::string::npos) << e.what();
    }
  };
  AuditQuery other = q;
  other.user = "bob";
  refused(other, "other filters");
  other = q;
  other.key = "calendar.time_zone";
  refused(other, "other filters");
  other = q;
  other.from_position = 1;
  refused(other, "other filters");
  other = q;
  other.order = AuditOrder::oldest_first;
  refused(other, "newest-first");
  // The same filters with another limit go on.
  other = q;
  other.limit = 5;
  other.cursor = page.next_cursor;
  EXPECT_NO_THROW((void)s_store->audit(other));
}

TEST_F(AuditTest, MalformedCursorsAreRefusedNamingThem) {
  for (const std::string& cursor : std::vector<std::string>{
           "", "not a cursor!", "YWJj", "YTEubi4wLjAwMDAwMDAwMDAwMDAwMDA", std::string(300, 'A')}) {
    AuditQuery q;
    q.cursor = cursor;
    try {
      (void)s_store->audit(q);
      ADD_FAILURE() << "accepted cursor " << cursor;
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find("cursor"), std::string::npos) << e.what();
    }
  }
}

TEST_F(AuditTest, BadInputIsRefusedNamingTheFieldAndValue) {
  const auto refused = [](const std::function<void(AuditQuery&)>& set, const std::string& words) {
    AuditQuery q;
    set(q);
    try {
      validate_audit_query(q);
      ADD_FAILURE() << "accepted " << show(q);
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)s_store->audit(q), ValidationError) << show(q);
  };
  refused([](AuditQuery& q) { q.limit = 0; }, "limit 0");
  refused([](AuditQuery& q) { q.limit = 10001; }, "limit 10001");
  refused([](AuditQuery& q) { q.limit = -5; }, "limit -5");
  refused(
      [](AuditQuery& q) {
        q.from_time = *parse_timestamp("2026-12-01T00:00:00Z");
        q.to_time = *parse_timestamp("2026-11-01T00:00:00Z");
      },
      "from_time 2026-12-01");
  refused(
      [](AuditQuery& q) {
        q.from_position = 10;
        q.to_position = 9;
      },
      "from_position 10 is after to_position 9");
  refused([](AuditQuery& q) { q.from_position = 0; }, "from_position 0");
  refused([](AuditQuery& q) { q.key_prefix = "Calendar."; }, "key_prefix \"Calendar.\"");
  refused([](AuditQuery& q) { q.key_prefix = "calendar time"; }, "key_prefix");
  refused([](AuditQuery& q) { q.key_prefix = ""; }, "key_prefix");
  refused([](AuditQuery& q) { q.key = "Calendar.TimeZone"; }, "Calendar.TimeZone");
  refused(
      [](AuditQuery& q) {
        q.key = "calendar.time_zone";
        q.key_prefix = "calendar.";
      },
      "exclude each other");
  refused([](AuditQuery& q) { q.event_type = "PreferenceChanged"; }, "PreferenceChanged");
  refused([](AuditQuery& q) { q.actor = ""; }, "actor");
  refused([](AuditQuery& q) { q.source = std::string(2000, 'x'); }, "source");
  refused([](AuditQuery& q) { q.correlation_id = std::string("a\0b", 3); }, "correlation_id");
  refused([](AuditQuery& q) { q.user = "ada\x01"; }, "control character");
  refused([](AuditQuery& q) { q.user = "\xff\xfe"; }, "UTF-8");
}

// Random filter combinations, orders and page sizes against the model.
TEST_F(AuditTest, RandomFilterCombinationsMatchTheModel) {
  const std::size_t n = s_log->size();
  prefstore::testing::check_property(
      [n] {
        AuditQuery q;
        const auto maybe = [] { return *rc::gen::inRange(0, 4) == 0; };
        if (maybe()) {
          q.user = *rc::gen::element<std::string>("alice", "bob", "carol", "dave",
                                                  "$def:notifications.channels", "nobody");
        }
        switch (*rc::gen::inRange(0, 5)) {
          case 0:
            q.key = *rc::gen::elementOf(kKeys);
            break;
          case 1:
            q.key_prefix = *rc::gen::element<std::string>("calendar.", "calendar.w", "r",
                                                          "notifications.channels", "x");
            break;
          default:
            break;
        }
        if (maybe()) {
          q.actor = *rc::gen::element<std::string>("user:alice", "user:bob", "calendar-sync@system",
                                                   "support:grace");
        }
        if (maybe()) {
          q.source = *rc::gen::element<std::string>("settings-web", "calendar-sync", "mobile-app",
                                                    "prefstore-cli");
        }
        if (maybe()) q.event_type = *rc::gen::elementOf(kTypes);
        if (maybe()) {
          q.correlation_id =
              *rc::gen::element<std::string>("req-0", "req-1", "req-restore", "req-batch");
        }
        if (maybe()) {
          auto a = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, n));
          auto b = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, n));
          if (a > b) std::swap(a, b);
          const int sides = *rc::gen::inRange(0, 3);
          if (sides != 1) q.from_time = (*s_log)[a].recorded_at;
          if (sides != 0) q.to_time = (*s_log)[b].recorded_at;
        }
        if (maybe()) {
          auto a = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, n));
          auto b = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, n));
          if (a > b) std::swap(a, b);
          const int sides = *rc::gen::inRange(0, 3);
          if (sides != 1) q.from_position = (*s_log)[a].global_position;
          if (sides != 0) q.to_position = (*s_log)[b].global_position;
        }
        q.order = *rc::gen::element(AuditOrder::newest_first, AuditOrder::oldest_first);
        q.limit = *rc::gen::element<std::int64_t>(1, 2, 5, 100);
        RC_TAG(q.order == AuditOrder::newest_first ? "newest" : "oldest");
        const auto want = expected(*s_log, q);
        const Walk got = walk(*s_store, q);
        RC_ASSERT(got.positions == want);
      },
      60, 100);
}

TEST_F(AuditTest, EventsComeDecodedWithTheirMetadata) {
  AuditQuery q;
  q.correlation_id = "req-restore";
  q.user = "alice";
  const auto page = s_store->audit(q);
  ASSERT_EQ(page.events.size(), 1u);
  const auto& e = page.events[0];
  const auto* restored = std::get_if<PreferencesRestored>(&e.data);
  ASSERT_NE(restored, nullptr);
  EXPECT_FALSE(restored->changes.empty());
  EXPECT_EQ(e.metadata.actor, "support:grace");
  EXPECT_EQ(e.metadata.reason, "ticket, 4711");
  EXPECT_EQ(e.stream_id, "alice");
  const auto& stored = *std::find_if(s_log->begin(), s_log->end(), [&](const auto& x) {
    return x.global_position == e.global_position;
  });
  EXPECT_EQ(e, stored);
}

// The view: one readable row per event, for every prefstore role and nobody else.
TEST_F(AuditTest, TheAuditLogViewShowsAReadableTrail) {
  pqxx::connection conn(s_db->url());
  pqxx::work tx(conn);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM prefstore.audit_log")[0][0].as<std::size_t>(),
            s_log->size());
  const auto restore = tx.exec(
      "SELECT stream_id, key, value, actor, source, reason, correlation_id, causation_id "
      "FROM prefstore.audit_log WHERE event_type = 'PreferencesRestored' AND stream_id = 'bob'");
  ASSERT_EQ(restore.size(), 1u);
  const auto& bob_restore = *std::find_if(s_log->begin(), s_log->end(), [](const auto& e) {
    return e.stream_id == "bob" && std::holds_alternative<PreferencesRestored>(e.data);
  });
  std::string keys;
  for (const auto& k : model_keys(bob_restore.data)) keys += (keys.empty() ? "" : ", ") + k;
  EXPECT_EQ(restore[0][1].as<std::string>(), keys);
  EXPECT_NE(restore[0][2].as<std::string>().find("calendar.time_zone = "), std::string::npos);
  EXPECT_EQ(restore[0][3].as<std::string>(), "support:grace");
  EXPECT_EQ(restore[0][5].as<std::string>(), "ticket, 4711");
  EXPECT_TRUE(restore[0][7].is_null());  // empty metadata shows as NULL
  const auto set = tx.exec(
      "SELECT key, value FROM prefstore.audit_log WHERE event_type = 'PreferenceSet' "
      "AND key = 'calendar.time_zone' ORDER BY position LIMIT 1");
  ASSERT_EQ(set.size(), 1u);
  EXPECT_EQ(set[0][1].as<std::string>().find('"'), std::string::npos) << "strings unquoted";
  const auto channels = tx.exec(
      "SELECT value FROM prefstore.audit_log WHERE event_type = 'PreferenceSet' "
      "AND key = 'notifications.channels' LIMIT 1");
  ASSERT_EQ(channels.size(), 1u);
  EXPECT_EQ(channels[0][0].as<std::string>().front(), '[');
  const auto defined = tx.exec(
      "SELECT value FROM prefstore.audit_log WHERE event_type = 'PreferenceDefined' "
      "AND key = 'calendar.default_meeting_minutes'");
  EXPECT_EQ(defined[0][0].as<std::string>(), "int, default 30");
  for (const char* role : {"prefstore_reader", "prefstore_writer", "prefstore_owner"}) {
    tx.exec(std::string("SET LOCAL ROLE ") + role);
    EXPECT_EQ(tx.exec("SELECT count(*) FROM prefstore.audit_log")[0][0].as<std::size_t>(),
              s_log->size())
        << role;
    tx.exec("RESET ROLE");
  }
  tx.exec("CREATE ROLE audit_intruder NOLOGIN");
  tx.exec("SET LOCAL ROLE audit_intruder");
  try {
    tx.exec("SELECT count(*) FROM prefstore.audit_log");
    ADD_FAILURE() << "PUBLIC can read the audit log";
  } catch (const pqxx::sql_error& e) {
    EXPECT_NE(std::string(e.what()).find("permission denied"), std::string::npos) << e.what();
  }
}

// --- pagination while writers append -------------------------------------------------------------

// Writers append single events (so each acknowledged position is known) while walkers page
// newest first and an exporter tails the log oldest first with resume cursors.
TEST(AuditConcurrency, PagesNeitherRepeatNorSkipWhileWritersAppend) {
  ScratchDatabase db;
  auto store = open_store(db.url(), false, 16);
  std::mutex mutex;
  std::map<std::int64_t, std::string> acknowledged;  // position -> source
  const auto append = [&](int writer, int i) {
    const std::string user = "user-" + std::to_string((writer * 31 + i) % 12);
    const Metadata m{"user:" + user, kSources[static_cast<std::size_t>(i) % 3], "", "", ""};
    const auto r = store->set(user, kKeys[static_cast<std::size_t>(i) % 5], std::int64_t{i}, m);
    const std::lock_guard lock(mutex);
    acknowledged[r.global_position] = m.source;
  };
  for (int i = 0; i < 150; ++i) append(99, i);
  const auto acknowledged_now = [&] {
    const std::lock_guard lock(mutex);
    return acknowledged;
  };

  std::atomic<bool> stop{false};
  std::atomic<bool> writers_done{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) append(w, i);
    });
  }

  // The exporter: oldest first, 5 at a time, going on with the resume cursor at the end.
  std::vector<std::int64_t> exported;
  std::string failure;
  std::thread exporter([&] {
    AuditQuery q;
    q.order = AuditOrder::oldest_first;
    q.limit = 5;
    try {
      while (true) {
        const bool stopping = writers_done.load();
        const AuditPage page = store->audit(q);
        for (const auto& e : page.events) exported.push_back(e.global_position);
        q.cursor = page.next_cursor ? page.next_cursor : page.resume_cursor;
        if (!page.next_cursor) {
          if (stopping) break;  // every append had returned before this page: drained
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });

  // Newest-first walks while the writers append (all events, or one source's): no repeats,
  // decreasing positions, and every event acknowledged before the walk began.
  int walks = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto before = acknowledged_now();
    AuditQuery q;
    q.limit = 40;
    if (walks % 2 == 1) q.source = "settings-web";
    const Walk w = walk(*store, q);
    ++walks;
    const std::set<std::int64_t> seen(w.positions.begin(), w.positions.end());
    EXPECT_EQ(seen.size(), w.positions.size()) << "a newest-first walk repeated an event";
    EXPECT_TRUE(std::is_sorted(w.positions.rbegin(), w.positions.rend()));
    for (const auto& [position, source] : before) {
      if (q.source && source != *q.source) continue;
      if (seen.count(position) == 0) {
        ADD_FAILURE() << "newest-first walk " << walks << " (" << show(q) << ") skipped position "
                      << position;
        break;
      }
    }
  }
  stop = true;
  for (auto& t : writers) t.join();
  writers_done = true;
  exporter.join();
  ASSERT_EQ(failure, "");
  EXPECT_GE(walks, 2);

  std::set<std::int64_t> all;
  for (const auto& [position, source] : acknowledged_now()) all.insert(position);
  ASSERT_GT(all.size(), 300u) << "the writers should have appended a few hundred events";
  // The exporter saw every acknowledged event exactly once.
  std::map<std::int64_t, int> times;
  for (const auto p : exported) ++times[p];
  for (const auto& [p, n] : times) EXPECT_EQ(n, 1) << "exported twice: position " << p;
  std::set<std::int64_t> exported_set(exported.begin(), exported.end());
  EXPECT_EQ(exported_set, all);
  // Fresh walks after the writers stopped: every event exactly once, in both orders.
  for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
    AuditQuery q;
    q.order = order;
    q.limit = 97;
    const Walk w = walk(*store, q);
    EXPECT_EQ(std::set<std::int64_t>(w.positions.begin(), w.positions.end()), all);
    EXPECT_EQ(w.positions.size(), all.size());
  }
}

// A transaction takes a position, a later one takes a higher position and commits first, then
// the first commits. An oldest-first walk that passed the higher position returns the lower one
// on its next page; a plain "position > last seen" reader would never see it.
TEST(AuditConcurrency, AnEventThatCommitsLateIsReturnedNotSkipped) {
  ScratchDatabase db;
  auto store = open_store(db.url(), false);
  for (int i = 0; i < 3; ++i) (void)store->set("seed", "calendar.time_zone", std::string("UTC"));
  const auto insert = [](pqxx::work& tx, const std::string& stream) {
    tx.exec_params(
        "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
        "last_recorded_at) VALUES ($1, 1, now(), now(), now())",
        stream);
    return tx
        .exec_params(
            "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
            "schema_version, payload, metadata, recorded_at) VALUES ($1, 1, gen_random_uuid(), "
            "'PreferenceSet', 1, '{\"key\":\"calendar.time_zone\",\"type\":\"string\","
            "\"value\":\"Asia/Tokyo\"}', '{\"actor\":\"user:late\",\"source\":\"calendar-sync\","
            "\"reason\":\"\",\"correlation_id\":\"\",\"causation_id\":\"\"}', now()) "
            "RETURNING global_position",
            stream)[0][0]
        .as<std::int64_t>();
  };
  pqxx::connection a_conn(db.url());
  pqxx::connection b_conn(db.url());
  pqxx::work a(a_conn);
  pqxx::work b(b_conn);
  (void)a.exec("SELECT pg_current_xact_id()");  // a's transaction id is the older one
  (void)b.exec("SELECT pg_current_xact_id()");
  const std::int64_t low = insert(b, "late-b");   // b: the lower position, commits last
  const std::int64_t high = insert(a, "late-a");  // a: the higher position, commits first
  ASSERT_LT(low, high);
  a.commit();

  AuditQuery q;
  q.order = AuditOrder::oldest_first;
  const AuditPage first = store->audit(q);
  std::vector<std::int64_t> seen;
  for (const auto& e : first.events) seen.push_back(e.global_position);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), high) << "a's event is from a finished transaction older than b";
  EXPECT_EQ(std::count(seen.begin(), seen.end(), low), 0);
  ASSERT_FALSE(first.next_cursor.has_value());
  ASSERT_TRUE(first.resume_cursor.has_value());

  b.commit();
  // What a plain keyset would ask next finds nothing: position `low` is behind it.
  AuditQuery naive = q;
  naive.from_position = high + 1;
  EXPECT_TRUE(store->audit(naive).events.empty());
  // The cursor returns it.
  q.cursor = first.resume_cursor;
  const AuditPage next = store->audit(q);
  ASSERT_EQ(next.events.size(), 1u);
  EXPECT_EQ(next.events[0].global_position, low);
  EXPECT_EQ(next.events[0].stream_id, "late-b");
  // And nothing twice afterwards.
  q.cursor = next.resume_cursor;
  EXPECT_TRUE(store->audit(q).events.empty());
}

// Many late events: the late part of a page is itself paged (with the horizon kept fixed), so a
// small limit neither repeats nor skips them.
TEST(AuditConcurrency, ManyLateEventsArePagedToo) {
  ScratchDatabase db;
  auto store = open_store(db.url(), false);
  (void)store->set("seed", "calendar.time_zone", std::string("UTC"));
  pqxx::connection a_conn(db.url());
  pqxx::connection b_conn(db.url());
  pqxx::work a(a_conn);
  pqxx::work b(b_conn);
  (void)a.exec("SELECT pg_current_xact_id()");
  (void)b.exec("SELECT pg_current_xact_id()");
  const auto bulk = [](pqxx::work& tx, const std::string& prefix, int n) {
    tx.exec_params(
        "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
        "last_recorded_at) SELECT $1 || i, 1, now(), now(), now() FROM generate_series(1, $2) i",
        prefix, n);
    tx.exec_params(
        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
        "schema_version, payload, metadata, recorded_at) SELECT $1 || i, 1, gen_random_uuid(), "
        "'PreferenceReset', 1, '{\"key\":\"calendar.time_zone\"}', '{}', now() "
        "FROM generate_series(1, $2) i ORDER BY i",
        prefix, n);
  };
  bulk(b, "late-", 23);  // the lower positions, committed last
  bulk(a, "early-", 5);
  a.commit();
  AuditQuery q;
  q.order = AuditOrder::oldest_first;
  q.limit = 4;
  Walk w = walk(*store, q);
  EXPECT_EQ(w.positions.size(), 6u);  // the seed and a's 5
  b.commit();
  q.cursor = w.resume_cursor;
  const Walk rest = walk(*store, q);
  EXPECT_EQ(rest.positions.size(), 23u);
  std::set<std::int64_t> all(w.positions.begin(), w.positions.end());
  all.insert(rest.positions.begin(), rest.positions.end());
  EXPECT_EQ(all.size(), 29u);
  EXPECT_TRUE(std::is_sorted(rest.positions.begin(), rest.positions.end()));
}

// --- every query shape is served by an index
// -------------------------------------------------------

// The calendar log of bench/audit_explain.cpp, in SQL: $1 events of $2 users over one year.
void build_log(const std::string& url, std::int64_t events, std::int64_t users) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  tx.exec(
      "CREATE TEMP TABLE g (i bigint, stream_id text, event_type text, key text, actor text, "
      "source text, correlation_id text, recorded_at timestamptz)");
  tx.exec_params(R"sql(
INSERT INTO g
SELECT i, 'user-' || ((i * 7919) % $2::bigint),
       CASE WHEN i % 200 = 7 THEN 'PreferencesRestored'
            WHEN i % 10 = 3 THEN 'PreferenceReset' ELSE 'PreferenceSet' END,
       (ARRAY['calendar.time_zone', 'calendar.default_meeting_minutes',
              'calendar.working_hours.start', 'reminders.default_minutes',
              'notifications.channels'])[CASE WHEN (i * 31) % 100 < 35 THEN 1
                                             WHEN (i * 31) % 100 < 60 THEN 2
                                             WHEN (i * 31) % 100 < 80 THEN 3
                                             WHEN (i * 31) % 100 < 95 THEN 4 ELSE 5 END],
       CASE WHEN i % 10 < 7 THEN 'user:user-' || ((i * 7919) % $2::bigint)
            WHEN i % 20 < 19 THEN 'calendar-sync@system' ELSE 'support:grace' END,
       CASE WHEN i % 1000 = 500 THEN 'prefstore-cli' WHEN i % 10 < 5 THEN 'settings-web'
            WHEN i % 10 < 8 THEN 'calendar-sync' ELSE 'mobile-app' END,
       CASE WHEN i % 20 < 2 THEN 'req-' || (i / 20) ELSE '' END,
       timestamptz '2025-12-01 00:00:00+00'
         + make_interval(secs => i * (31536000.0 / $1::bigint) + ((i * 37) % 1000) / 1000.0)
FROM generate_series(1::bigint, $1::bigint) AS i)sql",
                 events, users);
  tx.exec(
      "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
      "last_recorded_at) SELECT stream_id, count(*), min(recorded_at), max(recorded_at), "
      "max(recorded_at) FROM g GROUP BY stream_id");
  tx.exec(R"sql(
INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, schema_version,
                              payload, metadata, recorded_at)
SELECT stream_id, row_number() OVER (PARTITION BY stream_id ORDER BY i), gen_random_uuid(),
       event_type, 1,
       CASE event_type
         WHEN 'PreferenceReset' THEN jsonb_build_object('key', key)
         WHEN 'PreferencesRestored' THEN jsonb_build_object(
             'as_of', '2025-12-01T00:00:00.000000Z',
             'changes', jsonb_build_array(
                 jsonb_build_object('key', key, 'type', 'string', 'value', 'restored'),
                 jsonb_build_object('key', 'notifications.channels', 'reset', true)))
         ELSE jsonb_build_object('key', key, 'type', 'string', 'value', 'v' || (i % 7))
       END,
       jsonb_build_object('actor', actor, 'source', source, 'reason', 'settings page',
                          'correlation_id', correlation_id, 'causation_id', ''),
       recorded_at
FROM g ORDER BY i)sql");
  tx.exec("VACUUM ANALYZE prefstore.events");
}

// Every node of a JSON plan that scans prefstore.events sequentially, as "node (relation)".
void seq_scans(const rapidjson::Value& node, std::vector<std::string>& out) {
  if (node.IsObject()) {
    if (node.HasMember("Node Type") && std::string(node["Node Type"].GetString()) == "Seq Scan" &&
        node.HasMember("Relation Name") &&
        std::string(node["Relation Name"].GetString()) == "events") {
      out.push_back("Seq Scan on events");
    }
    for (auto it = node.MemberBegin(); it != node.MemberEnd(); ++it) seq_scans(it->value, out);
  } else if (node.IsArray()) {
    for (const auto& item : node.GetArray()) seq_scans(item, out);
  }
}

TEST(AuditPlans, EveryQueryShapeIsServedByAnIndex) {
  ScratchDatabase db;
  auto store = open_store(db.url(), false);
  build_log(db.url(), 20000, 500);
  const auto at = [](const char* iso) { return *parse_timestamp(iso); };
  std::vector<std::pair<std::string, AuditQuery>> shapes;
  const auto add = [&shapes](std::string name, const std::function<void(AuditQuery&)>& set) {
    AuditQuery q;
    set(q);
    shapes.emplace_back(std::move(name), q);
  };
  add("no filter", [](AuditQuery&) {});
  add("user", [](AuditQuery& q) { q.user = "user-42"; });
  add("key", [](AuditQuery& q) { q.key = "notifications.channels"; });
  add("key prefix", [](AuditQuery& q) { q.key_prefix = "reminders."; });
  add("actor", [](AuditQuery& q) { q.actor = "support:grace"; });
  add("source", [](AuditQuery& q) { q.source = "prefstore-cli"; });
  add("frequent source", [](AuditQuery& q) { q.source = "settings-web"; });
  add("rare event type", [](AuditQuery& q) { q.event_type = "PreferencesRestored"; });
  add("PreferenceSet", [](AuditQuery& q) { q.event_type = "PreferenceSet"; });
  add("correlation id", [](AuditQuery& q) { q.correlation_id = "req-500"; });
  add("the last day", [&](AuditQuery& q) { q.from_time = at("2026-11-30T00:00:00Z"); });
  add("a day in March", [&](AuditQuery& q) {
    q.from_time = at("2026-03-01T00:00:00Z");
    q.to_time = at("2026-03-02T00:00:00Z");
  });
  add("positions", [](AuditQuery& q) {
    q.from_position = 5000;
    q.to_position = 5100;
  });
  add("user and key", [](AuditQuery& q) {
    q.user = "user-42";
    q.key = "calendar.time_zone";
  });
  add("actor and key", [](AuditQuery& q) {
    q.actor = "calendar-sync@system";
    q.key = "calendar.working_hours.start";
  });
  add("source and a day in March", [&](AuditQuery& q) {
    q.source = "calendar-sync";
    q.from_time = at("2026-03-01T00:00:00Z");
    q.to_time = at("2026-03-02T00:00:00Z");
  });
  add("key prefix and type", [](AuditQuery& q) {
    q.key_prefix = "calendar.";
    q.event_type = "PreferenceReset";
  });
  for (const auto& [name, shape] : shapes) {
    for (const auto order : {AuditOrder::newest_first, AuditOrder::oldest_first}) {
      AuditQuery q = shape;
      q.order = order;
      for (int page = 0; page < 2; ++page) {
        const std::string plan =
            storage::explain_audit(store->pool(), q, storage::ExplainMode::plan_json);
        rapidjson::Document doc;
        doc.Parse(plan.c_str());
        ASSERT_FALSE(doc.HasParseError()) << plan;
        std::vector<std::string> found;
        seq_scans(doc, found);
        EXPECT_TRUE(found.empty())
            << name << " (" << show(q) << ", page " << page + 1 << "):\n"
            << storage::explain_audit(store->pool(), q, storage::ExplainMode::analyze_buffers);
        const auto result = store->audit(q);
        if (!result.next_cursor) break;
        q.cursor = result.next_cursor;
      }
    }
  }
}

// --- the command line ---------------------------------------------------------------------------

// RFC 4180: fields separated by commas, records by CRLF, quoted fields may hold commas, quotes
// (doubled) and line breaks.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty()) {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      row.push_back(field);
      field.clear();
      rows.push_back(row);
      row.clear();
      ++i;
    } else {
      EXPECT_NE(c, '\n') << "a bare line feed outside quotes at byte " << i;
      EXPECT_NE(c, '"') << "a quote inside an unquoted field at byte " << i;
      field += c;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quoted field";
  EXPECT_TRUE(field.empty() && row.empty()) << "the last record lacks its CRLF";
  return rows;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(AuditCli, HistoryPrintsTablesJsonLinesAndCsvAndPagesWithTheCursor) {
  ScratchDatabase db;
  {
    auto store = open_store(db.url());
    write_world(*store);
  }
  auto store = open_store(db.url());
  const auto log = whole_log(*store);
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", db.url()}};
  const auto dir = prefstore::testing::make_temp_dir("audit-cli");
  const auto out_file = dir / "out";
  const auto err_file = dir / "err";
  // Runs the tool with stdout and stderr kept apart: {exit code and stderr, stdout}.
  const auto run = [&](const std::string& args) {
    auto r = prefstore::testing::run_cli(
        args + " > " + out_file.string() + " 2> " + err_file.string() + "; (exit $?)", env);
    r.output = read_file(err_file);
    return std::make_pair(r, read_file(out_file));
  };

  // CSV: a header and one record per event, every field as stored.
  auto [csv_run, csv] = run("history --format csv --limit 10000");
  ASSERT_EQ(csv_run.exit_code, 0) << csv_run.output;
  const auto rows = parse_csv(csv);
  ASSERT_EQ(rows.size(), log.size() + 1);
  EXPECT_EQ(rows[0][0], "position");
  std::map<std::int64_t, const RecordedEvent*> by_position;
  for (const auto& e : log) by_position[e.global_position] = &e;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 13u);
    const RecordedEvent& e = *by_position.at(std::stoll(rows[i][0]));
    EXPECT_EQ(rows[i][2], e.stream_id);
    EXPECT_EQ(rows[i][4], event_type_name(e.data));
    EXPECT_EQ(rows[i][7], e.metadata.actor);
    EXPECT_EQ(rows[i][9], e.metadata.reason);  // commas, quotes and a line break survive
    EXPECT_EQ(rows[i][12], e.event_id);
  }
  EXPECT_NE(csv.find("\"moved, \"\"finally\"\"\nto Lima\""), std::string::npos);

  // JSON lines: each line parses, with the event's fields.
  auto [jsonl_run, jsonl] = run("history alice --format jsonl --limit 10000");
  ASSERT_EQ(jsonl_run.exit_code, 0) << jsonl_run.output;
  std::istringstream lines(jsonl);
  std::string line;
  std::size_t count = 0;
  while (std::getline(lines, line)) {
    rapidjson::Document doc;
    doc.Parse(line.c_str());
    ASSERT_FALSE(doc.HasParseError()) << line;
    const RecordedEvent& e = *by_position.at(doc["position"].GetInt64());
    EXPECT_EQ(std::string(doc["stream_id"].GetString()), "alice");
    EXPECT_EQ(std::string(doc["type"].GetString()), event_type_name(e.data));
    EXPECT_EQ(std::string(doc["metadata"]["reason"].GetString()), e.metadata.reason);
    EXPECT_EQ(doc["keys"].Size(), model_keys(e.data).size());
    ++count;
  }
  EXPECT_EQ(count,
            static_cast<std::size_t>(std::count_if(
                log.begin(), log.end(), [](const auto& e) { return e.stream_id == "alice"; })));
  // --json is the same.
  EXPECT_EQ(run("history alice --json --limit 10000").second, jsonl);

  // The table pages: "next cursor: ..." as its last line, accepted back by --cursor.
  auto [table_run, table] = run("history --key-prefix calendar. --limit 3");
  ASSERT_EQ(table_run.exit_code, 0) << table_run.output;
  EXPECT_NE(table.find("3 events"), std::string::npos) << table;
  const auto at = table.find("next cursor: ");
  ASSERT_NE(at, std::string::npos) << table;
  const std::string cursor = table.substr(at + 13, table.find('\n', at) - at - 13);
  auto [next_run, next] = run("history --key-prefix calendar. --limit 3 --cursor " + cursor);
  ASSERT_EQ(next_run.exit_code, 0) << next_run.output;
  EXPECT_NE(next.find("3 events"), std::string::npos) << next;
  // With other filters it is refused: exit 3 (validation), naming the problem.
  const auto refused =
      prefstore::testing::run_cli("history --key calendar.time_zone --cursor " + cursor, env);
  EXPECT_EQ(refused.exit_code, 3) << refused.output;
  EXPECT_NE(refused.output.find("other filters"), std::string::npos) << refused.output;
  // jsonl and csv print the cursor on stderr, so stdout stays parsable.
  auto [paged_run, paged] = run("history --format jsonl --limit 2");
  EXPECT_NE(paged_run.output.find("next cursor: "), std::string::npos) << paged_run.output;
  EXPECT_EQ(paged.find("cursor"), std::string::npos) << paged;
  auto [oldest_run, oldest] = run("history --oldest-first --format csv --type PreferenceDefined");
  EXPECT_EQ(parse_csv(oldest).size(), 6u);
  EXPECT_NE(oldest_run.output.find("resume cursor"), std::string::npos) << oldest_run.output;

  // Usage and validation errors.
  EXPECT_EQ(prefstore::testing::run_cli("history --format xml", env).exit_code, 2);
  EXPECT_EQ(prefstore::testing::run_cli("history --since yesterday", env).exit_code, 2);
  EXPECT_EQ(prefstore::testing::run_cli("history --limit 0", env).exit_code, 3);
  EXPECT_EQ(prefstore::testing::run_cli("history --key-prefix Calendar", env).exit_code, 3);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace prefstore
