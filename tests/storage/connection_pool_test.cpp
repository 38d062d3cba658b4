// ConnectionPool against the real server: bounded size under concurrency, exhaustion, waiting,
// recovery from a restarted server and from terminated or broken connections, session settings,
// invalid options, an unreachable server, and the move-only PooledConnection handle.
#include "prefstore/storage/connection_pool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "test_cluster.hpp"

namespace prefstore::storage {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using prefstore::testing::TestCluster;

PoolOptions options_for(std::string conninfo, std::size_t max_size) {
  PoolOptions options;
  options.conninfo = std::move(conninfo);
  options.max_size = max_size;
  return options;
}

// An application_name no other test in this process (or another process) uses.
std::string unique_application_name(const std::string& what) {
  static std::atomic<int> counter{0};
  return "pooltest-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Runs `sql` on the pooled connection and returns the single value; database errors are
// translated as storage code does, so failures show up as prefstore errors.
std::string query_value(const PooledConnection& handle, const std::string& sql) {
  try {
    pqxx::nontransaction tx(detail::native(handle));
    return tx.exec1(sql)[0].c_str();
  } catch (...) {
    detail::rethrow_translated("test query \"" + sql + "\"");
  }
}

int backend_pid(const PooledConnection& handle) {
  return std::stoi(query_value(handle, "SELECT pg_backend_pid()"));
}

// A server that cannot be reached (a socket folder that does not exist).
const char* const kUnreachableServer = "host=/nonexistent/dir dbname=nothing";

// Acquire plus one query, translated: what a storage operation does.
int acquire_and_query_pid(ConnectionPool& pool) {
  PooledConnection handle = pool.acquire();
  return backend_pid(handle);
}

// Terminates a backend from a separate, unpooled connection and waits until it is gone.
void terminate_backend(const std::string& conninfo, int pid) {
  pqxx::connection killer(conninfo);
  pqxx::nontransaction tx(killer);
  const bool terminated =
      tx.exec_params1("SELECT pg_terminate_backend($1, 5000)", pid)[0].as<bool>();
  ASSERT_TRUE(terminated) << "pg_terminate_backend(" << pid << ") did not end the backend";
}

// True when `text` holds `number` as a whole number (not as part of a longer one).
bool contains_number(const std::string& text, const std::string& number) {
  for (std::size_t at = text.find(number); at != std::string::npos;
       at = text.find(number, at + 1)) {
    const bool starts = at == 0 || !std::isdigit(static_cast<unsigned char>(text[at - 1]));
    const std::size_t end = at + number.size();
    const bool ends = end == text.size() || !std::isdigit(static_cast<unsigned char>(text[end]));
    if (starts && ends) return true;
  }
  return false;
}

std::string show(const PoolStats& s) {
  return "open=" + std::to_string(s.open) + " idle=" + std::to_string(s.idle) +
         " in_use=" + std::to_string(s.in_use) + " waiting=" + std::to_string(s.waiting) +
         " created=" + std::to_string(s.created) + " discarded=" + std::to_string(s.discarded) +
         " acquired=" + std::to_string(s.acquired) + " timeouts=" + std::to_string(s.timeouts) +
         " connect_failures=" + std::to_string(s.connect_failures);
}

// Restarts the shared cluster when a test that stopped it ends, even by a failed assertion:
// every later test in this process needs it.
class ServerRestartGuard {
 public:
  ~ServerRestartGuard() {
    try {
      if (!TestCluster::instance().server().running()) TestCluster::instance().server().start();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not restart the test cluster: " << e.what();
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Concurrency: 16 threads share 4 connections.

struct WorkloadReport {
  int served = 0;
  int failed = 0;
  std::string first_failure;
  std::set<int> pids;
  long max_open_seen_by_server = 0;  // pg_stat_activity rows with the pool's application_name
  PoolStats stats;
};

WorkloadReport run_sixteen_threads_on_four_connections() {
  constexpr int kThreads = 16;
  constexpr int kRequestsPerThread = 50;
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 4);
  options.application_name = unique_application_name("sixteen");
  ConnectionPool pool(options);

  WorkloadReport report;
  std::mutex mutex;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRequestsPerThread; ++i) {
        try {
          PooledConnection handle = pool.acquire();
          pqxx::nontransaction tx(detail::native(handle));
          // The server's own count of this pool's sessions, seen by every request.
          const pqxx::row row = tx.exec1(
              "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_stat_activity "
              "WHERE application_name = current_setting('application_name'))");
          std::lock_guard lock(mutex);
          ++report.served;
          report.pids.insert(row[0].as<int>());
          report.max_open_seen_by_server =
              std::max(report.max_open_seen_by_server, row[1].as<long>());
        } catch (const std::exception& e) {
          std::lock_guard lock(mutex);
          if (report.failed++ == 0) report.first_failure = e.what();
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  report.stats = pool.stats();
  std::cout << "16 threads x 50 requests: served " << report.served << ", failed " << report.failed
            << ", distinct backend pids " << report.pids.size() << ", most sessions seen by the "
            << "server " << report.max_open_seen_by_server << "; " << show(report.stats) << "\n";
  return report;
}

TEST(ConnectionPool, ServesSixteenThreadsWithFourConnections) {
  const WorkloadReport report = run_sixteen_threads_on_four_connections();
  EXPECT_EQ(report.served, 800) << "first failure: " << report.first_failure;
  EXPECT_EQ(report.failed, 0) << "first failure: " << report.first_failure;
  EXPECT_EQ(report.stats.acquired, 800u);
  EXPECT_EQ(report.stats.timeouts, 0u);
  EXPECT_GE(report.pids.size(), 1u);
  EXPECT_LE(report.pids.size(), 4u);
  EXPECT_LE(report.stats.created, 4u);
  EXPECT_EQ(report.stats.in_use, 0u);
  EXPECT_EQ(report.stats.waiting, 0u);
}

TEST(ConnectionPool, NeverHasMoreThanMaxSizeSessionsOnTheServer) {
  const WorkloadReport report = run_sixteen_threads_on_four_connections();
  ASSERT_EQ(report.failed, 0) << "first failure: " << report.first_failure;
  EXPECT_GE(report.max_open_seen_by_server, 1);
  EXPECT_LE(report.max_open_seen_by_server, 4);
  EXPECT_LE(report.stats.open, 4u);
}

// ---------------------------------------------------------------------------------------------
// Exhaustion and waiting.

TEST(ConnectionPool, AcquireThrowsUnavailableWhenExhaustedForAcquireTimeout) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 2);
  options.acquire_timeout = 200ms;
  ConnectionPool pool(options);
  PooledConnection first = pool.acquire();
  PooledConnection second = pool.acquire();

  const auto started = Clock::now();
  std::string message;
  try {
    PooledConnection third = pool.acquire();
    ADD_FAILURE() << "a third connection was handed out by a pool of 2";
  } catch (const UnavailableError& e) {
    message = e.what();
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  std::cout << "exhausted after " << waited.count() << " ms: " << message << "\n";

  EXPECT_NE(message.find("exhausted"), std::string::npos) << message;
  EXPECT_TRUE(contains_number(message, "2")) << message;
  EXPECT_GE(waited, 150ms);
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.timeouts, 1u) << show(stats);
  EXPECT_EQ(stats.in_use, 2u) << show(stats);
  EXPECT_EQ(stats.waiting, 0u) << show(stats);
}

TEST(ConnectionPool, AcquireSucceedsAgainOnceAConnectionIsReleased) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 2);
  options.acquire_timeout = 200ms;
  ConnectionPool pool(options);
  PooledConnection first = pool.acquire();
  PooledConnection second = pool.acquire();
  EXPECT_THROW((void)pool.acquire(), UnavailableError);

  const int released_pid = backend_pid(first);
  first.release();
  PooledConnection again = pool.acquire();
  ASSERT_TRUE(again);
  EXPECT_EQ(backend_pid(again), released_pid);  // the released connection, not a new one
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.created, 2u) << show(stats);
  EXPECT_EQ(stats.acquired, 3u) << show(stats);
  EXPECT_EQ(stats.timeouts, 1u) << show(stats);
}

