// EventLog on the real server: optimistic concurrency, atomic batches, idempotent retries, the
// inline projection, paged reads and the commit-safe reader. Each test has its own database.
#include "prefstore/storage/event_log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <pqxx/pqxx>
#include <thread>

#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/migrations.hpp"
#include "test_cluster.hpp"

namespace prefstore::storage {
namespace {

using prefstore::testing::TestCluster;

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_url = TestCluster::instance().fresh_database();
    m_pool = make_pool(16);
    (void)MigrationRunner(*m_pool).migrate();
    m_log = std::make_unique<EventLog>(*m_pool);
  }
  std::unique_ptr<ConnectionPool> make_pool(std::size_t size) {
    PoolOptions o;
    o.conninfo = m_url;
    o.max_size = size;
    o.acquire_timeout = std::chrono::seconds(60);
    return std::make_unique<ConnectionPool>(o);
  }
  std::string one(const std::string& sql) {
    pqxx::connection c(m_url);
    pqxx::nontransaction tx(c);
    const auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }
  static NewEvent set(const std::string& key, Value value, std::string id = {}) {
    return NewEvent{std::move(id), PreferenceSet{key, std::move(value)}};
  }
  static NewEvent reset(const std::string& key) { return NewEvent{{}, PreferenceReset{key}}; }

  std::string m_url;
  std::unique_ptr<ConnectionPool> m_pool;
  std::unique_ptr<EventLog> m_log;
  Metadata m_meta{"ada", "calendar-web", "onboarding", "req-1", ""};
};

TEST_F(EventLogTest, AppendNumbersEventsFromOneAndReadsThemBack) {
  const auto r = m_log->append("user-ada",
                               {set("calendar.timezone", std::string("Europe/London")),
                                set("calendar.default_meeting_minutes", std::int64_t{30}),
                                set("notifications.channels", StringList{"email", "push"})},
                               ExpectedVersion::no_stream(), m_meta);
  EXPECT_EQ(r.stream_version, 3);
  EXPECT_FALSE(r.duplicate);
  EXPECT_GT(r.global_position, 0);
  const auto events = m_log->read_stream("user-ada");
  ASSERT_EQ(events.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(events[i].stream_version, static_cast<std::int64_t>(i) + 1);
    EXPECT_EQ(events[i].metadata, m_meta);
    EXPECT_EQ(events[i].recorded_at, r.recorded_at);
  }
  EXPECT_EQ(events[2].global_position, r.global_position);
  EXPECT_EQ(std::get<PreferenceSet>(events[0].data).value, Value(std::string("Europe/London")));
  EXPECT_EQ(m_log->stream_version("user-ada"), 3);
  EXPECT_EQ(m_log->stream_version("user-nobody"), std::nullopt);
}

TEST_F(EventLogTest, ReadsForwardAndBackwardWithLimitsAcrossPages) {
  for (int i = 0; i < 25; ++i) {
    (void)m_log->append("user-ada", {set("calendar.default_meeting_minutes", std::int64_t{i})},
                        ExpectedVersion::any(), m_meta);
  }
  std::vector<std::int64_t> seen;
  auto collect = [&seen](const RecordedEvent& e) {
    seen.push_back(e.stream_version);
    return true;
  };
  EXPECT_EQ(m_log->read_stream("user-ada", ReadDirection::forward, 5, 10, collect, 3), 10);
  EXPECT_EQ(seen, (std::vector<std::int64_t>{5, 6, 7, 8, 9, 10, 11, 12, 13, 14}));
  seen.clear();
  EXPECT_EQ(m_log->read_stream("user-ada", ReadDirection::backward, INT64_MAX, 4, collect, 3), 4);
  EXPECT_EQ(seen, (std::vector<std::int64_t>{25, 24, 23, 22}));
  seen.clear();
  EXPECT_EQ(m_log->read_stream("user-ada", ReadDirection::forward, 26, 10, collect), 0);
  EXPECT_EQ(m_log->read_stream(
                "user-ada", ReadDirection::forward, 1, 100,
                [&](const RecordedEvent& e) { return e.stream_version < 7; }, 4),
            7);
}

