// Fault injection against real PostgreSQL servers (issue 7, point 2; TESTING.md tests 4 and 5).
//
// Every write uses a client-side event id fixed before its first attempt, and the test keeps a
// ledger of what each call returned: acknowledged (a result) or failed (the error's type and
// message). The oracle is the log itself, read over a direct connection at the end:
//   - lost: an acknowledged event id that is not stored: must be 0;
//   - duplicated: an event id stored more than once: must be 0;
//   - a failed write whose outcome was unknown (CommitInDoubtError, a lost connection) is stored
//     at most once; every failure is a TransientError whose message names the problem;
//   - stored events that no call of the test wrote: must be 0;
//   - Store::verify (hash chains, versions, read models) is clean.
//
// Faults: kill -9 of the postmaster and its children during 8 concurrent writers, with an
// asynchronous projector running through the kills (a); a TCP proxy cutting connections at
// random moments and right after COMMIT (or an autocommit append) reached the server, before
// its answer reached the client (b); an exhausted pool (c); a statement timeout on a lock (d); a
// server turned read-only (e); migrate, projection and write processes started at once on a
// database without schema (f); sessions ended under an idle pool (g), also deterministically
// through the proxy (h: the regression test of the "Could not obtain client encoding" message).
//
// Short by default (about a minute in all); PREFSTORE_FAULT_LONG=1 (make test-faults) runs ten
// times the cycles and durations. Each test prints what it counted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "prefstore/errors.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/storage/migrations.hpp"
#include "prefstore/store.hpp"
#include "scratch_database.hpp"
#include "tcp_proxy.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

namespace fs = std::filesystem;
using prefstore::testing::admin;
using prefstore::testing::events_of;
using prefstore::testing::free_port;
using prefstore::testing::make_temp_dir;
using prefstore::testing::run_shell;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::TcpProxy;
using prefstore::testing::TestCluster;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// --- helpers -------------------------------------------------------------------------------

// True when PREFSTORE_FAULT_LONG=1: ten times the cycles and durations.
bool long_run() {
  const char* v = std::getenv("PREFSTORE_FAULT_LONG");
  return v != nullptr && std::string(v) == "1";
}

// The factor of cycles, rounds and durations: 10 in the long form, else 1.
int scale() {
  return long_run() ? 10 : 1;
}

// Seconds elapsed since start.
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A random version-4 UUID, lower-case and dashed (how the log stores event ids).
std::string new_uuid() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  std::uniform_int_distribution<int> hex(0, 15);
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    int d = hex(engine);
    if (i == 12) d = 4;
    if (i == 16) d = 8 + (d & 3);
    s += digits[d];
  }
  return s;
}

// The most specific prefstore error type of e, for the ledger.
std::string kind_of(const std::exception& e) {
  if (dynamic_cast<const CommitInDoubtError*>(&e)) return "CommitInDoubtError";
  if (dynamic_cast<const UnavailableError*>(&e)) return "UnavailableError";
  if (dynamic_cast<const ContentionError*>(&e)) return "ContentionError";
  if (dynamic_cast<const VersionConflictError*>(&e)) return "VersionConflictError";
  if (dynamic_cast<const ConflictError*>(&e)) return "ConflictError";
  if (dynamic_cast<const ValidationError*>(&e)) return "ValidationError";
  if (dynamic_cast<const PermissionError*>(&e)) return "PermissionError";
  if (dynamic_cast<const UsageError*>(&e)) return "UsageError";
  if (dynamic_cast<const DatabaseError*>(&e)) return "DatabaseError";
  if (dynamic_cast<const Error*>(&e)) return "Error";
  return std::string("foreign exception ") + typeid(e).name();
}

// True when a transient error's message says what went wrong in words an operator knows.
bool names_the_problem(const std::string& message) {
  static const char* words[] = {"connection", "unavailable", "outcome",  "in doubt",
                                "read-only",  "shut",        "starting", "exhausted",
                                "timeout",    "recovery",    "terminat", "lost"};
  for (const char* w : words) {
    if (message.find(w) != std::string::npos) return true;
  }
  return false;
}

// True for libpqxx 6.4's words for a closed session ("Could not obtain client encoding: not
// connected.", "reactivation is inhibited") without prefstore's explanation of them.
bool bare_libpqxx(const std::string& message) {
  const bool raw = message.find("Could not obtain client encoding") != std::string::npos ||
                   message.find("reactivation is inhibited") != std::string::npos;
  return raw && message.find("the session was closed") == std::string::npos &&
         message.find("the connection was lost") == std::string::npos;
}

// What each write of a test returned, by event id. Thread-safe.
// Set by the Store's on_retry hook in the writing thread: the current call met an unknown
// outcome before it returned.
thread_local bool t_saw_in_doubt = false;

class Ledger {
 public:
  struct Entry {
    bool acknowledged = false;
    bool duplicate = false;     // acknowledged by a retry that found the event stored
    bool saw_in_doubt = false;  // an attempt failed with CommitInDoubtError before the result
    std::string kind;           // failed: the error type
    std::string message;        // failed: its message
  };

  // The call writing event id returned a result.
  void acknowledge(const std::string& id, bool duplicate, bool saw_in_doubt) {
    std::lock_guard lock(m_mutex);
    m_entries[id] = Entry{true, duplicate, saw_in_doubt, {}, {}};
  }
  // The call writing event id threw e (its last attempt's error).
  void fail(const std::string& id, const std::exception& e, bool saw_in_doubt) {
    std::lock_guard lock(m_mutex);
    m_entries[id] = Entry{false, false, saw_in_doubt, kind_of(e), e.what()};
  }
  // Runs append(options) with a new event id in options.event_ids, records what it returned or
  // threw (with t_saw_in_doubt, which it resets first) and returns the result, or std::nullopt
  // when it threw.
  template <class Append>
  std::optional<AppendResult> run(Append&& append) {
    const std::string id = new_uuid();
    AppendOptions options;
    options.event_ids = {id};
    t_saw_in_doubt = false;
    try {
      const AppendResult r = append(options);
      acknowledge(id, r.duplicate, t_saw_in_doubt);
      return r;
    } catch (const std::exception& e) {
      fail(id, e, t_saw_in_doubt);
      return std::nullopt;
    }
  }
  // A copy of every entry, by event id.
  [[nodiscard]] std::map<std::string, Entry> entries() const {
    std::lock_guard lock(m_mutex);
    return m_entries;
  }

 private:
  mutable std::mutex m_mutex;
  std::map<std::string, Entry> m_entries;
};