TEST(ConnectionPool, WaitingAcquireGetsTheConnectionAnotherThreadReleases) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.acquire_timeout = 10s;
  ConnectionPool pool(options);
  PooledConnection held = pool.acquire();
  const int held_pid = backend_pid(held);

  std::atomic<int> waiter_pid{0};
  std::string waiter_error;
  Clock::duration waiter_waited{};
  std::thread waiter([&] {
    const auto started = Clock::now();
    try {
      PooledConnection mine = pool.acquire();
      waiter_waited = Clock::now() - started;
      waiter_pid = backend_pid(mine);
    } catch (const std::exception& e) {
      waiter_error = e.what();
    }
  });
  const auto deadline = Clock::now() + 5s;
  while (pool.stats().waiting == 0 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pool.stats().waiting, 1u) << "the second acquire() did not block";
  std::this_thread::sleep_for(50ms);
  held.release();
  waiter.join();

  const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(waiter_waited);
  std::cout << "waiter got backend " << waiter_pid << " after " << waited_ms.count() << " ms\n";
  EXPECT_EQ(waiter_error, "");
  EXPECT_EQ(waiter_pid, held_pid);
  EXPECT_GE(waited_ms, 50ms);
  EXPECT_LT(waited_ms, 5s);
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.timeouts, 0u) << show(stats);
  EXPECT_EQ(stats.acquired, 2u) << show(stats);
  EXPECT_EQ(stats.created, 1u) << show(stats);
}

