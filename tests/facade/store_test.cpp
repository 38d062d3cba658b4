// prefstore::Store, the facade a service uses: definitions, strict and open mode, validated
// writes, defaults, atomic set_many, conflicts, retries and the audit trail of definitions.
#include "prefstore/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <pqxx/pqxx>
#include <thread>

#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/notification_listener.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

using prefstore::testing::TestCluster;

PreferenceDefinition def(std::string key, ValueType type, std::optional<Value> default_value,
                         std::string description = {}) {
  PreferenceDefinition d;
  d.key = std::move(key);
  d.type = type;
  d.default_value = std::move(default_value);
  d.description = std::move(description);
  return d;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { m_store = open(true); }
  std::unique_ptr<Store> open(bool strict) {
    if (m_url.empty()) m_url = TestCluster::instance().fresh_database();
    StoreOptions o;
    o.database_url = m_url;
    o.strict = strict;
    o.pool.max_size = 8;
    return std::make_unique<Store>(o);
  }
  void define_calendar() {
    PreferenceDefinition minutes = def("calendar.default_meeting_minutes", ValueType::integer,
                                       std::int64_t{30}, "Length of a new meeting, in minutes");
    minutes.constraints.min = 5;
    minutes.constraints.max = 480;
    (void)m_store->define(minutes, m_admin);
    PreferenceDefinition tz = def("calendar.timezone", ValueType::string, std::string("UTC"),
                                  "IANA time zone of the user's calendar");
    tz.constraints.pattern = "[A-Za-z_]+(/[A-Za-z_]+)*";
    (void)m_store->define(tz, m_admin);
    PreferenceDefinition channels = def("notifications.channels", ValueType::string_list,
                                        StringList{"email"}, "Where reminders are sent");
    channels.constraints.allowed_values =
        std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
    channels.constraints.max_items = 3;
    (void)m_store->define(channels, m_admin);
    PreferenceDefinition start = def("calendar.working_hours.start", ValueType::string,
                                     std::string("09:00"), "Start of the working day (HH:MM)");
    start.constraints.pattern = "([01][0-9]|2[0-3]):[0-5][0-9]";
    (void)m_store->define(start, m_admin);
    PreferenceDefinition title = def("calendar.focus_block_title", ValueType::string,
                                     std::string("Focus"), "Title of auto-scheduled focus blocks");
    title.constraints.max_length = 12;
    (void)m_store->define(title, m_admin);
  }

  std::string m_url;
  std::unique_ptr<Store> m_store;
  Metadata m_admin{"grace@ops", "prefstore-admin", "calendar launch", "", ""};
  Metadata m_web{"ada@example.com", "calendar-web", "settings page", "req-42", ""};
};

TEST_F(StoreTest, ReadingAnUnsetKeyReturnsItsDefault) {
  define_calendar();
  EXPECT_EQ(m_store->get("ada", "calendar.default_meeting_minutes"), Value(std::int64_t{30}));
  EXPECT_EQ(m_store->get("ada", "calendar.unknown_key"), std::nullopt);
  const auto all = m_store->get_all("ada");
  ASSERT_EQ(all.size(), 5u);
  EXPECT_TRUE(all.at("calendar.timezone").is_default);
  EXPECT_EQ(all.at("notifications.channels").value, Value(StringList{"email"}));
}

TEST_F(StoreTest, SetThenGetSeesTheWriteAtOnce) {
  define_calendar();
  const auto r = m_store->set("ada", "calendar.timezone", std::string("Europe/London"), m_web);
  EXPECT_EQ(r.stream_version, 1);
  EXPECT_EQ(m_store->get("ada", "calendar.timezone"), Value(std::string("Europe/London")));
  const auto all = m_store->get_all("ada");
  EXPECT_FALSE(all.at("calendar.timezone").is_default);
  ASSERT_TRUE(all.at("calendar.timezone").entry.has_value());
  EXPECT_EQ(all.at("calendar.timezone").entry->updated_by, "ada@example.com");
  EXPECT_EQ(all.at("calendar.timezone").entry->version, 1);
  // Another user is untouched.
  EXPECT_EQ(m_store->get("grace", "calendar.timezone"), Value(std::string("UTC")));
}