// The errors a Store retried, by type and message (stream ids and numbers folded), so that a
// test can show how each fault surfaced and check that every one names the problem.
// Thread-safe.
class RetryLog {
 public:
  // Records one retried error (from on_retry); marks the thread's call as in doubt when it is.
  void add(const Error& e) {
    ++m_count;
    if (dynamic_cast<const CommitInDoubtError*>(&e)) t_saw_in_doubt = true;
    std::string m = std::regex_replace(e.what(), std::regex("stream [^ :]+"), "stream S");
    m = std::regex_replace(m, std::regex("[0-9]+"), "N");
    m = std::regex_replace(m, std::regex("\\s+"), " ");
    std::lock_guard lock(m_mutex);
    ++m_messages[kind_of(e) + ": " + m.substr(0, 220)];
  }
  // Retries so far.
  [[nodiscard]] int count() const { return m_count.load(); }
  // Messages that do not say what went wrong.
  [[nodiscard]] std::vector<std::string> unclear() const {
    std::lock_guard lock(m_mutex);
    std::vector<std::string> out;
    for (const auto& [m, n] : m_messages) {
      if (!names_the_problem(m) || bare_libpqxx(m)) out.push_back(m);
    }
    return out;
  }
  // Each distinct message with its count, one per line.
  [[nodiscard]] std::string summary() const {
    std::lock_guard lock(m_mutex);
    std::ostringstream s;
    for (const auto& [m, n] : m_messages) s << "\n    " << n << " x " << m;
    return s.str();
  }

 private:
  std::atomic<int> m_count{0};
  mutable std::mutex m_mutex;
  std::map<std::string, int> m_messages;
};

// Options of a Store that rides over the faults of a test: open mode, a short connect timeout,
// retries for up to 15 s (backoff capped at max_backoff), each retry recorded in retries.
// Requires: retries outlives the Store.
StoreOptions patient_options(const std::string& url, std::size_t pool_size,
                             std::chrono::milliseconds max_backoff, RetryLog& retries) {
  StoreOptions o;
  o.database_url = url;
  o.strict = false;
  o.pool.max_size = pool_size;
  o.pool.connect_timeout = 2s;
  o.retry.max_attempts = 1000;
  o.retry.max_backoff = max_backoff;
  o.retry.deadline = 15s;
  o.retry.on_retry = [&retries](const Error& e, int, std::chrono::milliseconds) { retries.add(e); };
  return o;
}

// How many times each event id is stored in user streams (prefstore's own "$..." streams left
// out, except those LIKE also_like, e.g. "$def:proxy.%"), read over a direct connection.
std::map<std::string, std::int64_t> stored_event_ids(const std::string& url,
                                                     const std::string& also_like = {}) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  std::map<std::string, std::int64_t> out;
  for (const auto& row :
       tx.exec_params("SELECT event_id::text, count(*) FROM prefstore.events "
                      "WHERE stream_id NOT LIKE '$%' OR stream_id LIKE $1 GROUP BY 1",
                      also_like)) {
    out[row[0].as<std::string>()] = row[1].as<std::int64_t>();
  }
  return out;
}

// The ledger against the log.
struct Tally {
  std::int64_t attempts = 0;
  std::int64_t acknowledged = 0;
  std::int64_t acknowledged_by_retry = 0;  // the retry after an unknown outcome found it stored
  std::int64_t in_doubt_resolved = 0;      // acknowledged after a CommitInDoubtError
  std::int64_t failed = 0;
  std::int64_t failed_stored = 0;  // failed (outcome unknown to the caller) yet stored once
  std::int64_t lost = 0;
  std::int64_t duplicated = 0;
  std::int64_t unknown_stored = 0;  // stored ids no call wrote
  std::map<std::string, std::int64_t> failures_by_kind;
  std::vector<std::string> unclear;  // failures that are not transient or do not name the problem
  std::string first_failure;
};

// Compares the ledger with the stored event ids (extra_ids: ids written outside the ledger).
Tally tally(const Ledger& ledger, const std::map<std::string, std::int64_t>& stored,
            const std::set<std::string>& extra_ids = {}) {
  Tally t;
  const auto entries = ledger.entries();
  for (const auto& [id, e] : entries) {
    ++t.attempts;
    const auto it = stored.find(id);
    const std::int64_t n = it == stored.end() ? 0 : it->second;
    if (n > 1) ++t.duplicated;
    if (e.acknowledged) {
      ++t.acknowledged;
      if (e.duplicate) ++t.acknowledged_by_retry;
      if (e.saw_in_doubt) ++t.in_doubt_resolved;
      if (n == 0) ++t.lost;
    } else {
      ++t.failed;
      ++t.failures_by_kind[e.kind];
      if (n == 1) ++t.failed_stored;
      if (t.first_failure.empty()) t.first_failure = e.kind + ": " + e.message;
      const bool transient = e.kind == "CommitInDoubtError" || e.kind == "UnavailableError" ||
                             e.kind == "ContentionError";
      if (!transient || !names_the_problem(e.message))
        t.unclear.push_back(e.kind + ": " + e.message);
    }
  }
  for (const auto& [id, n] : stored) {
    if (n > 1 && !entries.contains(id)) ++t.duplicated;
    if (!entries.contains(id) && !extra_ids.contains(id)) ++t.unknown_stored;
  }
  return t;
}

// One line of counts for the output and docs/operations.md, "Faults tested".
std::string describe(const Tally& t) {
  std::ostringstream s;
  s << "appends " << t.attempts << ", acknowledged " << t.acknowledged << " (by a retry that found "
    << "the event stored: " << t.acknowledged_by_retry
    << "; after an unknown outcome: " << t.in_doubt_resolved << "), failed " << t.failed;
  if (!t.failures_by_kind.empty()) {
    s << " (";
    bool first = true;
    for (const auto& [k, n] : t.failures_by_kind) {
      s << (first ? "" : ", ") << k << " " << n;
      first = false;
    }
    s << "; stored once although failed: " << t.failed_stored << ")";
  }
  s << ", lost " << t.lost << ", duplicated " << t.duplicated << ", stored but never written "
    << t.unknown_stored;
  return s.str();
}

// The oracle every write test shares.
void expect_consistent(const Tally& t) {
  EXPECT_EQ(t.lost, 0) << "acknowledged events missing from the log";
  EXPECT_EQ(t.duplicated, 0) << "event ids stored more than once";
  EXPECT_EQ(t.unknown_stored, 0) << "events in the log that no call wrote";
  EXPECT_TRUE(t.unclear.empty()) << t.unclear.size()
                                 << " failures are not transient or do not name the problem; "
                                    "first: "
                                 << (t.unclear.empty() ? "" : t.unclear.front());
}

// Prints a measured value and records it as a gtest property (in the XML output).
void record(const std::string& name, const std::string& value) {
  ::testing::Test::RecordProperty(name, value);
  std::cout << "[fault] " << name << ": " << value << std::endl;
}

// Store::verify with the read models compared must find no problem.
void expect_verified(Store& store) {
  VerifyOptions v;
  v.check_projections = true;
  const VerifyReport report = store.verify(v);
  EXPECT_TRUE(report.projections_checked);
  EXPECT_TRUE(report.clean()) << report.problem_count << " problems; first: "
                              << (report.problems.empty() ? "" : report.problems.front().message);
  std::cout << "[fault] verify: " << report.streams_checked << " streams, " << report.events_checked
            << " events, " << report.projection_rows_checked << " read-model rows, "
            << report.problem_count << " problems" << std::endl;
}