// ---------------------------------------------------------------------------------------------
// Broken connections and a restarted server.

TEST(ConnectionPool, FailsWithUnavailableWhileServerIsDownAndRecoversAfterRestart) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  ConnectionPool pool(options_for(conninfo, 2));
  const int pid_before = acquire_and_query_pid(pool);
  ASSERT_GT(pid_before, 0);

  ServerRestartGuard guard;
  TestCluster::instance().server().stop(StopMode::immediate);
  ASSERT_FALSE(TestCluster::instance().server().running());

  // The idle connection died with the server: either acquire() notices and fails to open a new
  // one, or the query on it fails. Either way the caller sees UnavailableError.
  EXPECT_THROW((void)acquire_and_query_pid(pool), UnavailableError);
  // By now the dead connection is gone, so acquire() itself must try to connect, and fail.
  EXPECT_THROW((void)pool.acquire(), UnavailableError);
  const PoolStats down = pool.stats();
  std::cout << "while down: " << show(down) << "\n";
  EXPECT_GE(down.connect_failures, 1u) << show(down);
  EXPECT_EQ(down.open, 0u) << show(down);

  TestCluster::instance().server().start();
  int pid_after = 0;
  EXPECT_NO_THROW(pid_after = acquire_and_query_pid(pool));
  EXPECT_GT(pid_after, 0);
  EXPECT_NE(pid_after, pid_before);
  const PoolStats up = pool.stats();
  std::cout << "after restart: " << show(up) << "\n";
  EXPECT_GE(up.discarded, 1u) << show(up);
  EXPECT_EQ(up.created, 2u) << show(up);
}

TEST(ConnectionPool, ReplacesIdleConnectionsKilledByAServerRestart) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  ConnectionPool pool(options_for(conninfo, 2));
  const int pid_before = acquire_and_query_pid(pool);

  {
    ServerRestartGuard guard;
    TestCluster::instance().server().stop(StopMode::immediate);
  }
  ASSERT_TRUE(TestCluster::instance().server().running());

  // Documented: a connection failing the liveness probe on acquire is dropped and replaced, so
  // the first use after the restart already works.
  int pid_after = 0;
  try {
    pid_after = acquire_and_query_pid(pool);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "first acquire+query after the restart failed: " << e.what();
  }
  const PoolStats stats = pool.stats();
  std::cout << "after restart: backend " << pid_before << " -> " << pid_after << "; " << show(stats)
            << "\n";
  EXPECT_GT(pid_after, 0);
  EXPECT_NE(pid_after, pid_before);
  EXPECT_EQ(stats.discarded, 1u) << show(stats);
}

TEST(ConnectionPool, ReplacesAnIdleConnectionTerminatedByTheServer) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  ConnectionPool pool(options_for(conninfo, 2));
  const int victim = acquire_and_query_pid(pool);
  ASSERT_EQ(pool.stats().idle, 1u);
  terminate_backend(conninfo, victim);

  int replacement = 0;
  try {
    replacement = acquire_and_query_pid(pool);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "acquire handed out the terminated connection: " << e.what();
  }
  const PoolStats stats = pool.stats();
  std::cout << "terminated backend " << victim << ", next acquire got " << replacement << "; "
            << show(stats) << "\n";
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, victim);
  EXPECT_EQ(stats.discarded, 1u) << show(stats);
  EXPECT_EQ(stats.created, 2u) << show(stats);
}