TEST_F(StoreTest, EveryConstraintViolationNamesKeyValueAndConstraintAndWritesNothing) {
  define_calendar();
  struct Case {
    std::string key;
    Value value;
    std::string expected_in_message;
  };
  const std::vector<Case> cases = {
      {"calendar.default_meeting_minutes", std::int64_t{500}, "480"},
      {"calendar.default_meeting_minutes", std::int64_t{1}, "5"},
      {"calendar.default_meeting_minutes", std::string("thirty"), "int"},
      {"calendar.timezone", std::string("Not A Zone!"), "pattern"},
      {"calendar.working_hours.start", std::string("25:00"), "25:00"},
      {"notifications.channels", StringList{"email", "pigeon"}, "pigeon"},
      {"notifications.channels", StringList{"email", "push", "sms", "email"}, "3"},
      {"calendar.focus_block_title", std::string("Deep work, do not disturb"), "12"},
  };
  for (const auto& c : cases) {
    try {
      (void)m_store->set("ada", c.key, c.value, m_web);
      ADD_FAILURE() << c.key << " accepted " << format_value(c.value);
    } catch (const ValidationError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(c.key), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.expected_in_message), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(m_store->version("ada"), 0);
}

TEST_F(StoreTest, StrictModeRejectsUnknownKeysOpenModeAcceptsThemUntyped) {
  EXPECT_THROW((void)m_store->set("ada", "calendar.mood", std::string("sunny"), m_web),
               ValidationError);
  EXPECT_THROW((void)m_store->reset("ada", "calendar.mood", m_web), ValidationError);
  auto open_store = open(false);
  (void)open_store->set("ada", "calendar.mood", std::string("sunny"), m_web);
  (void)open_store->set("ada", "calendar.focus_blocks", std::int64_t{3}, m_web);
  EXPECT_EQ(open_store->get("ada", "calendar.mood"), Value(std::string("sunny")));
  EXPECT_EQ(m_store->get("ada", "calendar.focus_blocks"), Value(std::int64_t{3}));
  // Open mode still checks the key grammar and the encoding.
  EXPECT_THROW((void)open_store->set("ada", "Calendar Mood", true, m_web), ValidationError);
  EXPECT_THROW((void)open_store->set("ada", "calendar.ratio", std::nan(""), m_web),
               ValidationError);
}

TEST_F(StoreTest, BadUserIdsAndMetadataAreRefused) {
  define_calendar();
  EXPECT_THROW((void)m_store->set("", "calendar.timezone", std::string("UTC")), ValidationError);
  EXPECT_THROW(
      (void)m_store->set("$def:calendar.timezone", "calendar.timezone", std::string("UTC")),
      ValidationError);
  EXPECT_THROW((void)m_store->set(std::string(kMaxUserIdLength + 1, 'u'), "calendar.timezone",
                                  std::string("UTC")),
               ValidationError);
  Metadata huge = m_web;
  huge.reason = std::string(kMaxMetadataFieldLength + 1, 'r');
  EXPECT_THROW((void)m_store->set("ada", "calendar.timezone", std::string("UTC"), huge),
               ValidationError);
  EXPECT_EQ(m_store->version("ada"), 0);
}

TEST_F(StoreTest, SetManyIsAtomic) {
  define_calendar();
  const auto r = m_store->set_many("ada",
                                   {{"calendar.timezone", std::string("Asia/Tokyo")},
                                    {"calendar.default_meeting_minutes", std::int64_t{25}}},
                                   m_web);
  EXPECT_EQ(r.stream_version, 2);
  EXPECT_THROW((void)m_store->set_many("ada",
                                       {{"calendar.timezone", std::string("Europe/Paris")},
                                        {"calendar.default_meeting_minutes", std::int64_t{9999}}},
                                       m_web),
               ValidationError);
  EXPECT_EQ(m_store->get("ada", "calendar.timezone"), Value(std::string("Asia/Tokyo")));
  EXPECT_EQ(m_store->version("ada"), 2);
  EXPECT_THROW((void)m_store->set_many("ada", {}, m_web), ValidationError);
  EXPECT_THROW((void)m_store->set_many("ada",
                                       {{"calendar.timezone", std::string("UTC")},
                                        {"calendar.timezone", std::string("Asia/Tokyo")}},
                                       m_web),
               ValidationError);
}

TEST_F(StoreTest, ResetReturnsToTheDefault) {
  define_calendar();
  (void)m_store->set("ada", "calendar.default_meeting_minutes", std::int64_t{50}, m_web);
  (void)m_store->reset("ada", "calendar.default_meeting_minutes", m_web);
  EXPECT_EQ(m_store->get("ada", "calendar.default_meeting_minutes"), Value(std::int64_t{30}));
  EXPECT_TRUE(m_store->get_all("ada").at("calendar.default_meeting_minutes").is_default);
  EXPECT_EQ(m_store->version("ada"), 2);
}

TEST_F(StoreTest, ExpectedVersionGuardsAgainstLostUpdates) {
  define_calendar();
  (void)m_store->set("ada", "calendar.timezone", std::string("UTC"), m_web);
  AppendOptions stale;
  stale.expected = ExpectedVersion::exactly(0);
  try {
    (void)m_store->set("ada", "calendar.timezone", std::string("Asia/Tokyo"), m_web, stale);
    FAIL() << "expected VersionConflictError";
  } catch (const VersionConflictError& e) {
    EXPECT_EQ(e.actual_version(), 1);
  }
  AppendOptions fresh;
  fresh.expected = ExpectedVersion::exactly(1);
  EXPECT_EQ(m_store->set("ada", "calendar.timezone", std::string("Asia/Tokyo"), m_web, fresh)
                .stream_version,
            2);
}

TEST_F(StoreTest, RetryWithTheSameEventIdStoresOnce) {
  define_calendar();
  AppendOptions once;
  once.event_ids = {new_event_id()};
  const auto first = m_store->set("ada", "calendar.timezone", std::string("UTC"), m_web, once);
  const auto retry = m_store->set("ada", "calendar.timezone", std::string("UTC"), m_web, once);
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.global_position, first.global_position);
  EXPECT_EQ(m_store->version("ada"), 1);
  AppendOptions wrong_count;
  wrong_count.event_ids = {new_event_id(), new_event_id()};
  EXPECT_THROW(
      (void)m_store->set("ada", "calendar.timezone", std::string("UTC"), m_web, wrong_count),
      ValidationError);
}