// The common write, one set with its inline projection, costs one round trip to the server.
// Oracle: libpq's protocol trace of the connection counts one ReadyForQuery (one exchange).
TEST_F(EventLogTest, SingleEventAppendWithItsProjectionIsOneRoundTrip) {
  auto pool = make_pool(1);
  EventLog log(*pool);
  (void)log.append("user-ada", {set("calendar.timezone", std::string("UTC"))},
                   ExpectedVersion::any(), m_meta);  // prepares the statement once
  FILE* trace = std::tmpfile();
  ASSERT_NE(trace, nullptr);
  {
    auto handle = pool->acquire();
    detail::native(handle).trace(trace);
  }
  (void)log.append("user-ada", {set("calendar.timezone", std::string("Asia/Tokyo"))},
                   ExpectedVersion::any(), m_meta);
  {
    auto handle = pool->acquire();
    detail::native(handle).trace(nullptr);
  }
  std::rewind(trace);
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, trace)) > 0;) text.append(buf, n);
  std::fclose(trace);
  int exchanges = 0;
  for (std::size_t at = text.find("ReadyForQuery"); at != std::string::npos;
       at = text.find("ReadyForQuery", at + 1)) {
    ++exchanges;
  }
  std::cout << "round trips of one append: " << exchanges << "\n";
  EXPECT_EQ(exchanges, 1) << text;
  EXPECT_EQ(CurrentState(*m_pool).get("user-ada", "calendar.timezone")->value,
            Value(std::string("Asia/Tokyo")));
}

TEST_F(EventLogTest, StaleExpectedVersionIsAConflictCarryingTheActualVersion) {
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("UTC"))},
                      ExpectedVersion::no_stream(), m_meta);
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("Asia/Tokyo"))},
                      ExpectedVersion::exactly(1), m_meta);
  try {
    (void)m_log->append("user-ada", {set("calendar.timezone", std::string("Europe/Paris"))},
                        ExpectedVersion::exactly(1), m_meta);
    FAIL() << "expected VersionConflictError";
  } catch (const VersionConflictError& e) {
    EXPECT_EQ(e.expected_version(), 1);
    EXPECT_EQ(e.actual_version(), 2);
    EXPECT_EQ(e.stream_id(), "user-ada");
    EXPECT_NE(std::string(e.what()).find("expected version 1, but the stream is at version 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)m_log->append("user-ada", {set("calendar.timezone", std::string("X"))},
                                   ExpectedVersion::no_stream(), m_meta),
               VersionConflictError);
  EXPECT_THROW((void)m_log->append("user-new", {set("calendar.timezone", std::string("X"))},
                                   ExpectedVersion::exactly(3), m_meta),
               VersionConflictError);
  EXPECT_EQ(m_log->stream_version("user-ada"), 2);
  EXPECT_EQ(m_log->stream_version("user-new"), std::nullopt);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "2");
}

TEST_F(EventLogTest, BatchWithOneBadEventLandsNothing) {
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("UTC"))},
                      ExpectedVersion::any(), m_meta);
  // The third event's key breaks the current-state table's CHECK: the whole append fails.
  EXPECT_THROW((void)m_log->append("user-ada",
                                   {set("calendar.timezone", std::string("Europe/Rome")),
                                    set("calendar.week_start", std::string("monday")),
                                    set("Bad Key!", std::string("x"))},
                                   ExpectedVersion::any(), m_meta),
               ValidationError);
  EXPECT_EQ(m_log->stream_version("user-ada"), 1);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "1");
  EXPECT_EQ(one("SELECT value #>> '{}' FROM prefstore.preferences_current WHERE key = "
                "'calendar.timezone'"),
            "UTC");
}

TEST_F(EventLogTest, InvalidAppendsAreRefusedBeforeTheDatabase) {
  EXPECT_THROW((void)m_log->append("user-ada", {}, ExpectedVersion::any(), m_meta),
               ValidationError);
  EXPECT_THROW((void)m_log->append("", {set("a.b", true)}, ExpectedVersion::any(), m_meta),
               ValidationError);
  EXPECT_THROW((void)m_log->append("user-ada", {set("a.b", true, "not-a-uuid")},
                                   ExpectedVersion::any(), m_meta),
               ValidationError);
  const std::string id = new_event_id();
  EXPECT_THROW((void)m_log->append("user-ada", {set("a.b", true, id), set("a.c", true, id)},
                                   ExpectedVersion::any(), m_meta),
               ValidationError);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "0");
}