TEST(ConnectionPool, ReplacesATerminatedConnectionIdleLongerThanValidateAfterIdle) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  PoolOptions options = options_for(conninfo, 2);
  options.validate_after_idle = 0ms;  // every idle connection gets the SELECT 1 round trip
  ConnectionPool pool(options);
  const int victim = acquire_and_query_pid(pool);
  terminate_backend(conninfo, victim);

  int replacement = 0;
  try {
    replacement = acquire_and_query_pid(pool);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "acquire handed out the terminated connection: " << e.what();
  }
  const PoolStats stats = pool.stats();
  std::cout << "terminated backend " << victim << ", next acquire got " << replacement << "; "
            << show(stats) << "\n";
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, victim);
  EXPECT_EQ(stats.discarded, 1u) << show(stats);
}

TEST(ConnectionPool, DiscardsAConnectionThatBrokeWhileInUse) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  ConnectionPool pool(options_for(conninfo, 2));
  {
    PooledConnection handle = pool.acquire();
    const int victim = backend_pid(handle);
    terminate_backend(conninfo, victim);
    bool broke = false;
    try {
      pqxx::nontransaction tx(detail::native(handle));
      tx.exec("SELECT 1");
    } catch (const pqxx::broken_connection&) {
      broke = true;
    }
    EXPECT_TRUE(broke) << "a query on a terminated backend did not throw broken_connection";
    EXPECT_EQ(pool.stats().open, 1u);
  }
  const PoolStats stats = pool.stats();
  std::cout << "after giving back the broken connection: " << show(stats) << "\n";
  EXPECT_EQ(stats.discarded, 1u) << show(stats);
  EXPECT_EQ(stats.open, 0u) << show(stats);
  EXPECT_EQ(stats.idle, 0u) << show(stats);
}

// ---------------------------------------------------------------------------------------------
// Session settings.

TEST(ConnectionPool, SetsIdleInTransactionSessionTimeout) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.idle_in_transaction_timeout = 1500ms;
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SHOW idle_in_transaction_session_timeout"), "1500ms");
}

TEST(ConnectionPool, SetsStatementTimeoutWhenPositive) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.statement_timeout = 2500ms;
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SHOW statement_timeout"), "2500ms");
}

TEST(ConnectionPool, KeepsServerStatementTimeoutWhenZero) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.statement_timeout = 0ms;
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SHOW statement_timeout"), "0");
}

TEST(ConnectionPool, SetsApplicationName) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.application_name = "prefstore-pool-test";
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SHOW application_name"), "prefstore-pool-test");
}

// ---------------------------------------------------------------------------------------------
// on_acquired: the wait of every successful acquire(), for metrics.

// Records every wait on_acquired reports.
struct WaitRecorder {
  std::mutex mutex;
  std::vector<std::chrono::nanoseconds> waits;
  std::vector<std::chrono::nanoseconds> snapshot() {
    std::lock_guard lock(mutex);
    return waits;
  }
};

TEST(ConnectionPool, OnAcquiredReportsTheWaitOfEverySuccessfulAcquire) {
  WaitRecorder recorder;
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.acquire_timeout = 5000ms;
  options.on_acquired = [&recorder](std::chrono::nanoseconds waited) {
    std::lock_guard lock(recorder.mutex);
    recorder.waits.push_back(waited);
  };
  ConnectionPool pool(options);

  // 1. A new connection: the wait includes opening it.
  const auto before_first = Clock::now();
  PooledConnection first = pool.acquire();
  const auto first_took = Clock::now() - before_first;
  auto waits = recorder.snapshot();
  ASSERT_EQ(waits.size(), 1u);
  EXPECT_GT(waits[0].count(), 0);
  EXPECT_LE(waits[0], first_took);

  // 2. Another thread waits until the only connection comes back 300 ms later.
  std::chrono::nanoseconds waited_in_thread{0};
  std::thread waiter([&] {
    const auto started = Clock::now();
    PooledConnection second = pool.acquire();
    waited_in_thread = Clock::now() - started;
  });
  std::this_thread::sleep_for(300ms);
  first.release();
  waiter.join();
  waits = recorder.snapshot();
  ASSERT_EQ(waits.size(), 2u);
  EXPECT_GE(waits[1], 250ms) << "reported " << waits[1].count() << " ns";
  EXPECT_LE(waits[1], waited_in_thread);

  // 3. An idle connection: reported too, quickly.
  { PooledConnection third = pool.acquire(); }
  waits = recorder.snapshot();
  ASSERT_EQ(waits.size(), 3u);
  EXPECT_LT(waits[2], 250ms);
  EXPECT_EQ(pool.stats().acquired, 3u);
}