TEST_F(StoreTest, DefinitionsHaveTheirOwnAuditTrail) {
  define_calendar();
  PreferenceDefinition minutes =
      m_store->definition("calendar.default_meeting_minutes")->definition;
  minutes.constraints.max = 240;
  (void)m_store->define(minutes, m_admin);
  (void)m_store->deprecate("calendar.default_meeting_minutes", "use calendar.meeting.length",
                           m_admin);
  const auto entry = m_store->definition("calendar.default_meeting_minutes");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->version, 3);
  EXPECT_TRUE(entry->definition.deprecated);
  EXPECT_EQ(entry->definition.deprecation_note, "use calendar.meeting.length");
  EXPECT_EQ(entry->definition.constraints.max, 240.0);
  EXPECT_EQ(entry->updated_by, "grace@ops");
  const auto trail = m_store->history(definition_stream_id("calendar.default_meeting_minutes"));
  ASSERT_EQ(trail.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<PreferenceDefined>(trail[0].data));
  EXPECT_TRUE(std::holds_alternative<PreferenceDeprecated>(trail[2].data));
  EXPECT_EQ(trail[2].metadata.reason, "calendar launch");
  // The tightened maximum applies to new writes; deprecated keys still accept values.
  EXPECT_THROW(
      (void)m_store->set("ada", "calendar.default_meeting_minutes", std::int64_t{300}, m_web),
      ValidationError);
  EXPECT_NO_THROW(
      (void)m_store->set("ada", "calendar.default_meeting_minutes", std::int64_t{200}, m_web));
  EXPECT_THROW((void)m_store->deprecate("calendar.nothing_here", "x", m_admin), ValidationError);
}