// A dedicated local server in a temp home of its own; stopped and removed at the end.
class OwnServer {
 public:
  // Creates and starts the cluster (database "faults"); tcp: it also listens on 127.0.0.1 at a
  // free port, trusting local TCP logins. Throws as LocalServer::start.
  explicit OwnServer(const std::string& prefix, bool tcp) : m_home(make_temp_dir(prefix)) {
    storage::LocalServerOptions o = storage::local_server_options_from_environment();
    o.home = m_home;
    o.durable = false;
    o.database = "faults";
    // fsync stays off (durable = false): a kill -9 of the server is not a machine crash, and
    // what was written to the OS survives it. synchronous_commit must be on, though: with it
    // off (durable = false's default) a commit is acknowledged while its WAL is still in the
    // server's shared memory, and a kill -9 loses it (measured: 26 acknowledged appends lost
    // in 5 cycles).
    o.settings = {{"max_connections", "100"}, {"synchronous_commit", "on"}};
    if (tcp) {
      o.listen_tcp = true;
      o.port = free_port();
      o.hba_lines = {"host all all 127.0.0.1/32 trust"};
    }
    m_server = std::make_unique<storage::LocalServer>(o);
    m_server->start();
  }
  OwnServer(const OwnServer&) = delete;
  OwnServer& operator=(const OwnServer&) = delete;
  // Stops the server (immediate), reaps it when this process is its subreaper, removes it all.
  ~OwnServer() {
    const long pid = m_server->postmaster_pid();
    try {
      m_server->stop(storage::StopMode::immediate);
    } catch (const std::exception& e) {
      std::cerr << "stopping the fault server failed: " << e.what() << std::endl;
    }
    // Reap the postmaster when this process is its subreaper (test a); ECHILD otherwise.
    for (int i = 0; pid > 0 && i < 500; ++i) {
      if (::waitpid(static_cast<pid_t>(pid), nullptr, WNOHANG) != 0) break;
      std::this_thread::sleep_for(10ms);
    }
    std::error_code ec;
    fs::remove_all(m_server->cluster_dir(), ec);
    fs::remove_all(m_home, ec);
  }
  // The running server.
  storage::LocalServer& server() { return *m_server; }

 private:
  fs::path m_home;
  std::unique_ptr<storage::LocalServer> m_server;
};

// The parent pid of a process, from /proc; 0 when it is gone.
long parent_of(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  long ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

// The pids whose parent is pid, from /proc.
std::vector<long> children_of(long pid) {
  std::vector<long> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const long p = std::stol(name);
    if (parent_of(p) == pid) out.push_back(p);
  }
  return out;
}

// kill -9 of the postmaster and of every child it has (frozen first, so that it forks no more),
// then reaps them all (this process is their subreaper). Returns how many processes died.
std::size_t kill_server(long postmaster) {
  ::kill(static_cast<pid_t>(postmaster), SIGSTOP);
  std::vector<long> victims = children_of(postmaster);
  for (long c : victims) ::kill(static_cast<pid_t>(c), SIGKILL);
  ::kill(static_cast<pid_t>(postmaster), SIGKILL);
  victims.push_back(postmaster);
  const auto until = Clock::now() + 10s;
  for (long v : victims) {
    while (Clock::now() < until) {
      const pid_t r = ::waitpid(static_cast<pid_t>(v), nullptr, WNOHANG);
      if (r == static_cast<pid_t>(v) || (r < 0 && errno == ECHILD && parent_of(v) == 0)) break;
      std::this_thread::sleep_for(5ms);
    }
  }
  return victims.size();
}

// Quotes a string for the shell.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// --- a. kill -9 of the server --------------------------------------------------------------

TEST(Faults, KillNineOfTheServerDuringConcurrentAppendsLosesAndDuplicatesNothing) {
  const auto started = Clock::now();
  // Orphans of this process's descendants (the postmaster after pg_ctl exits, the server's
  // children after a kill) become its children, so that it can reap them: the container's
  // init does not, and a zombie postmaster would keep its pid "alive" for the restart.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  struct Unreap {
    ~Unreap() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } unreap;
  OwnServer own("prefstore-fault-kill", false);
  storage::LocalServer& server = own.server();
  const std::string url = server.url();

  RetryLog retries;
  Store store(patient_options(url, 8, 500ms, retries));

  // The asynchronous projector, on a pool of its own, running through the kills.
  storage::PoolOptions po;
  po.conninfo = url;
  po.max_size = 2;
  po.connect_timeout = 2s;
  storage::ConnectionPool projector_pool(po);
  projections::RunnerOptions ro;
  ro.poll_interval = 100ms;
  ro.retry_failed_after = 200ms;
  std::vector<std::shared_ptr<projections::Projection>> counts{
      std::make_shared<projections::ValueCountsProjection>()};
  std::atomic<std::int64_t> projected{0};
  std::string projector_error;
  projections::ProjectionRunner runner(projector_pool, counts, ro);
  (void)runner.on_advanced([&](const std::string&, storage::LogPosition) { ++projected; });
  std::jthread projector([&](std::stop_token stop) {
    try {
      runner.run(stop);
    } catch (const std::exception& e) {
      projector_error = kind_of(e) + ": " + e.what();
    }
  });

  Ledger ledger;
  std::atomic<bool> writing{true};
  std::vector<std::jthread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      for (int n = 0; writing; ++n) {
        (void)ledger.run([&](const AppendOptions& ao) {
          return store.set("kill-user-" + std::to_string(w * 4 + n % 4),
                           "tz.slot" + std::to_string(n % 3), Value(std::int64_t{n % 7}), {}, ao);
        });
      }
    });
  }

  const int cycles = 5 * scale();
  std::mt19937 random{std::random_device{}()};
  std::vector<double> restart_seconds;
  std::size_t killed_processes = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::uniform_int_distribution<int>(300, 900)(random)));  // appends run
    const long pid = server.postmaster_pid();
    ASSERT_GT(pid, 0) << "cycle " << cycle << ": no postmaster";
    killed_processes += kill_server(pid);
    ASSERT_EQ(server.postmaster_pid(), 0)
        << "cycle " << cycle << ": postmaster " << pid << " still alive after kill -9";
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 800)(random)));  // down
    const auto restart = Clock::now();
    ASSERT_NO_THROW(server.start()) << "cycle " << cycle << ": restart after kill -9 failed";
    restart_seconds.push_back(seconds_since(restart));
  }
  std::this_thread::sleep_for(1s);
  writing = false;
  writers.clear();

  // The pool recovered by itself: a write after the last restart succeeds on the same Store.
  const std::string final_id = new_uuid();
  AppendOptions final_options;
  final_options.event_ids = {final_id};
  AppendResult final_result;
  ASSERT_NO_THROW(final_result = store.set("kill-final", "tz.slot0", Value(std::int64_t{1}), {},
                                           final_options));
  EXPECT_FALSE(final_result.duplicate);

  projector.request_stop();
  projector.join();
  EXPECT_EQ(projector_error, "") << "the projector stopped on an error";
  const std::int64_t caught_up = runner.catch_up();

  const auto stored = stored_event_ids(url);
  const Tally t = tally(ledger, stored, {final_id});
  EXPECT_EQ(stored.count(final_id), 1u);
  expect_consistent(t);
  EXPECT_GT(t.acknowledged, 0);
  // Each kill interrupts the writers in flight: the ledger must show the faults were met.
  EXPECT_GE(retries.count(), cycles) << "the kills were not felt by the writers";
  EXPECT_TRUE(retries.unclear().empty())
      << "retried errors that do not name the problem:" << retries.summary();
  expect_verified(store);

  double restart_max = 0;
  for (double s : restart_seconds) restart_max = std::max(restart_max, s);
  record("kill9.cycles", std::to_string(cycles));
  record("kill9.processes_killed", std::to_string(killed_processes));
  record("kill9.restart_max_seconds", std::to_string(restart_max));
  record("kill9.retries", std::to_string(retries.count()) + retries.summary());
  record("kill9.ledger", describe(t));
  record("kill9.projector", "batches applied during the run " + std::to_string(projected.load()) +
                                ", events in the final catch-up " + std::to_string(caught_up));
  record("kill9.seconds", std::to_string(seconds_since(started)));
  if (!t.first_failure.empty()) record("kill9.first_failure", t.first_failure);
}