TEST(ConnectionPool, OnAcquiredIsNotCalledWhenAcquireFails) {
  std::atomic<int> calls{0};
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.acquire_timeout = 100ms;
  options.on_acquired = [&calls](std::chrono::nanoseconds) { ++calls; };
  ConnectionPool pool(options);
  PooledConnection held = pool.acquire();
  EXPECT_THROW((void)pool.acquire(), UnavailableError);  // exhausted
  EXPECT_EQ(calls.load(), 1);

  PoolOptions unreachable = options_for(kUnreachableServer, 1);
  unreachable.on_acquired = [&calls](std::chrono::nanoseconds) { ++calls; };
  ConnectionPool failing(unreachable);
  EXPECT_THROW((void)failing.acquire(), UnavailableError);  // cannot connect
  EXPECT_EQ(calls.load(), 1);
}

TEST(ConnectionPool, AThrowingOnAcquiredCostsTheCallerNothing) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.on_acquired = [](std::chrono::nanoseconds) { throw std::runtime_error("hook failed"); };
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SELECT 1"), "1");
}

// ---------------------------------------------------------------------------------------------
// transaction_pooling: nothing session-level (the PgBouncer test runs a real proxy).

TEST(ConnectionPool, TransactionPoolingSetsNoSessionSettings) {
  PoolOptions options = options_for(TestCluster::instance().fresh_database(), 1);
  options.transaction_pooling = true;
  options.idle_in_transaction_timeout = 1500ms;
  ConnectionPool pool(options);
  PooledConnection handle = pool.acquire();
  EXPECT_EQ(query_value(handle, "SHOW idle_in_transaction_session_timeout"), "0");
  EXPECT_EQ(query_value(handle, "SELECT current_user = session_user"), "t");
}

// exec_statement prepares by default and runs the SQL unprepared with transaction_pooling.
TEST(ConnectionPool, TransactionPoolingRunsStatementsUnprepared) {
  const std::string url = TestCluster::instance().fresh_database();
  for (const bool pooling : {false, true}) {
    PoolOptions options = options_for(url, 1);
    options.transaction_pooling = pooling;
    ConnectionPool pool(options);
    PooledConnection handle = pool.acquire();
    pqxx::nontransaction tx(detail::native(handle));
    EXPECT_EQ(detail::exec_statement(tx, handle, "pooltest_add", "SELECT $1::int + 1", 41)[0][0]
                  .as<int>(),
              42);
    const auto prepared =
        tx.exec1("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pooltest_add'")[0]
            .as<int>();
    EXPECT_EQ(prepared, pooling ? 0 : 1) << "transaction_pooling " << pooling;
  }
}

TEST(ConnectionPool, RejectsARoleWithTransactionPooling) {
  PoolOptions options = options_for("dbname=anything", 1);
  options.transaction_pooling = true;
  options.role = "prefstore_writer";
  std::string message;
  try {
    ConnectionPool pool(options);
  } catch (const UsageError& e) {
    message = e.what();
  }
  std::cout << "message: " << message << "\n";
  ASSERT_NE(message, "") << "no UsageError";
  EXPECT_NE(message.find("prefstore_writer"), std::string::npos) << message;
  EXPECT_NE(message.find("transaction_pooling"), std::string::npos) << message;
  EXPECT_NE(message.find("SET ROLE is session state"), std::string::npos) << message;
  EXPECT_NE(message.find("GRANT prefstore_writer TO <login>"), std::string::npos) << message;
}