// TESTING.md #2: the idempotency matrix, each retry also through a new pool (a reconnect).
TEST_F(EventLogTest, RetryWithSameIdsAndExpectedVersionReturnsTheOriginalResult) {
  const std::vector<NewEvent> batch = {
      set("calendar.timezone", std::string("UTC"), new_event_id()),
      set("calendar.week_start", std::string("monday"), new_event_id())};
  const auto first = m_log->append("user-ada", batch, ExpectedVersion::no_stream(), m_meta);
  auto other_pool = make_pool(1);
  EventLog reconnected(*other_pool);
  for (EventLog* log : {m_log.get(), &reconnected}) {
    const auto retry = log->append("user-ada", batch, ExpectedVersion::no_stream(), m_meta);
    EXPECT_TRUE(retry.duplicate);
    EXPECT_EQ(retry.stream_version, first.stream_version);
    EXPECT_EQ(retry.global_position, first.global_position);
    EXPECT_EQ(retry.recorded_at, first.recorded_at);
  }
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "2");
}

TEST_F(EventLogTest, RetryWithSameIdsLaterReturnsTheOriginalResult) {
  const std::vector<NewEvent> batch = {
      set("calendar.timezone", std::string("UTC"), new_event_id())};
  const auto first = m_log->append("user-ada", batch, ExpectedVersion::any(), m_meta);
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("Asia/Tokyo"))},
                      ExpectedVersion::any(), m_meta);
  auto other_pool = make_pool(1);
  EventLog reconnected(*other_pool);
  for (EventLog* log : {m_log.get(), &reconnected}) {
    const auto retry = log->append("user-ada", batch, ExpectedVersion::any(), m_meta);
    EXPECT_TRUE(retry.duplicate);
    EXPECT_EQ(retry.stream_version, 1);
    EXPECT_EQ(retry.global_position, first.global_position);
  }
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "2");
  // The retry did not roll the current state back.
  EXPECT_EQ(one("SELECT value #>> '{}' FROM prefstore.preferences_current"), "Asia/Tokyo");
}