// --- b. a proxy cutting connections ---------------------------------------------------------

TEST(Faults, CutConnectionsAlsoBetweenCommitAndItsAnswerLoseAndDuplicateNothing) {
  const auto started = Clock::now();
  OwnServer own("prefstore-fault-proxy", true);
  storage::LocalServer& server = own.server();
  TcpProxy proxy(server.options().port);
  const std::string proxied = "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                              " dbname=faults user=postgres sslmode=disable";

  RetryLog retries;
  Store store(patient_options(proxied, 6, 300ms, retries));  // migrates before any fault

  // Writers: six set() (autocommit appends, cut after their Bind) and two define() (a
  // transaction ended by COMMIT, cut after the COMMIT).
  Ledger ledger;
  std::atomic<bool> writing{true};
  std::atomic<int> defines_in_doubt_resolved{0};
  std::atomic<int> sets_in_doubt_resolved{0};
  std::vector<std::jthread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      for (int n = 0; writing; ++n) {
        const auto r = ledger.run([&](const AppendOptions& ao) {
          if (w >= 2) {
            return store.set("proxy-user-" + std::to_string(w * 3 + n % 3),
                             "proxy.key" + std::to_string(n % 2), Value(std::int64_t{n}), {}, ao);
          }
          PreferenceDefinition d;
          d.key = "proxy.key" + std::to_string(w);
          d.type = ValueType::integer;
          d.description = "revision " + std::to_string(n);
          return store.define(d, {}, ao);
        });
        if (r && r->duplicate && t_saw_in_doubt) {
          ++(w < 2 ? defines_in_doubt_resolved : sets_in_doubt_resolved);
        }
      }
    });
  }

  const auto run_for = std::chrono::seconds(8 * scale());
  proxy.set_random_cuts(0.15, 250ms);
  const auto until = Clock::now() + run_for;
  while (Clock::now() < until) {
    if (proxy.armed_commit_cuts() == 0) proxy.arm_commit_cuts(1);
    if (proxy.armed_statement_cuts() == 0) proxy.arm_statement_cuts("prefstore_append", 1);
    std::this_thread::sleep_for(300ms);
  }
  proxy.set_random_cuts(0.0, 250ms);
  proxy.arm_commit_cuts(0);
  proxy.arm_statement_cuts("prefstore_append", 0);
  writing = false;
  writers.clear();
  const auto counters = proxy.counters();

  // Define events live in "$def:" streams: tally them too.
  const Tally t = tally(ledger, stored_event_ids(server.url(), "$def:proxy.key%"));
  expect_consistent(t);
  EXPECT_GT(counters.commit_cuts, 0u) << "no COMMIT was cut";
  EXPECT_GT(counters.statement_cuts, 0u) << "no autocommit append was cut";
  EXPECT_GT(defines_in_doubt_resolved.load(), 0)
      << "no COMMIT cut was resolved by a retry that found the event stored";
  EXPECT_GT(sets_in_doubt_resolved.load(), 0)
      << "no cut autocommit append was resolved by a retry that found the event stored";
  EXPECT_GT(counters.random_cuts, 0u);
  EXPECT_TRUE(retries.unclear().empty())
      << "retried errors that do not name the problem:" << retries.summary();

  // Without faults the same Store (same pool) works and the store verifies.
  EXPECT_NO_THROW((void)store.set("proxy-final", "proxy.key0", Value(std::int64_t{1})));
  expect_verified(store);

  record("proxy.seconds_of_faults", std::to_string(run_for.count()));
  record("proxy.cuts", "random " + std::to_string(counters.random_cuts) + ", after COMMIT " +
                           std::to_string(counters.commit_cuts) + " (of " +
                           std::to_string(counters.commits_seen) +
                           " COMMITs), after an autocommit append " +
                           std::to_string(counters.statement_cuts) + ", connections accepted " +
                           std::to_string(counters.accepted));
  record("proxy.in_doubt_resolved_by_retry",
         "define (COMMIT) " + std::to_string(defines_in_doubt_resolved.load()) +
             ", set (autocommit) " + std::to_string(sets_in_doubt_resolved.load()));
  record("proxy.retries", std::to_string(retries.count()) + retries.summary());
  record("proxy.ledger", describe(t));
  record("proxy.seconds", std::to_string(seconds_since(started)));
  if (!t.first_failure.empty()) record("proxy.first_failure", t.first_failure);
}

// --- c. an exhausted pool -------------------------------------------------------------------