TEST_F(StoreTest, IncoherentDefinitionsAreRefused) {
  PreferenceDefinition bad =
      def("calendar.default_meeting_minutes", ValueType::integer, std::int64_t{1000});
  bad.constraints.max = 480;
  EXPECT_THROW((void)m_store->define(bad, m_admin), ValidationError);
  PreferenceDefinition wrong_default = def("calendar.timezone", ValueType::string, std::int64_t{3});
  EXPECT_THROW((void)m_store->define(wrong_default, m_admin), ValidationError);
  EXPECT_TRUE(m_store->definitions().empty());
}

TEST_F(StoreTest, DefinitionsWrittenByAnotherStoreAreSeen) {
  auto other = open(true);
  define_calendar();
  // `other` has never seen these keys; a miss reloads its cache.
  EXPECT_NO_THROW(
      (void)other->set("ada", "calendar.timezone", std::string("Europe/Madrid"), m_web));
  EXPECT_EQ(other->definitions().size(), 5u);
}

TEST_F(StoreTest, HistoryShowsWhoChangedWhatAndWhy) {
  define_calendar();
  (void)m_store->set("ada", "calendar.timezone", std::string("Europe/London"), m_web);
  Metadata mobile{"ada@example.com", "calendar-mobile", "travelling", "req-77", ""};
  (void)m_store->set("ada", "calendar.timezone", std::string("America/New_York"), mobile);
  (void)m_store->reset("ada", "calendar.timezone", m_web);
  const auto h = m_store->history("ada");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[1].metadata.source, "calendar-mobile");
  EXPECT_EQ(h[1].metadata.correlation_id, "req-77");
  EXPECT_EQ(std::get<PreferenceSet>(h[1].data).value, Value(std::string("America/New_York")));
  EXPECT_TRUE(std::holds_alternative<PreferenceReset>(h[2].data));
  EXPECT_EQ(m_store->history("ada", 1, 1).at(0).stream_version, 2);
}

TEST_F(StoreTest, SubscribersHearOfWritesAndCannotBreakThem) {
  define_calendar();
  std::vector<AppendedEvents> heard;
  auto careless = m_store->on_appended(
      [](const AppendedEvents&) { throw std::runtime_error("a subscriber that throws"); });
  auto listener = m_store->on_appended([&heard](const AppendedEvents& e) { heard.push_back(e); });
  AppendOptions once;
  once.event_ids = {new_event_id()};
  const auto r = m_store->set("ada", "calendar.timezone", std::string("Asia/Tokyo"), m_web, once);
  EXPECT_EQ(r.stream_version, 1);  // the throwing slot did not fail the write
  (void)m_store->set("ada", "calendar.timezone", std::string("Asia/Tokyo"), m_web,
                     once);  // a retry
  (void)m_store->set_many("ada",
                          {{"calendar.timezone", std::string("UTC")},
                           {"calendar.default_meeting_minutes", std::int64_t{20}}},
                          m_web);
  ASSERT_EQ(heard.size(), 2u);  // the retry stored nothing and was not announced
  EXPECT_EQ(heard[0].stream_id, "ada");
  EXPECT_EQ(heard[0].result.stream_version, 1);
  ASSERT_EQ(heard[1].events.size(), 2u);
  EXPECT_EQ(std::get<PreferenceSet>(heard[1].events[1]).key, "calendar.default_meeting_minutes");
  listener.disconnect();
  (void)m_store->reset("ada", "calendar.timezone", m_web);
  EXPECT_EQ(heard.size(), 2u);
  EXPECT_EQ(m_store->get("ada", "calendar.timezone"), Value(std::string("UTC")));
}

