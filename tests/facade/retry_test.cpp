// The Store's retry policy (retry_policy.hpp; issue 7, point 1) against a real server whose
// faults the test makes itself: the database turned read-only (SQLSTATE 25006, transient) and
// every session of it terminated.
//
// - A write that meets a transient fault is retried with backoff until the fault ends, and
//   stores exactly one event (its ids were fixed before the first attempt).
// - The deadline bounds a fault that does not end: the call fails with UnavailableError after a
//   few retries, within the deadline plus one attempt.
// - Non-transient errors (a refused value, a version conflict) are never retried.
// - max_attempts = 1 turns retries off.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "prefstore/errors.hpp"
#include "prefstore/store.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

using prefstore::testing::events_of;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::set_read_only;
using namespace std::chrono_literals;

struct Counted {
  StoreOptions options;
  std::atomic<int> retries{0};
};

void configure(Counted& c, const std::string& url) {
  c.options.database_url = url;
  c.options.strict = false;
  c.options.pool.max_size = 2;
  c.options.retry.on_retry = [&c](const Error& e, int, std::chrono::milliseconds) {
    EXPECT_TRUE(e.retryable()) << e.what();
    ++c.retries;
  };
}

TEST(RetryPolicy, ATransientFaultIsRetriedUntilItEndsAndStoresOneEvent) {
  ScratchDatabase db;
  Counted c;
  configure(c, db.url());
  c.options.retry.deadline = 20s;
  c.options.retry.max_attempts = 100;
  Store store(c.options);
  (void)store.set("ada", "calendar.time_zone", Value(std::string("Europe/London")));

  set_read_only(db.url(), true);
  std::thread heal([&] {
    std::this_thread::sleep_for(600ms);
    set_read_only(db.url(), false);
  });
  const auto result = store.set("ada", "calendar.time_zone", Value(std::string("Asia/Tokyo")));
  heal.join();
  EXPECT_EQ(result.stream_version, 2);
  EXPECT_GE(c.retries.load(), 1);
  EXPECT_EQ(events_of(db.url(), "ada"), 2);
  EXPECT_EQ(store.get("ada", "calendar.time_zone"), Value(std::string("Asia/Tokyo")));
}

TEST(RetryPolicy, TheDeadlineBoundsAFaultThatDoesNotEnd) {
  ScratchDatabase db;
  Counted c;
  configure(c, db.url());
  c.options.retry.deadline = 400ms;
  c.options.retry.max_attempts = 1000;
  Store store(c.options);
  set_read_only(db.url(), true);
  const auto started = std::chrono::steady_clock::now();
  try {
    (void)store.set("ada", "calendar.time_zone", Value(std::string("Asia/Tokyo")));
    ADD_FAILURE() << "a write to a read-only database succeeded";
  } catch (const UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find("read-only"), std::string::npos) << e.what();
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_GE(c.retries.load(), 2);
  EXPECT_LT(took, 5s);  // the deadline plus one attempt, with room for a loaded machine
  set_read_only(db.url(), false);
  EXPECT_EQ(events_of(db.url(), "ada"), 0);
}

TEST(RetryPolicy, NonTransientErrorsAreNeverRetried) {
  ScratchDatabase db;
  Counted c;
  configure(c, db.url());
  c.options.strict = true;
  Store store(c.options);
  PreferenceDefinition minutes;
  minutes.key = "calendar.default_meeting_minutes";
  minutes.type = ValueType::integer;
  minutes.constraints.min = 5;
  minutes.constraints.max = 480;
  (void)store.define(minutes);
  EXPECT_THROW((void)store.set("ada", minutes.key, Value(std::int64_t{2})), ValidationError);
  (void)store.set("ada", minutes.key, Value(std::int64_t{30}));
  AppendOptions stale;
  stale.expected = ExpectedVersion::exactly(0);
  EXPECT_THROW((void)store.set("ada", minutes.key, Value(std::int64_t{45}), {}, stale),
               VersionConflictError);
  EXPECT_EQ(c.retries.load(), 0);
  EXPECT_EQ(events_of(db.url(), "ada"), 1);
}

TEST(RetryPolicy, OneAttemptTurnsRetriesOff) {
  ScratchDatabase db;
  Counted c;
  configure(c, db.url());
  c.options.retry.max_attempts = 1;
  Store store(c.options);
  set_read_only(db.url(), true);
  EXPECT_THROW((void)store.set("ada", "calendar.time_zone", Value(std::string("UTC"))),
               UnavailableError);
  EXPECT_EQ(c.retries.load(), 0);
  set_read_only(db.url(), false);
}

}  // namespace
}  // namespace prefstore