TEST(Faults, AnExhaustedPoolFailsClearlyWithinTheDeadlineAndWritesNothing) {
  ScratchDatabase db;
  std::atomic<int> retries{0};
  StoreOptions o;
  o.database_url = db.url();
  o.strict = false;
  o.pool.max_size = 1;
  o.pool.acquire_timeout = 150ms;
  o.retry.max_attempts = 100;
  o.retry.deadline = 700ms;
  o.retry.on_retry = [&](const Error& e, int, std::chrono::milliseconds) {
    EXPECT_TRUE(e.retryable());
    ++retries;
  };
  Store store(o);
  (void)store.set("ada", "calendar.time_zone", Value(std::string("Europe/London")));
  const int rounds = scale();
  std::vector<double> took;
  for (int round = 0; round < rounds; ++round) {
    retries = 0;
    storage::PooledConnection held = store.pool().acquire();
    const auto start = Clock::now();
    try {
      (void)store.set("ada", "calendar.time_zone", Value(std::string("Asia/Tokyo")));
      ADD_FAILURE() << "a write through an exhausted pool succeeded";
    } catch (const UnavailableError& e) {
      EXPECT_NE(std::string(e.what()).find("pool exhausted"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("acquire_timeout"), std::string::npos) << e.what();
    }
    took.push_back(seconds_since(start));
    EXPECT_GE(took.back(), 0.6);  // retried until the deadline
    EXPECT_LT(took.back(), 3.0);  // deadline + one acquire_timeout, room for a loaded machine
    EXPECT_GE(retries.load(), 2);
    EXPECT_EQ(events_of(db.url(), "ada"), 1 + round) << "round " << round;
    held.release();
    const auto r = store.set("ada", "calendar.time_zone", Value(std::string("Asia/Tokyo")));
    EXPECT_EQ(r.stream_version, 2 + round);
  }
  EXPECT_EQ(store.get("ada", "calendar.time_zone"), Value(std::string("Asia/Tokyo")));
  const auto stats = store.pool().stats();
  EXPECT_GE(stats.timeouts, static_cast<std::uint64_t>(rounds));
  record("pool_exhaustion.rounds", std::to_string(rounds));
  record("pool_exhaustion.seconds_to_fail_first", std::to_string(took.front()));
  record("pool_exhaustion.acquire_timeouts", std::to_string(stats.timeouts));
}

// --- d. a statement timeout -----------------------------------------------------------------

// What is stored of one stream: its row's version, its events, its current preferences.
struct StreamImage {
  std::int64_t stream_version = -1;
  std::int64_t events = -1;
  std::string current;  // preferences_current rows of the stream, as text
  friend bool operator==(const StreamImage&, const StreamImage&) = default;
};

// What is stored of one stream, over a direct connection.
StreamImage image_of(const std::string& url, const std::string& user) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  StreamImage im;
  const auto v =
      tx.exec("SELECT version FROM prefstore.streams WHERE stream_id = " + tx.quote(user));
  im.stream_version = v.empty() ? 0 : v[0][0].as<std::int64_t>();
  im.events =
      tx.exec1("SELECT count(*) FROM prefstore.events WHERE stream_id = " + tx.quote(user))[0]
          .as<std::int64_t>();
  im.current = tx.exec1(
                     "SELECT coalesce(string_agg(key || '=' || value::text || '@' || "
                     "version, ',' ORDER BY key), '') FROM prefstore.preferences_current "
                     "WHERE stream_id = " +
                     tx.quote(user))[0]
                   .as<std::string>();
  return im;
}

TEST(Faults, AStatementTimeoutOnALockedStreamFailsClearlyAndWritesNothing) {
  ScratchDatabase db;
  std::atomic<int> retries{0};
  StoreOptions o;
  o.database_url = db.url();
  o.strict = false;
  o.pool.max_size = 2;
  o.pool.statement_timeout = 200ms;
  o.retry.max_attempts = 100;
  o.retry.deadline = 800ms;
  o.retry.on_retry = [&](const Error&, int, std::chrono::milliseconds) { ++retries; };
  Store store(o);
  (void)store.set_many("ada", {{"calendar.time_zone", Value(std::string("Europe/London"))},
                               {"calendar.minutes", Value(std::int64_t{30})}});
  const int rounds = scale();
  std::string message;
  for (int round = 0; round < rounds; ++round) {
    const StreamImage before = image_of(db.url(), "ada");
    {
      // Another session holds the stream's row lock; the append waits for it until the
      // statement timeout cancels it.
      pqxx::connection locker(db.url());
      pqxx::work lock(locker);
      lock.exec("SELECT 1 FROM prefstore.streams WHERE stream_id = 'ada' FOR UPDATE");
      retries = 0;
      try {
        (void)store.set_many("ada", {{"calendar.time_zone", Value(std::string("Asia/Tokyo"))},
                                     {"calendar.minutes", Value(std::int64_t{45})}});
        ADD_FAILURE() << "a write blocked by a lock succeeded within the statement timeout";
      } catch (const UnavailableError& e) {
        message = e.what();
        EXPECT_EQ(e.sqlstate(), "57014") << e.what();
        EXPECT_NE(message.find("statement timeout"), std::string::npos) << message;
        EXPECT_NE(message.find("ada"), std::string::npos) << message;  // names the stream
      }
      EXPECT_GE(retries.load(), 1);  // a timeout is transient: retried within the deadline
      // Reads are not blocked by the row lock.
      EXPECT_EQ(store.get("ada", "calendar.minutes"), Value(std::int64_t{30 + 15 * round}));
      EXPECT_EQ(image_of(db.url(), "ada"), before) << "round " << round << ": half-written";
      lock.abort();
    }
    const auto r =
        store.set_many("ada", {{"calendar.time_zone", Value(std::string("Asia/Tokyo"))},
                               {"calendar.minutes", Value(std::int64_t{45 + 15 * round})}});
    EXPECT_EQ(r.stream_version, before.stream_version + 2);
  }
  record("statement_timeout.rounds", std::to_string(rounds));
  record("statement_timeout.error", message);
}

// --- e. a read-only server ------------------------------------------------------------------

// ALTER SYSTEM for the whole test cluster, applied by a reload, waited for in a new session.
void set_cluster_read_only(bool on) {
  admin(on ? "ALTER SYSTEM SET default_transaction_read_only = on"
           : "ALTER SYSTEM RESET default_transaction_read_only");
  admin("SELECT pg_reload_conf()");
  const auto until = Clock::now() + 10s;
  while (Clock::now() < until) {
    pqxx::connection conn(TestCluster::instance().url("postgres"));
    pqxx::nontransaction tx(conn);
    if (tx.exec1("SHOW default_transaction_read_only")[0].as<std::string>() == (on ? "on" : "off"))
      return;
    std::this_thread::sleep_for(20ms);
  }
  FAIL() << "the reload did not apply default_transaction_read_only";
}