// The same component the runner runs asynchronously, run inline: its table is current when the
// write returns, and a failure fails the write.
TEST_F(StoreTest, InlineProjectionIsCurrentWhenTheWriteReturns) {
  define_calendar();
  StoreOptions o;
  o.database_url = m_url;
  o.inline_projections = {std::make_shared<projections::ValueCountsProjection>()};
  Store store(o);
  (void)store.set("ada", "calendar.timezone", std::string("Asia/Tokyo"), m_web);
  (void)store.set("grace", "calendar.timezone", std::string("Asia/Tokyo"), m_web);
  (void)store.set_many("linus",
                       {{"calendar.timezone", std::string("UTC")},
                        {"calendar.default_meeting_minutes", std::int64_t{25}}},
                       m_web);
  (void)store.reset("ada", "calendar.timezone", m_web);
  pqxx::connection c(m_url);
  pqxx::nontransaction tx(c);
  EXPECT_EQ(tx.exec1("SELECT string_agg(value::text || ':' || users, ',' ORDER BY value::text) "
                     "FROM prefstore.preference_value_counts")[0]
                .as<std::string>(),
            "\"Asia/Tokyo\":1,\"UTC\":1,25:1");
}

TEST_F(StoreTest, FailingInlineProjectionFailsTheWriteAndWritesNothing) {
  define_calendar();
  struct Broken final : projections::Projection {
    std::string name() const override { return "broken"; }
    std::vector<std::string> tables() const override { return {"no_such_table"}; }
    void apply(const std::vector<RecordedEvent>&, projections::ProjectionContext& ctx) override {
      (void)ctx.exec("INSERT INTO {no_such_table} VALUES (1)");
    }
  };
  StoreOptions o;
  o.database_url = m_url;
  o.inline_projections = {std::make_shared<Broken>()};
  Store store(o);
  EXPECT_THROW((void)store.set("ada", "calendar.timezone", std::string("UTC"), m_web), Error);
  EXPECT_EQ(m_store->version("ada"), 0);
  EXPECT_EQ(m_store->get("ada", "calendar.timezone"), Value(std::string("UTC")));  // the default
}

TEST_F(StoreTest, OneStoreServesManyThreads) {
  define_calendar();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      const std::string user = "user-" + std::to_string(t % 4);
      for (int i = 0; i < 25; ++i) {
        try {
          (void)m_store->set(user, "calendar.default_meeting_minutes",
                             std::int64_t{5 + (t * 25 + i) % 400}, m_web);
          (void)m_store->get_all(user);
        } catch (const std::exception& e) {
          ++failures;
          ADD_FAILURE() << e.what();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::int64_t total = 0;
  for (int u = 0; u < 4; ++u) total += m_store->version("user-" + std::to_string(u));
  EXPECT_EQ(total, 16 * 25);
}

// Writes are announced with a NOTIFY only when StoreOptions::announce_appends is set: a NOTIFY
// serialises the commits of all notifying writers (docs/performance-findings.md).
TEST_F(StoreTest, WritesAreAnnouncedOnlyWhenAskedTo) {
  define_calendar();
  storage::NotificationListener listener(m_url, storage::kEventsChannel);
  EXPECT_FALSE(listener.wait(std::chrono::milliseconds(300)));  // the definitions were quiet
  ASSERT_TRUE(listener.connected());
  (void)m_store->set("ada", "calendar.timezone", std::string("Europe/London"), m_web);
  EXPECT_FALSE(listener.wait(std::chrono::milliseconds(500)));
  StoreOptions o;
  o.database_url = m_url;
  o.announce_appends = true;
  Store announcing(o);
  (void)announcing.set("ada", "calendar.timezone", std::string("Europe/Berlin"), m_web);
  EXPECT_TRUE(listener.wait(std::chrono::seconds(5)));
  EXPECT_EQ(m_store->get("ada", "calendar.timezone"), Value(std::string("Europe/Berlin")));
}

}  // namespace
}  // namespace prefstore