TEST_F(EventLogTest, BatchPartlyOverlappingStoredIdsFailsAndStoresNothing) {
  const std::string stored_id = new_event_id();
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("UTC"), stored_id)},
                      ExpectedVersion::any(), m_meta);
  auto other_pool = make_pool(1);
  EventLog reconnected(*other_pool);
  for (EventLog* log : {m_log.get(), &reconnected}) {
    try {
      (void)log->append("user-ada",
                        {set("calendar.timezone", std::string("UTC"), stored_id),
                         set("calendar.week_start", std::string("sunday"), new_event_id())},
                        ExpectedVersion::any(), m_meta);
      FAIL() << "expected ConflictError";
    } catch (const VersionConflictError&) {
      FAIL() << "a partial overlap is not a version conflict";
    } catch (const ConflictError& e) {
      EXPECT_NE(std::string(e.what()).find(stored_id), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("1 of the 2 event ids are already stored"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "1");
  EXPECT_EQ(m_log->stream_version("user-ada"), 1);
}

TEST_F(EventLogTest, SameIdWithDifferentPayloadFailsAndStoresNothing) {
  const std::string id = new_event_id();
  (void)m_log->append("user-ada", {set("calendar.timezone", std::string("UTC"), id)},
                      ExpectedVersion::any(), m_meta);
  auto other_pool = make_pool(1);
  EventLog reconnected(*other_pool);
  for (EventLog* log : {m_log.get(), &reconnected}) {
    try {
      (void)log->append("user-ada", {set("calendar.timezone", std::string("Europe/Oslo"), id)},
                        ExpectedVersion::any(), m_meta);
      FAIL() << "expected ConflictError";
    } catch (const ConflictError& e) {
      EXPECT_NE(std::string(e.what()).find("already stored with different content"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "1");
  EXPECT_EQ(one("SELECT value #>> '{}' FROM prefstore.preferences_current"), "UTC");
}

TEST_F(EventLogTest, InlineProjectionFollowsSetsAndResetsInTheSameTransaction) {
  CurrentState state(*m_pool);
  (void)m_log->append("user-ada",
                      {set("calendar.timezone", std::string("UTC")),
                       set("calendar.timezone", std::string("Europe/Berlin")),
                       set("calendar.default_meeting_minutes", std::int64_t{45}),
                       set("calendar.reminder.fraction", 0.25)},
                      ExpectedVersion::any(), m_meta);
  auto tz = state.get("user-ada", "calendar.timezone");
  ASSERT_TRUE(tz.has_value());
  EXPECT_EQ(tz->value, Value(std::string("Europe/Berlin")));
  EXPECT_EQ(tz->version, 2);
  EXPECT_EQ(tz->updated_by, "ada");
  EXPECT_EQ(state.get("user-ada", "calendar.reminder.fraction")->value, Value(0.25));
  EXPECT_EQ(state.get("user-ada", "calendar.default_meeting_minutes")->value,
            Value(std::int64_t{45}));
  (void)m_log->append("user-ada", {reset("calendar.timezone")}, ExpectedVersion::any(), m_meta);
  EXPECT_FALSE(state.get("user-ada", "calendar.timezone").has_value());
  EXPECT_EQ(state.get_all("user-ada").size(), 2u);
  // A reset of a key never set is an event, and changes nothing else.
  (void)m_log->append("user-ada", {reset("calendar.week_start")}, ExpectedVersion::any(), m_meta);
  EXPECT_EQ(state.get_all("user-ada").size(), 2u);
  EXPECT_EQ(m_log->stream_version("user-ada"), 6);
}

TEST_F(EventLogTest, ProjectionEqualsTheFoldOfTheStream) {
  (void)m_log->append("user-ada",
                      {set("a.one", std::int64_t{1}), set("a.two", std::string("x")),
                       reset("a.one"), set("a.three", StringList{"p", "q"}), set("a.two", true)},
                      ExpectedVersion::any(), m_meta);
  PreferenceState folded;
  for (const auto& e : m_log->read_stream("user-ada")) apply(folded, e);
  EXPECT_EQ(CurrentState(*m_pool).get_all("user-ada"), folded);
}

TEST_F(EventLogTest, RecordedAtNeverDecreasesWithinAStream) {
  for (int i = 0; i < 50; ++i) {
    (void)m_log->append("user-ada", {set("a.n", std::int64_t{i})}, ExpectedVersion::any(), m_meta);
  }
  Timestamp previous{};
  for (const auto& e : m_log->read_stream("user-ada")) {
    EXPECT_GE(e.recorded_at, previous) << "version " << e.stream_version;
    previous = e.recorded_at;
  }
}

// TESTING.md #1: lost appends. 64 threads append to one stream with fresh and stale expected
// versions. Oracle: successes reported == events stored; every loser got a VersionConflictError;
// versions are 1..n without gaps.
TEST_F(EventLogTest, SixtyFourThreadsLoseNoAppendAndReportEveryConflict) {
  std::atomic<int> successes{0}, conflicts{0}, other_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 64; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        try {
          const std::int64_t seen = m_log->stream_version("user-shared").value_or(0);
          (void)m_log->append("user-shared",
                              {set("calendar.default_meeting_minutes", std::int64_t{t * 100 + i})},
                              ExpectedVersion::exactly(seen), m_meta);
          ++successes;
        } catch (const VersionConflictError&) {
          ++conflicts;
        } catch (const std::exception& e) {
          ++other_errors;
          std::cerr << "unexpected: " << e.what() << "\n";
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::cout << "64 threads x 10 appends: " << successes << " succeeded, " << conflicts
            << " conflicts, " << other_errors << " other errors\n";
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(successes + conflicts, 640);
  EXPECT_GT(successes.load(), 0);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events WHERE stream_id = 'user-shared'"),
            std::to_string(successes.load()));
  EXPECT_EQ(one("SELECT max(stream_version) = count(*) AND min(stream_version) = 1 FROM "
                "prefstore.events WHERE stream_id = 'user-shared'"),
            "t");
  EXPECT_EQ(m_log->stream_version("user-shared"), successes.load());
}

TEST_F(EventLogTest, ThousandConcurrentWritersOnOneStreamAllLandContiguously) {
  std::atomic<int> next{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < 1000; i = next++) {
        try {
          (void)m_log->append("user-busy",
                              {set("calendar.default_meeting_minutes", std::int64_t{i})},
                              ExpectedVersion::any(), m_meta);
        } catch (const std::exception& e) {
          ++failures;
          std::cerr << e.what() << "\n";
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events WHERE stream_id = 'user-busy'"), "1000");
  EXPECT_EQ(one("SELECT count(DISTINCT stream_version) = 1000 AND max(stream_version) = 1000 "
                "FROM prefstore.events WHERE stream_id = 'user-busy'"),
            "t");
  // The current state holds the last event's value.
  EXPECT_EQ(one("SELECT p.version = 1000 AND p.value = e.payload->'value' FROM "
                "prefstore.preferences_current p JOIN prefstore.events e ON e.stream_id = "
                "p.stream_id AND e.stream_version = 1000 WHERE p.stream_id = 'user-busy'"),
            "t");
}

// Regression: a reset that waits for the stream row while a concurrent append of the same user
// inserts the value's row must still take it away. The append statement's DELETE sees only its
// own snapshot, taken before the other append committed (found about 1 run in 15 by
// BackupConcurrency.BackupsDuringFourWritersMissNothingAndRepeatNothing). Oracle: the fold of
// the log, which ends with the reset.
TEST_F(EventLogTest, AResetThatWaitedForTheStreamTakesAwayTheValueSetMeanwhile) {
  (void)m_log->append("ada", {set("calendar.default_meeting_minutes", std::int64_t{30})},
                      ExpectedVersion::any(), m_meta);
  // A concurrent append of ada, held open: the stream row locked, the time zone row inserted.
  pqxx::connection held_connection(m_url);
  pqxx::work held(held_connection);
  held.exec("UPDATE prefstore.streams SET version = 2 WHERE stream_id = 'ada'");
  held.exec(
      "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
      "schema_version, payload, recorded_at) VALUES ('ada', 2, gen_random_uuid(), "
      "'PreferenceSet', 1, '{\"key\":\"calendar.timezone\",\"type\":\"string\",\"value\":"
      "\"UTC\"}', now())");
  held.exec(
      "INSERT INTO prefstore.preferences_current (stream_id, key, value_type, value, version, "
      "updated_at, last_position) SELECT 'ada', 'calendar.timezone', 'string', '\"UTC\"', 2, "
      "now(), max(global_position) FROM prefstore.events");
  std::thread resetter([&] {
    (void)m_log->append("ada", {reset("calendar.timezone")}, ExpectedVersion::any(), m_meta);
  });
  // The reset's statement has begun once it waits for the stream row.
  bool waiting = false;
  for (int i = 0; i < 500 && !waiting; ++i) {
    waiting = one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                  "datname = current_database()") != "0";
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  held.commit();
  resetter.join();
  EXPECT_TRUE(waiting);
  EXPECT_EQ(one("SELECT version FROM prefstore.streams WHERE stream_id = 'ada'"), "3");
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.preferences_current WHERE stream_id = 'ada' AND "
                "key = 'calendar.timezone'"),
            "0");
}

TEST_F(EventLogTest, BulkAppendLandsEveryStreamInOrder) {
  std::vector<BulkEvent> events;
  for (int i = 0; i < 900; ++i) {
    const std::string user = "user-" + std::to_string(i % 3);
    events.push_back({user, set("calendar.default_meeting_minutes", std::int64_t{i}), m_meta});
  }
  EXPECT_EQ(m_log->append_bulk(events, 250), 900);
  for (int u = 0; u < 3; ++u) {
    const std::string user = "user-" + std::to_string(u);
    const auto stream = m_log->read_stream(user);
    ASSERT_EQ(stream.size(), 300u);
    for (std::size_t k = 0; k < stream.size(); ++k) {
      EXPECT_EQ(stream[k].stream_version, static_cast<std::int64_t>(k) + 1);
      EXPECT_EQ(std::get<PreferenceSet>(stream[k].data).value,
                Value(std::int64_t(static_cast<std::int64_t>(k) * 3 + u)));
    }
    EXPECT_EQ(CurrentState(*m_pool).get(user, "calendar.default_meeting_minutes")->value,
              Value(std::int64_t{897 + u}));
  }
}

TEST_F(EventLogTest, BulkAppendWithOneBadEventLandsNothing) {
  std::vector<BulkEvent> events;
  for (int i = 0; i < 100; ++i) {
    events.push_back({"user-" + std::to_string(i % 7), set("a.n", std::int64_t{i}), m_meta});
  }
  events.push_back({"user-1", set("Not A Key", std::int64_t{1}), m_meta});
  EXPECT_THROW((void)m_log->append_bulk(events, 30), ValidationError);
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events"), "0");
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.streams"), "0");
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.preferences_current"), "0");
}

TEST_F(EventLogTest, ReadAllReturnsEveryEventOnceInCommitOrder) {
  for (int i = 0; i < 30; ++i) {
    (void)m_log->append("user-" + std::to_string(i % 4), {set("a.n", std::int64_t{i})},
                        ExpectedVersion::any(), m_meta);
  }
  std::vector<std::int64_t> positions;
  LogPosition at{};
  for (;;) {
    const LogPosition next = m_log->read_all(
        at, 7,
        [&](const RecordedEvent& e, LogPosition) {
          positions.push_back(e.global_position);
          return true;
        },
        3);
    if (next == at) break;
    at = next;
  }
  ASSERT_EQ(positions.size(), 30u);
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
}

// Regression: read_all once sorted transaction ids as text ("1000" before "999"), which read
// events out of commit order and skipped those with shorter ids. Oracle: the log appended
// across a power of ten of transaction ids reads back in position order, every event once.
TEST_F(EventLogTest, ReadAllOrdersTransactionIdsNumericallyAcrossADigitBoundary) {
  pqxx::connection c(m_url);
  auto xid = [&c] {
    pqxx::work tx(c);
    const auto id = tx.exec1("SELECT pg_current_xact_id()::text")[0].as<std::uint64_t>();
    tx.commit();
    return id;
  };
  std::uint64_t boundary = 10;
  while (boundary <= xid() + 20) boundary *= 10;
  while (xid() < boundary - 10) {
  }
  for (int i = 0; i < 25; ++i) {
    (void)m_log->append("user-" + std::to_string(i % 3), {set("a.n", std::int64_t{i})},
                        ExpectedVersion::any(), m_meta);
  }
  ASSERT_GE(xid(), boundary);
  std::vector<std::int64_t> positions;
  LogPosition at{};
  for (;;) {
    const LogPosition next = m_log->read_all(at, 4, [&](const RecordedEvent& e, LogPosition) {
      positions.push_back(e.global_position);
      return true;
    });
    if (next == at) break;
    at = next;
  }
  ASSERT_EQ(positions.size(), 25u);
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
}

// DESIGN pitfall 1: an event whose transaction commits late must not be skipped.
TEST_F(EventLogTest, ReadAllWaitsForATransactionThatCommitsLate) {
  (void)m_log->append("user-early", {set("a.n", std::int64_t{0})}, ExpectedVersion::any(), m_meta);
  // A writer takes its position now and commits later.
  pqxx::connection slow(m_url);
  pqxx::work held(slow);
  held.exec(
      "INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) VALUES ('user-slow', "
      "1, now());"
      "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
      "schema_version, payload, recorded_at) VALUES ('user-slow', 1, gen_random_uuid(), "
      "'PreferenceSet', 1, '{\"key\":\"a.n\",\"type\":\"int\",\"value\":1}', now())");
  for (int i = 0; i < 5; ++i) {
    (void)m_log->append("user-late", {set("a.n", std::int64_t{i})}, ExpectedVersion::any(), m_meta);
  }
  std::vector<std::string> seen;
  auto collect = [&seen](const RecordedEvent& e, LogPosition) {
    seen.push_back(e.stream_id);
    return true;
  };
  const LogPosition first = m_log->read_all({}, 100, collect);
  // Only the event before the open transaction is visible; the five later commits wait.
  EXPECT_EQ(seen, std::vector<std::string>{"user-early"});
  held.commit();
  seen.clear();
  (void)m_log->read_all(first, 100, collect);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[0], "user-slow");
  for (std::size_t i = 1; i < 6; ++i) EXPECT_EQ(seen[i], "user-late");
}

}  // namespace
}  // namespace prefstore::storage