TEST(Faults, AReadOnlyServerRefusesWritesWholeKeepsReadsAndRecovers) {
  ScratchDatabase db;
  std::atomic<int> retries{0};
  StoreOptions o;
  o.database_url = db.url();
  o.strict = false;
  o.pool.max_size = 3;
  o.retry.max_attempts = 100;
  o.retry.deadline = 600ms;
  o.retry.on_retry = [&](const Error&, int, std::chrono::milliseconds) { ++retries; };
  Store store(o);
  (void)store.set_many("ada", {{"calendar.time_zone", Value(std::string("Europe/London"))},
                               {"calendar.minutes", Value(std::int64_t{30})}});
  PreferenceDefinition d;
  d.key = "calendar.reminder_minutes";
  d.type = ValueType::integer;
  (void)store.define(d);
  const int rounds = scale();
  std::string message;
  for (int round = 0; round < rounds; ++round) {
    const StreamImage before = image_of(db.url(), "ada");
    const StreamImage def_before = image_of(db.url(), "$def:calendar.reminder_minutes");
    set_cluster_read_only(true);
    // The pool's open sessions took the reload: no session was ended.
    retries = 0;
    const std::string id = new_uuid();
    AppendOptions ao;
    ao.event_ids = {id};
    try {
      (void)store.set_many("ada",
                           {{"calendar.time_zone", Value(std::string("Asia/Tokyo"))},
                            {"calendar.minutes", Value(std::int64_t{45})}},
                           {}, AppendOptions{ExpectedVersion::any(), {id, new_uuid()}});
      ADD_FAILURE() << "a write to a read-only server succeeded";
    } catch (const UnavailableError& e) {
      message = e.what();
      EXPECT_NE(message.find("read-only"), std::string::npos) << message;
      EXPECT_EQ(e.sqlstate(), "25006") << message;
    }
    EXPECT_GE(retries.load(), 1);
    PreferenceDefinition changed = d;
    changed.description = "changed while read-only";
    EXPECT_THROW((void)store.define(changed), UnavailableError);  // a transaction, not autocommit
    // Reads keep working, and nothing was half-written.
    EXPECT_EQ(store.get("ada", "calendar.minutes"), Value(std::int64_t{30 + 15 * round}));
    EXPECT_EQ(store.history("ada").size(), static_cast<std::size_t>(before.events));
    EXPECT_EQ(store.version("ada"), before.stream_version);
    EXPECT_EQ(image_of(db.url(), "ada"), before) << "round " << round;
    EXPECT_EQ(image_of(db.url(), "$def:calendar.reminder_minutes"), def_before);
    set_cluster_read_only(false);
    // Recovery: the same Store writes again (same ids: nothing of the refused call was kept).
    const auto r = store.set_many("ada",
                                  {{"calendar.time_zone", Value(std::string("Asia/Tokyo"))},
                                   {"calendar.minutes", Value(std::int64_t{45 + 15 * round})}},
                                  {}, AppendOptions{ExpectedVersion::any(), {id, new_uuid()}});
    EXPECT_FALSE(r.duplicate);
    EXPECT_EQ(r.stream_version, before.stream_version + 2);
    (void)store.define(changed);
  }
  expect_verified(store);
  record("read_only.rounds", std::to_string(rounds));
  record("read_only.error", message);
}

// --- g. sessions ended under an idle pool --------------------------------------------------

// Regression (found here): libpqxx 6.4 reports a statement on a session the server had ended as
// "Could not obtain client encoding: not connected.", dropping libpq's reason; the error must
// say what happened (storage/src/error_translation.cpp).
void expect_says_the_session_ended(const std::string& message) {
  EXPECT_FALSE(bare_libpqxx(message)) << message;
}

// Deterministic form of the suspect below, through the proxy: the server side of the pooled
// session is ended while the client hears nothing, so the pool's free check passes and hands it
// out; the next statement finds it closed.
TEST(Faults, APooledSessionEndedWithoutNoticeFailsAsTransientNamingItAndIsRetried) {
  OwnServer own("prefstore-fault-quiet", true);
  // One proxy per Store, so that ending one's sessions leaves the other's alone.
  TcpProxy proxy(own.server().options().port);
  TcpProxy retried_proxy(own.server().options().port);
  const auto via = [](const TcpProxy& p) {
    return "host=127.0.0.1 port=" + std::to_string(p.port()) +
           " dbname=faults user=postgres sslmode=disable";
  };
  StoreOptions once;
  once.database_url = via(proxy);
  once.strict = false;
  once.pool.max_size = 1;
  once.retry.max_attempts = 1;
  RetryLog retries;
  StoreOptions retried = once;
  retried.database_url = via(retried_proxy);
  retried.retry.max_attempts = 10;
  retried.retry.on_retry = [&](const Error& e, int, std::chrono::milliseconds) { retries.add(e); };
  Store plain(once);
  Store store(retried);
  std::vector<std::string> messages;
  const int rounds = 3 * scale();
  for (int round = 0; round < rounds; ++round) {
    // A read without retries on an ended session.
    (void)plain.get("ada", "k");
    ASSERT_GE(proxy.end_sessions_quietly(), 1u);
    try {
      (void)plain.get("ada", "k");
      ADD_FAILURE() << "a read on an ended session succeeded";
    } catch (const UnavailableError& e) {
      messages.emplace_back(e.what());
      EXPECT_NE(messages.back().find("the session was closed"), std::string::npos)
          << messages.back();
    }
    // A write without retries: its outcome is reported unknown; the caller's retry with the same
    // ids stores it once.
    (void)plain.get("ada", "k");
    ASSERT_GE(proxy.end_sessions_quietly(), 1u);
    const std::string id = new_uuid();
    AppendOptions ao;
    ao.event_ids = {id};
    try {
      (void)plain.set("ada", "k", Value(std::int64_t{round}), {}, ao);
      ADD_FAILURE() << "a write on an ended session succeeded";
    } catch (const TransientError& e) {
      messages.emplace_back(e.what());
      EXPECT_TRUE(names_the_problem(e.what())) << e.what();
    }
    const auto again = plain.set("ada", "k", Value(std::int64_t{round}), {}, ao);
    EXPECT_FALSE(again.duplicate);  // the session was gone before the append was sent
    // The same through a Store that retries: the caller sees nothing of it.
    (void)store.get("bob", "k");
    ASSERT_GE(retried_proxy.end_sessions_quietly(), 1u);
    EXPECT_NO_THROW((void)store.set("bob", "k", Value(std::int64_t{round})));
  }
  EXPECT_EQ(retries.count(), rounds);
  EXPECT_TRUE(retries.unclear().empty()) << retries.summary();
  const auto stored = stored_event_ids(own.server().url());
  EXPECT_EQ(stored.size(), static_cast<std::size_t>(2 * rounds));
  for (const auto& [id, n] : stored) EXPECT_EQ(n, 1) << id;
  record("quiet_end.rounds", std::to_string(rounds));
  record("quiet_end.read_error", messages.empty() ? "" : messages.front());
  record("quiet_end.write_error", messages.size() < 2 ? "" : messages[1]);
  record("quiet_end.retried", std::to_string(retries.count()) + retries.summary());
}