TEST(ConnectionPool, RejectsAStatementTimeoutWithTransactionPooling) {
  PoolOptions options = options_for("dbname=anything", 1);
  options.transaction_pooling = true;
  options.statement_timeout = 2500ms;
  std::string message;
  try {
    ConnectionPool pool(options);
  } catch (const UsageError& e) {
    message = e.what();
  }
  ASSERT_NE(message, "") << "no UsageError";
  EXPECT_NE(message.find("ALTER ROLE"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// Invalid options and an unreachable server.

TEST(ConnectionPool, RejectsMaxSizeZero) {
  EXPECT_THROW(ConnectionPool pool(options_for("dbname=anything", 0)), UsageError);
}

TEST(ConnectionPool, RejectsUnparsableConninfo) {
  EXPECT_THROW(ConnectionPool pool(options_for("host='unterminated", 1)), UsageError);
}

TEST(ConnectionPool, UnparsableConninfoErrorHidesPassword) {
  std::string message;
  try {
    ConnectionPool pool(options_for("password=s3cret-pw host='unterminated", 1));
  } catch (const UsageError& e) {
    message = e.what();
  }
  std::cout << "message: " << message << "\n";
  EXPECT_NE(message, "") << "no UsageError";
  EXPECT_EQ(message.find("s3cret-pw"), std::string::npos) << message;
}

const char* const kUnreachable = "host=/nonexistent/dir dbname=nothing password=s3cret-pw";

TEST(ConnectionPool, AcquireThrowsUnavailableWhenServerUnreachable) {
  ConnectionPool pool(options_for(kUnreachable, 2));
  EXPECT_THROW((void)pool.acquire(), UnavailableError);
}

TEST(ConnectionPool, UnreachableServerErrorHidesPassword) {
  ConnectionPool pool(options_for(kUnreachable, 2));
  std::string message;
  try {
    (void)pool.acquire();
  } catch (const UnavailableError& e) {
    message = e.what();
  }
  std::cout << "message: " << message << "\n";
  EXPECT_NE(message, "") << "no UnavailableError";
  EXPECT_EQ(message.find("s3cret-pw"), std::string::npos) << message;
  EXPECT_NE(message.find("/nonexistent/dir"), std::string::npos) << message;
}

TEST(ConnectionPool, CountsAFailedConnectAttemptAndKeepsNothingOpen) {
  ConnectionPool pool(options_for(kUnreachable, 2));
  EXPECT_THROW((void)pool.acquire(), UnavailableError);
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.connect_failures, 1u) << show(stats);
  EXPECT_EQ(stats.open, 0u) << show(stats);
  EXPECT_EQ(stats.created, 0u) << show(stats);
  EXPECT_EQ(stats.acquired, 0u) << show(stats);
}

// ---------------------------------------------------------------------------------------------
// PooledConnection: a move-only handle.

TEST(PooledConnection, DefaultConstructedIsEmpty) {
  const PooledConnection handle;
  EXPECT_FALSE(handle);
}

TEST(PooledConnection, MoveLeavesSourceEmpty) {
  ConnectionPool pool(options_for(TestCluster::instance().fresh_database(), 2));
  PooledConnection source = pool.acquire();
  const int pid = backend_pid(source);
  PooledConnection target = std::move(source);
  EXPECT_FALSE(source);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  ASSERT_TRUE(target);
  EXPECT_EQ(backend_pid(target), pid);
  EXPECT_EQ(pool.stats().in_use, 1u);
}

TEST(PooledConnection, ReleaseGivesTheConnectionBack) {
  ConnectionPool pool(options_for(TestCluster::instance().fresh_database(), 2));
  PooledConnection handle = pool.acquire();
  ASSERT_EQ(pool.stats().idle, 0u);
  handle.release();
  EXPECT_FALSE(handle);
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.idle, 1u) << show(stats);
  EXPECT_EQ(stats.in_use, 0u) << show(stats);
  EXPECT_EQ(stats.discarded, 0u) << show(stats);
}

TEST(PooledConnection, ReleasingAMovedFromHandleGivesNothingBack) {
  ConnectionPool pool(options_for(TestCluster::instance().fresh_database(), 2));
  PooledConnection source = pool.acquire();
  PooledConnection target = std::move(source);
  source.release();  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(pool.stats().idle, 0u);
  EXPECT_EQ(pool.stats().in_use, 1u);
  target.release();
  EXPECT_EQ(pool.stats().idle, 1u);
}

TEST(PooledConnection, MoveAssignmentGivesBackTheOverwrittenConnection) {
  ConnectionPool pool(options_for(TestCluster::instance().fresh_database(), 2));
  PooledConnection first = pool.acquire();
  PooledConnection second = pool.acquire();
  const int second_pid = backend_pid(second);
  first = std::move(second);
  EXPECT_FALSE(second);  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(first);
  EXPECT_EQ(backend_pid(first), second_pid);
  const PoolStats stats = pool.stats();
  EXPECT_EQ(stats.idle, 1u) << show(stats);
  EXPECT_EQ(stats.in_use, 1u) << show(stats);
}

}  // namespace
}  // namespace prefstore::storage