// The known suspect: a pooled connection whose session the server ended ("Could not obtain
// client encoding: not connected" from libpqxx 6.4) must surface as a transient error naming the
// lost connection, never as a DatabaseError or a foreign exception, and a retry must succeed.
TEST(Faults, SessionsEndedUnderAnIdlePoolSurfaceAsTransientErrorsAndAreRetried) {
  ScratchDatabase db;
  const std::string name = testing::database_name(db.url());
  StoreOptions once;
  once.database_url = db.url();
  once.strict = false;
  once.pool.max_size = 2;
  once.retry.max_attempts = 1;
  RetryLog retries;
  StoreOptions retried = once;
  retried.retry.max_attempts = 100;
  retried.retry.deadline = 5s;
  retried.retry.on_retry = [&](const Error& e, int, std::chrono::milliseconds) { retries.add(e); };
  Store plain(once);
  Store store(retried);
  Ledger ledger;
  std::map<std::string, int> first_errors;     // calls without retries: how each failed
  std::map<std::string, std::string> samples;  // one message of each
  std::vector<std::string> unclear;
  const int rounds = 20 * scale();
  for (int round = 0; round < rounds; ++round) {
    (void)plain.get("ada", "k");
    (void)store.get("ada", "k");
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name +
          "' AND pid <> pg_backend_pid()");
    // At once, before the pool may notice: a write and a read without retries...
    const std::string id = new_uuid();
    AppendOptions ao;
    ao.event_ids = {id};
    try {
      (void)plain.set("ada", "k", Value(std::int64_t{round}), {}, ao);
      ledger.acknowledge(id, false, false);
    } catch (const std::exception& e) {
      ++first_errors[kind_of(e)];
      samples.try_emplace(kind_of(e), e.what());
      expect_says_the_session_ended(e.what());
      const auto* error = dynamic_cast<const Error*>(&e);
      if (error == nullptr || !error->retryable() || !names_the_problem(e.what())) {
        unclear.push_back(kind_of(e) + ": " + e.what());
      }
      // ...and the caller's own retry with the same ids stores the event once.
      try {
        const auto r = plain.set("ada", "k", Value(std::int64_t{round}), {}, ao);
        ledger.acknowledge(id, r.duplicate, true);
      } catch (const std::exception& again) {
        ledger.fail(id, again, true);
      }
    }
    try {
      (void)plain.get("ada", "k");
    } catch (const std::exception& e) {
      ++first_errors["read: " + kind_of(e)];
      samples.try_emplace("read: " + kind_of(e), e.what());
      expect_says_the_session_ended(e.what());
      const auto* error = dynamic_cast<const Error*>(&e);
      if (error == nullptr || !error->retryable() || !names_the_problem(e.what())) {
        unclear.push_back(kind_of(e) + ": " + e.what());
      }
    }
    // ...and the same through a Store that retries: always succeeds.
    (void)store.get("bob", "k");  // its pooled session is the one about to be ended
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name +
          "' AND pid <> pg_backend_pid()");
    const std::string id2 = new_uuid();
    AppendOptions ao2;
    ao2.event_ids = {id2};
    try {
      const auto r = store.set("bob", "k", Value(std::int64_t{round}), {}, ao2);
      ledger.acknowledge(id2, r.duplicate, false);
    } catch (const std::exception& e) {
      ledger.fail(id2, e, false);
      ADD_FAILURE() << "a retried write failed: " << kind_of(e) << ": " << e.what();
    }
  }
  const Tally t = tally(ledger, stored_event_ids(db.url()));
  expect_consistent(t);
  EXPECT_EQ(t.failed, 0);
  EXPECT_TRUE(unclear.empty()) << unclear.size() << " unclear errors; first: "
                               << (unclear.empty() ? "" : unclear.front());
  EXPECT_TRUE(retries.unclear().empty()) << retries.summary();
  std::string kinds;
  for (const auto& [k, n] : first_errors) {
    kinds += "\n    " + std::to_string(n) + " x " + k + ", e.g. " + samples[k];
  }
  record("ended_sessions.rounds", std::to_string(rounds));
  record("ended_sessions.first_attempt_errors", kinds.empty() ? "none" : kinds);
  record("ended_sessions.retried", std::to_string(retries.count()) + retries.summary());
  record("ended_sessions.ledger", describe(t));
}

// --- f. several processes at once on a database without schema -----------------------------

TEST(Faults, ConcurrentMigrateProjectionAndWriteProcessesOnAFreshDatabase) {
  const auto started = Clock::now();
  const int rounds = long_run() ? 5 : 1;
  const auto& migrations = storage::embedded_migrations();
  for (int round = 0; round < rounds; ++round) {
    const std::string url = TestCluster::instance().fresh_database();
    const std::string env =
        "env -u PREFSTORE_HOME -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER "
        "PREFSTORE_ROLE=none PREFSTORE_DATABASE_URL=" +
        shell_quote(url) + " ";
    const std::string cli = std::string(PREFSTORE_CLI_PATH);
    struct Job {
      std::string name;
      std::string args;
      testing::CommandResult result;
    };
    std::vector<Job> jobs;
    for (int i = 0; i < 4; ++i) jobs.push_back({"migrate " + std::to_string(i), "migrate", {}});
    for (int i = 0; i < 3; ++i) {
      jobs.push_back({"catch-up " + std::to_string(i), "projections catch-up", {}});
    }
    for (int i = 0; i < 3; ++i) {
      jobs.push_back({"set " + std::to_string(i),
                      "--open set cli-user-" + std::to_string(i) + " calendar.minutes " +
                          std::to_string(30 + i),
                      {}});
    }
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::jthread> threads;
    for (auto& job : jobs) {
      threads.emplace_back([&, j = &job] {
        ++ready;
        while (!go) std::this_thread::yield();
        j->result = run_shell(env + cli + " " + j->args);
      });
    }
    // A service opening a Store (which migrates on open) and writing, a little later (in the
    // first round, so that the processes race for the migrations among themselves).
    std::string store_error;
    int store_writes = 0;
    const auto store_delay = std::chrono::milliseconds(round == 0 ? 400 : 100 * round);
    threads.emplace_back([&] {
      ++ready;
      while (!go) std::this_thread::yield();
      std::this_thread::sleep_for(store_delay);
      try {
        StoreOptions o;
        o.database_url = url;
        o.strict = false;
        Store store(o);
        for (int i = 0; i < 10; ++i, ++store_writes) {
          (void)store.set("store-user", "calendar.minutes", Value(std::int64_t{i}));
        }
      } catch (const std::exception& e) {
        store_error = kind_of(e) + ": " + e.what();
      }
    });
    while (ready < static_cast<int>(threads.size())) std::this_thread::yield();
    go = true;
    threads.clear();

    int migrators_applied = 0;
    for (const auto& job : jobs) {
      EXPECT_EQ(job.result.exit_code, 0) << job.name << ":\n" << job.result.output;
      if (job.args == "migrate" &&
          job.result.output.find("no migration applied") == std::string::npos) {
        ++migrators_applied;
      }
      if (round == 0) {
        std::string said = job.result.output;
        std::replace(said.begin(), said.end(), '\n', ' ');
        std::cout << "[fault] processes." << job.name << ": exit " << job.result.exit_code << ": "
                  << said.substr(0, 200) << std::endl;
      }
    }
    EXPECT_LE(migrators_applied, 1) << "two migrate processes both applied migrations";
    if (round == 0)
      std::cout << "[fault] processes.migrate_processes_that_applied: " << migrators_applied
                << std::endl;
    EXPECT_EQ(store_error, "");
    EXPECT_EQ(store_writes, 10);

    pqxx::connection conn(url);
    pqxx::nontransaction tx(conn);
    const auto m = tx.exec1(
        "SELECT count(*), count(DISTINCT version), max(version) FROM prefstore.schema_migrations");
    EXPECT_EQ(m[0].as<std::size_t>(), migrations.size()) << "each migration applied exactly once";
    EXPECT_EQ(m[1].as<std::size_t>(), migrations.size());
    EXPECT_EQ(m[2].as<int>(), migrations.back().version);
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM prefstore.events WHERE stream_id NOT LIKE '$%'")[0]
                  .as<int>(),
              3 + 10);
    const auto status = run_shell(env + cli + " migrate --status");
    EXPECT_EQ(status.exit_code, 0) << status.output;
    EXPECT_NE(status.output.find(std::to_string(migrations.size()) + " migrations, 0 pending"),
              std::string::npos)
        << status.output;
    const auto catch_up = run_shell(env + cli + " projections catch-up");
    EXPECT_EQ(catch_up.exit_code, 0) << catch_up.output;
    const auto verify = run_shell(env + cli + " verify --all");
    EXPECT_EQ(verify.exit_code, 0) << verify.output;
    admin("DROP DATABASE IF EXISTS " + testing::database_name(url) + " WITH (FORCE)");
  }
  record("processes.rounds", std::to_string(rounds));
  record("processes.per_round",
         "4 migrate, 3 projections catch-up, 3 CLI set, 1 Store (migrate on open, 10 sets)");
  record("processes.seconds", std::to_string(seconds_since(started)));
}

// The other half of crash testing (TESTING.md #4): clients killed with SIGKILL at random
// moments, also in the middle of an append. Each round starts 8 `prefstore set` processes on 4
// users (each with its own event id), kills them all after a random delay (0 to 1.5 times an
// unkilled round, timed first), and sorts them by exit status: 0 acknowledged, 137 killed
// (outcome unknown), anything else failed. The server rolls back whatever a dead client left
// open, so: every acknowledged event is stored exactly once, a killed one at most once, no
// version gap (verify), and no lock is left behind (a write to every user right afterwards
// succeeds at once).
TEST(Faults, ClientsKilledMidAppendLeaveNothingHalfWrittenOrLocked) {
  const auto started = Clock::now();
  ScratchDatabase db;
  const int rounds = long_run() ? 150 : 15;
  const std::string env =
      "env -u PREFSTORE_HOME -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER PREFSTORE_ROLE=none "
      "PREFSTORE_DATABASE_URL=" +
      shell_quote(db.url()) + " ";
  const std::string cli = std::string(PREFSTORE_CLI_PATH);
  std::map<std::string, int> outcome;  // event id -> exit status
  // One round: 8 clients, killed after kill_after_ms (never when std::nullopt); records each
  // client's exit status in outcome.
  const auto run_round = [&](int round, std::optional<int> kill_after_ms) {
    std::string script = "pids=\"\"; ids=\"\"\n";
    for (int i = 0; i < 8; ++i) {
      const std::string id = new_uuid();
      script += env + cli + " --open set client-" + std::to_string(i % 4) + " calendar.minutes " +
                std::to_string(round * 8 + i) + " --event-id " + id +
                " >/dev/null 2>&1 &\npids=\"$pids $!\"; ids=\"$ids " + id + "\"\n";
    }
    if (kill_after_ms) {
      script +=
          "sleep " + std::to_string(*kill_after_ms / 1000.0) + "\nkill -9 $pids 2>/dev/null\n";
    }
    script += "set -- $ids\nfor p in $pids; do wait $p; echo \"$1 $?\"; shift; done\n";
    const auto file = std::filesystem::temp_directory_path() / ("prefstore-kill-" + new_uuid());
    {
      std::ofstream out(file);
      out << script;
    }
    const auto r = run_shell("sh " + file.string());
    std::filesystem::remove(file);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // The shell may also report "Killed" for the jobs: read only "<event id> <status>" lines.
    const std::regex line("^([0-9a-f-]{36}) ([0-9]+)$");
    std::istringstream lines(r.output);
    int seen = 0;
    for (std::string text; std::getline(lines, text);) {
      std::smatch m;
      if (std::regex_match(text, m, line)) {
        outcome[m[1].str()] = std::stoi(m[2].str());
        ++seen;
      }
    }
    ASSERT_EQ(seen, 8) << r.output;
  };
  // The kill delays follow how long a round takes here (a sanitizer build is several times
  // slower): a first round runs to the end and is timed, and the others are killed after 0 to
  // 1.5 times that, so that some clients finish and some die mid-append.
  const auto calibration_started = Clock::now();
  run_round(0, std::nullopt);
  if (HasFatalFailure()) return;
  const int round_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - calibration_started)
          .count());
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> delay_ms(0, std::max(200, round_ms * 3 / 2));
  for (int round = 1; round < rounds; ++round) {
    run_round(round, delay_ms(random));
    if (HasFatalFailure()) return;
  }
  record("client_kill.round_ms", std::to_string(round_ms));

  const auto stored = stored_event_ids(db.url());
  std::int64_t acknowledged = 0, killed = 0, killed_stored = 0, failed = 0, lost = 0,
               duplicated = 0;
  for (const auto& [id, status] : outcome) {
    const auto it = stored.find(id);
    const std::int64_t n = it == stored.end() ? 0 : it->second;
    if (n > 1) ++duplicated;
    if (status == 0) {
      ++acknowledged;
      if (n != 1) ++lost;
    } else if (status == 128 + SIGKILL) {
      ++killed;
      if (n == 1) ++killed_stored;
    } else {
      ++failed;
      ADD_FAILURE() << "a client that was not killed failed with exit " << status;
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(duplicated, 0);
  std::int64_t user_events = 0;
  for (const auto& [id, n] : stored) user_events += n;
  EXPECT_EQ(user_events, acknowledged + killed_stored) << "events stored that no client wrote";
  EXPECT_GT(killed, 0) << "no client was killed: the delays are too long for this machine";
  EXPECT_GT(acknowledged, 0) << "no client finished: the delays are too short for this machine";

  // No lock or transaction left behind: each user takes a write at once.
  StoreOptions o;
  o.database_url = db.url();
  o.strict = false;
  o.pool.statement_timeout = 2s;
  o.retry.max_attempts = 1;
  Store store(o);
  for (int u = 0; u < 4; ++u) {
    EXPECT_NO_THROW(
        (void)store.set("client-" + std::to_string(u), "calendar.minutes", Value(std::int64_t{1})));
  }
  expect_verified(store);
  record("client_kill.rounds", std::to_string(rounds));
  record("client_kill.clients",
         std::to_string(outcome.size()) + " (" + std::to_string(acknowledged) + " acknowledged, " +
             std::to_string(killed) + " killed of which " + std::to_string(killed_stored) +
             " stored, " + std::to_string(failed) + " failed)");
  record("client_kill.lost_duplicated",
         std::to_string(lost) + " lost, " + std::to_string(duplicated) + " duplicated");
  record("client_kill.seconds", std::to_string(seconds_since(started)));
}

}  // namespace
}  // namespace prefstore
