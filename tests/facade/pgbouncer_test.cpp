// prefstore through PgBouncer in transaction pooling mode (issue 7, point 6). The test starts a
// PostgreSQL server of its own listening on 127.0.0.1 (pg_hba trusts it) and a real pgbouncer
// process in front of it (pool_mode = transaction, default_pool_size = 2), so that the store's
// 8 client connections share 2 server connections and consecutive transactions of one client
// run on different server connections. Schemas are migrated on the server directly.
//
// PgBouncerModel: random sequences of set / set_many / reset / get / get_all / version / history
// run by 8 threads at once (each on users of its own) through PgBouncer with
// PoolOptions::transaction_pooling, each thread checking every result against an in-memory
// model; afterwards the server saw at most 2 sessions for the store's database.
// Without the option, a named prepared statement breaks through the proxy (shown
// deterministically with one server connection); a role, or pending migrations, through the
// proxy are refused with errors that say what to do; the CLI's set, get, backup, projections
// catch-up and verify work through it with PREFSTORE_TRANSACTION_POOLING=1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <rapidcheck.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "render.hpp"
#include "test_cluster.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using prefstore::Value;
using prefstore::testing::check_property;
using prefstore::testing::free_port;
using prefstore::testing::make_temp_dir;
using prefstore::testing::render;
using prefstore::testing::run_cli;

constexpr const char* kPgBouncer = "/usr/sbin/pgbouncer";
constexpr const char* kRunAs = "postgres";  // pgbouncer refuses to run as root

// True when something accepts TCP connections on 127.0.0.1:port.
bool accepts_connections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A pgbouncer process with a configuration of its own in a temporary folder, run as `postgres`
// (-u), stopped with SIGTERM by the destructor.
class PgBouncer {
 public:
  // Starts pgbouncer in front of the server on 127.0.0.1:server_port and waits until it accepts
  // connections. The database "single" (the server's pgb_single) has one server connection;
  // every other database name passes through with default_pool_size = 2.
  explicit PgBouncer(int server_port) : m_dir(make_temp_dir("prefstore-pgbouncer")) {
    m_port = free_port();
    const std::string port = std::to_string(server_port);
    {
      std::ofstream ini(m_dir / "pgbouncer.ini");
      ini << "[databases]\n"
          << "single = host=127.0.0.1 port=" << port << " dbname=pgb_single pool_size=1\n"
          << "* = host=127.0.0.1 port=" << port << "\n"
          << "[pgbouncer]\n"
          << "listen_addr = 127.0.0.1\n"
          << "listen_port = " << m_port << "\n"
          << "unix_socket_dir =\n"
          << "auth_type = trust\n"
          << "auth_file = " << (m_dir / "userlist.txt").string() << "\n"
          << "pool_mode = transaction\n"
          << "default_pool_size = 2\n"
          << "max_client_conn = 100\n"
          << "query_wait_timeout = 30\n"
          << "logfile = " << (m_dir / "pgbouncer.log").string() << "\n"
          << "ignore_startup_parameters = extra_float_digits\n";
      std::ofstream users(m_dir / "userlist.txt");
      users << "\"postgres\" \"\"\n";
    }
    const passwd* pw = ::getpwnam(kRunAs);
    if (pw == nullptr) throw std::runtime_error(std::string("no user ") + kRunAs);
    for (const auto& entry : fs::directory_iterator(m_dir)) {
      (void)::chown(entry.path().c_str(), pw->pw_uid, pw->pw_gid);
    }
    (void)::chown(m_dir.c_str(), pw->pw_uid, pw->pw_gid);

    const std::string ini = (m_dir / "pgbouncer.ini").string();
    const std::string out = (m_dir / "stderr.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<std::string> args = {kPgBouncer, "-u", kRunAs, ini};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&m_pid, kPgBouncer, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      throw std::runtime_error(
          std::string("cannot start ") + kPgBouncer + ": " + std::strerror(rc) +
          " (Debian's pgbouncer package; scripts/install-deps.sh installs it)");
    }

    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!accepts_connections(m_port)) {
      int status = 0;
      if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
        m_pid = 0;
        throw std::runtime_error("pgbouncer exited at start: " + log());
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("pgbouncer did not listen within 15 s: " + log());
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  PgBouncer(const PgBouncer&) = delete;
  PgBouncer& operator=(const PgBouncer&) = delete;
  ~PgBouncer() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      int status = 0;
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      while (::waitpid(m_pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(m_pid, SIGKILL);
          (void)::waitpid(m_pid, &status, 0);
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    std::error_code ec;
    fs::remove_all(m_dir, ec);
  }

  // Connection string of `database` through pgbouncer.
  [[nodiscard]] std::string url(const std::string& database) const {
    return "host=127.0.0.1 port=" + std::to_string(m_port) + " dbname=" + database +
           " user=postgres";
  }
  // What pgbouncer logged, for failure messages.
  [[nodiscard]] std::string log() const {
    return read_file(m_dir / "stderr.log") + read_file(m_dir / "pgbouncer.log");
  }

 private:
  fs::path m_dir;
  int m_port = 0;
  pid_t m_pid = 0;
};

// The server (TCP on 127.0.0.1, trusted) and pgbouncer in front of it, for the whole process.
class Backend {
 public:
  Backend() {
    prefstore::storage::LocalServerOptions o =
        prefstore::storage::local_server_options_from_environment();
    o.home = make_temp_dir("prefstore-pgbouncer-server");
    o.durable = false;
    o.listen_tcp = true;
    o.port = free_port();
    o.database = "postgres";
    o.settings = {{"max_connections", "100"}};
    o.hba_lines = {"host all all 127.0.0.1/32 trust"};
    m_server = std::make_unique<prefstore::storage::LocalServer>(o);
    try {
      m_server->start();
      // The template of every migrated database: migrated on the server directly.
      admin("CREATE DATABASE pgb_template");
      {
        prefstore::StoreOptions options;
        options.database_url = direct_url("pgb_template");
        const prefstore::Store store(options);
      }
      m_bouncer = std::make_unique<PgBouncer>(o.port);
    } catch (...) {
      remove_server();
      throw;
    }
  }
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  ~Backend() {
    m_bouncer.reset();
    remove_server();
  }

  // Runs a statement in the server's "postgres" database, directly.
  void admin(const std::string& sql) const {
    pqxx::connection conn(m_server->url("postgres"));
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  }
  // A new database with prefstore's schema (a copy of the migrated template).
  void create_migrated(const std::string& name) const {
    admin("CREATE DATABASE " + name + " TEMPLATE pgb_template");
  }
  // A new, empty database.
  void create_empty(const std::string& name) const { admin("CREATE DATABASE " + name); }
  // Server sessions (client backends) connected to `database` now.
  [[nodiscard]] long sessions_on(const std::string& database) const {
    pqxx::connection conn(m_server->url("postgres"));
    pqxx::nontransaction tx(conn);
    return tx
        .exec_params1(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = "
            "'client backend'",
            database)[0]
        .as<long>();
  }

  // Connection string of `database` on the server itself, over TCP.
  [[nodiscard]] std::string direct_url(const std::string& database) const {
    return "host=127.0.0.1 port=" + std::to_string(m_server->options().port) +
           " dbname=" + database + " user=postgres";
  }
  [[nodiscard]] PgBouncer& bouncer() const { return *m_bouncer; }

 private:
  // Stops the server and removes its folders.
  void remove_server() noexcept {
    try {
      m_server->stop(prefstore::storage::StopMode::immediate);
    } catch (const std::exception& e) {
      std::cerr << "pgbouncer test server: stop failed: " << e.what() << "\n";
    }
    std::error_code ec;
    const fs::path cluster = m_server->cluster_dir();
    fs::remove_all(cluster, ec);
    fs::remove_all(m_server->options().home, ec);
  }

  std::unique_ptr<prefstore::storage::LocalServer> m_server;
  std::unique_ptr<PgBouncer> m_bouncer;
};

std::mutex g_backend_mutex;
Backend* g_backend = nullptr;  // torn down by BackendEnvironment at the end of the program

// The process's server and pgbouncer, started on first use.
Backend& backend() {
  std::lock_guard lock(g_backend_mutex);
  if (g_backend == nullptr) g_backend = new Backend();
  return *g_backend;
}

class BackendEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(g_backend_mutex);
    delete g_backend;
    g_backend = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new BackendEnvironment);

// A store through pgbouncer with transaction_pooling (8 client connections).
prefstore::StoreOptions pooled_options(const std::string& database) {
  prefstore::StoreOptions options;
  options.database_url = backend().bouncer().url(database);
  options.pool.transaction_pooling = true;
  options.pool.max_size = 8;
  return options;
}

// ------------------------------------------------------------------------------------------
// PgBouncerModel: the model.

const std::string kMinutes = "calendar.default_meeting_minutes";  // integer 5..480, default 30
const std::string kTimezone = "calendar.timezone";                // string, no default
const std::string kUndefined = "calendar.color_theme";            // never defined: refused
const std::vector<std::string> kKeys = {kMinutes, kTimezone, kUndefined};

// Values tried for every key: valid for one key, invalid for the others.
const std::vector<Value>& candidate_values() {
  static const std::vector<Value> values = {Value(std::int64_t{4}),
                                            Value(std::int64_t{5}),
                                            Value(std::int64_t{45}),
                                            Value(std::int64_t{480}),
                                            Value(std::int64_t{481}),
                                            Value(std::string("UTC")),
                                            Value(std::string("Europe/Berlin")),
                                            Value(std::string("")),
                                            Value(true)};
  return values;
}

// Strict mode: the key must be defined and the value valid for it.
bool model_accepts(const std::string& key, const Value& value) {
  if (key == kMinutes) {
    const auto* i = std::get_if<std::int64_t>(&value);
    return i != nullptr && *i >= 5 && *i <= 480;
  }
  if (key == kTimezone) return std::holds_alternative<std::string>(value);
  return false;
}

std::optional<Value> model_default(const std::string& key) {
  if (key == kMinutes) return Value(std::int64_t{30});
  return std::nullopt;
}

struct UserModel {
  std::int64_t version = 0;
  std::map<std::string, Value> values;
};

// One operation of one thread on one of its two users.
struct Op {
  enum Kind { set, set_many, reset, get, get_all, version, history } kind = get;
  int user = 0;
  std::vector<std::pair<std::string, Value>> values;  // set: one; set_many: 1 to 3 distinct keys
  std::string key;                                    // reset, get
};

std::ostream& operator<<(std::ostream& os, const Op& op) {
  static const char* const names[] = {"set",     "set_many", "reset",  "get",
                                      "get_all", "version",  "history"};
  os << names[op.kind] << "(u" << op.user;
  if (!op.key.empty()) os << ", " << op.key;
  for (const auto& [key, value] : op.values) os << ", " << key << "=" << render(value);
  return os << ")";
}

// Picks one operation (inside a property).
Op gen_op() {
  Op op;
  op.kind = static_cast<Op::Kind>(*rc::gen::weightedElement<int>({{4, Op::set},
                                                                  {2, Op::set_many},
                                                                  {2, Op::reset},
                                                                  {2, Op::get},
                                                                  {2, Op::get_all},
                                                                  {1, Op::version},
                                                                  {1, Op::history}}));
  op.user = *rc::gen::inRange(0, 2);
  const auto key = [] { return kKeys[*rc::gen::inRange<std::size_t>(0, kKeys.size())]; };
  const auto value = [] {
    return candidate_values()[*rc::gen::inRange<std::size_t>(0, candidate_values().size())];
  };
  switch (op.kind) {
    case Op::set:
      op.values.emplace_back(key(), value());
      break;
    case Op::set_many: {
      const auto keys = *rc::gen::unique<std::vector<int>>(
          *rc::gen::inRange(1, 4), rc::gen::inRange(0, static_cast<int>(kKeys.size())));
      for (const int k : keys) op.values.emplace_back(kKeys[static_cast<std::size_t>(k)], value());
      break;
    }
    case Op::reset:
    case Op::get:
      op.key = key();
      break;
    default:
      break;
  }
  return op;
}

// Runs one thread's operations against the store and its own model; returns "" or the first
// mismatch (with the operations so far).
std::string run_ops(prefstore::Store& store, const std::vector<Op>& ops,
                    const std::vector<std::string>& users) {
  std::vector<UserModel> models(users.size());
  std::ostringstream trace;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    trace << "  " << i << ": " << op << "\n";
    const std::string& user = users[static_cast<std::size_t>(op.user)];
    UserModel& m = models[static_cast<std::size_t>(op.user)];
    const auto fail = [&](const std::string& what) {
      return "user " + user + ":\n" + trace.str() + "  -> " + what;
    };
    try {
      switch (op.kind) {
        case Op::set:
        case Op::set_many: {
          bool valid = true;
          for (const auto& [key, value] : op.values) valid = valid && model_accepts(key, value);
          try {
            const auto result = op.kind == Op::set
                                    ? store.set(user, op.values[0].first, op.values[0].second)
                                    : store.set_many(user, op.values);
            if (!valid) return fail("accepted an invalid write");
            const auto expected = m.version + static_cast<std::int64_t>(op.values.size());
            if (result.stream_version != expected) {
              return fail("stream_version " + std::to_string(result.stream_version) + ", model " +
                          std::to_string(expected));
            }
            m.version = expected;
            for (const auto& [key, value] : op.values) m.values[key] = value;
          } catch (const prefstore::ValidationError& e) {
            if (valid) return fail(std::string("refused a valid write: ") + e.what());
          }
          break;
        }
        case Op::reset: {
          const bool defined = op.key != kUndefined;
          try {
            const auto result = store.reset(user, op.key);
            if (!defined) return fail("reset an undefined key");
            if (result.stream_version != m.version + 1) {
              return fail("stream_version " + std::to_string(result.stream_version) + ", model " +
                          std::to_string(m.version + 1));
            }
            m.version += 1;
            m.values.erase(op.key);
          } catch (const prefstore::ValidationError& e) {
            if (defined) return fail(std::string("refused a reset: ") + e.what());
          }
          break;
        }
        case Op::get: {
          std::optional<Value> expected = model_default(op.key);
          if (const auto it = m.values.find(op.key); it != m.values.end()) expected = it->second;
          const auto actual = store.get(user, op.key);
          if (render(actual) != render(expected)) {
            return fail("get " + render(actual) + ", model " + render(expected));
          }
          break;
        }
        case Op::get_all: {
          std::string expected;
          std::map<std::string, std::pair<Value, bool>> view;
          for (const auto& key : kKeys) {
            if (const auto it = m.values.find(key); it != m.values.end()) {
              view.emplace(key, std::make_pair(it->second, false));
            } else if (const auto d = model_default(key)) {
              view.emplace(key, std::make_pair(*d, true));
            }
          }
          for (const auto& [key, v] : view) {
            expected += key + "=" + render(v.first) + (v.second ? " (default); " : "; ");
          }
          std::string actual;
          for (const auto& [key, p] : store.get_all(user)) {
            actual += key + "=" + render(p.value) + (p.is_default ? " (default); " : "; ");
          }
          if (actual != expected) return fail("get_all " + actual + ", model " + expected);
          break;
        }
        case Op::version: {
          const auto actual = store.version(user);
          if (actual != m.version) {
            return fail("version " + std::to_string(actual) + ", model " +
                        std::to_string(m.version));
          }
          break;
        }
        case Op::history: {
          const auto events = store.history(user);
          std::string versions;
          for (const auto& e : events) versions += std::to_string(e.stream_version) + " ";
          std::string expected;
          for (std::int64_t v = 1; v <= m.version; ++v) expected += std::to_string(v) + " ";
          if (versions != expected) return fail("history " + versions + ", model " + expected);
          break;
        }
      }
    } catch (const std::exception& e) {
      return fail(std::string("unexpected error: ") + e.what());
    }
  }
  return "";
}

// The store shared by every run: strict mode, through pgbouncer, transaction_pooling on.
prefstore::Store& model_store() {
  static prefstore::Store* store = [] {
    backend().create_migrated("pgb_model");
    auto* s = new prefstore::Store(pooled_options("pgb_model"));
    // Definitions written through the proxy too (the define and definitions statements).
    prefstore::PreferenceDefinition minutes;
    minutes.key = kMinutes;
    minutes.type = prefstore::ValueType::integer;
    minutes.default_value = Value(std::int64_t{30});
    minutes.constraints.min = 5;
    minutes.constraints.max = 480;
    minutes.description = "Length of a new meeting, in minutes";
    (void)s->define(minutes);
    prefstore::PreferenceDefinition timezone;
    timezone.key = kTimezone;
    timezone.type = prefstore::ValueType::string;
    timezone.description = "IANA time zone of the calendar";
    (void)s->define(timezone);
    return s;
  }();
  return *store;
}

constexpr int kThreads = 8;

TEST(PgBouncerModel, EightThreadsMatchTheModelThroughTwoServerConnections) {
  prefstore::Store& store = model_store();
  static std::atomic<int> run{0};
  check_property(
      [&store] {
        std::vector<std::vector<Op>> ops(kThreads);
        for (auto& list : ops) {
          const auto count = *rc::gen::inRange(1, 30);
          for (int i = 0; i < count; ++i) list.push_back(gen_op());
        }
        const int r = run.fetch_add(1);
        std::vector<std::string> failures(kThreads);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
          threads.emplace_back([&, t] {
            const std::string prefix = "r" + std::to_string(r) + "-t" + std::to_string(t);
            failures[static_cast<std::size_t>(t)] = run_ops(store, ops[static_cast<std::size_t>(t)],
                                                            {prefix + "-ada", prefix + "-zoe"});
          });
        }
        for (auto& thread : threads) thread.join();
        std::string all;
        for (int t = 0; t < kThreads; ++t) {
          if (!failures[static_cast<std::size_t>(t)].empty()) {
            all +=
                "thread " + std::to_string(t) + ", " + failures[static_cast<std::size_t>(t)] + "\n";
          }
        }
        if (!all.empty()) RC_FAIL(all);
      },
      100, 100);
  const auto stats = store.pool().stats();
  const long sessions = backend().sessions_on("pgb_model");
  std::cout << "client connections opened " << stats.created << ", server sessions " << sessions
            << "\n";
  EXPECT_GT(stats.created, 2u) << "the store never had more connections than the proxy's pool";
  EXPECT_LE(sessions, 2) << backend().bouncer().log();
  EXPECT_GE(sessions, 1);
}

// ------------------------------------------------------------------------------------------
// Without the option, and what is refused.

// Two client connections on the proxy's one server connection: the second client's first use of
// a statement prepares its name again on the same server session.
TEST(PgBouncer, PreparedStatementsBreakWithoutTransactionPooling) {
  backend().create_migrated("pgb_single");
  for (const bool pooling : {false, true}) {
    prefstore::storage::PoolOptions options;
    options.conninfo = backend().bouncer().url("single");
    options.max_size = 2;
    options.transaction_pooling = pooling;
    prefstore::storage::ConnectionPool pool(options);
    prefstore::storage::CurrentState state(pool);
    std::string error;
    try {
      auto first = pool.acquire();       // a client connection that waits idle
      (void)state.get("ada", kMinutes);  // a second one prepares prefstore_get on the server
      first.release();                   // the first comes back at the top of the idle list...
      (void)state.get("ada", kMinutes);  // ...and prepares the same name on the same server
    } catch (const prefstore::Error& e) {
      error = e.what();
    }
    std::cout << "transaction_pooling " << pooling << ": " << (error.empty() ? "ok" : error)
              << "\n";
    if (pooling) {
      EXPECT_EQ(error, "");
    } else {
      EXPECT_NE(error.find("prefstore_get"), std::string::npos) << error;
      EXPECT_NE(error.find("already exists"), std::string::npos) << error;
    }
  }
}

TEST(PgBouncer, ARoleWithTransactionPoolingIsAUsageErrorNamingTheFix) {
  backend().create_migrated("pgb_role");
  prefstore::StoreOptions options = pooled_options("pgb_role");
  options.pool.role = "prefstore_writer";
  std::string message;
  try {
    const prefstore::Store store(options);
  } catch (const prefstore::UsageError& e) {
    message = e.what();
  }
  std::cout << "message: " << message << "\n";
  ASSERT_NE(message, "") << "no UsageError";
  EXPECT_NE(message.find("\"prefstore_writer\" cannot be used with transaction_pooling"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("member of prefstore_writer"), std::string::npos) << message;
  EXPECT_NE(message.find("keep role empty"), std::string::npos) << message;
}

TEST(PgBouncer, PendingMigrationsThroughTheProxyAreRefusedSayingToMigrateDirectly) {
  backend().create_empty("pgb_empty");
  std::string message;
  try {
    const prefstore::Store store(pooled_options("pgb_empty"));
  } catch (const prefstore::MigrationError& e) {
    message = e.what();
  }
  std::cout << "message: " << message << "\n";
  ASSERT_NE(message, "") << "no MigrationError";
  EXPECT_NE(message.find("0001_"), std::string::npos) << message;
  EXPECT_NE(message.find("run `prefstore migrate` against the server directly"), std::string::npos)
      << message;
  // Nothing was created through the proxy: no session advisory lock, no bootstrap.
  pqxx::connection conn(backend().direct_url("pgb_empty"));
  pqxx::nontransaction tx(conn);
  EXPECT_FALSE(
      tx.exec1("SELECT to_regclass('prefstore.schema_migrations') IS NOT NULL")[0].as<bool>());
  // Migrated directly, the same database then opens through the proxy.
  {
    prefstore::StoreOptions direct;
    direct.database_url = backend().direct_url("pgb_empty");
    const prefstore::Store store(direct);
  }
  prefstore::Store store(pooled_options("pgb_empty"));
  EXPECT_EQ(store.version("ada"), 0);
}

// ------------------------------------------------------------------------------------------
// The CLI through the proxy.

TEST(PgBouncerCli, SetAndGetWorkWithTransactionPooling) {
  backend().create_migrated("pgb_cli");
  const std::map<std::string, std::string> env = {
      {"PREFSTORE_DATABASE_URL", backend().bouncer().url("pgb_cli")},
      {"PREFSTORE_TRANSACTION_POOLING", "1"}};
  const auto set = run_cli("--open set ada calendar.default_meeting_minutes 45", env);
  EXPECT_EQ(set.exit_code, 0) << set.output;
  const auto set_again = run_cli("--open set ada calendar.timezone Europe/Berlin", env);
  EXPECT_EQ(set_again.exit_code, 0) << set_again.output;
  const auto get = run_cli("get ada", env);
  std::cout << get.output;
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_NE(get.output.find("45"), std::string::npos) << get.output;
  EXPECT_NE(get.output.find("Europe/Berlin"), std::string::npos) << get.output;
}

// Administration uses only transaction-scoped state, so it works through the proxy too: a
// backup (two transactions at once), the projections' catch-up (two connections) and verify.
TEST(PgBouncerCli, BackupProjectionsAndVerifyWorkWithTransactionPooling) {
  backend().create_migrated("pgb_cli_admin");
  const std::map<std::string, std::string> env = {
      {"PREFSTORE_DATABASE_URL", backend().bouncer().url("pgb_cli_admin")},
      {"PREFSTORE_TRANSACTION_POOLING", "1"}};
  for (const char* user : {"ada", "grace"}) {
    const auto set =
        run_cli(std::string("--open set ") + user + " calendar.week_start monday", env);
    ASSERT_EQ(set.exit_code, 0) << set.output;
  }
  const fs::path dir = make_temp_dir("prefstore-pgbouncer-backup");
  const std::string file = (dir / "prefs.psb").string();
  const auto backup = run_cli("backup create " + file, env);
  EXPECT_EQ(backup.exit_code, 0) << backup.output;
  const auto check = run_cli("backup verify " + file, env);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  const auto catch_up = run_cli("projections catch-up", env);
  EXPECT_EQ(catch_up.exit_code, 0) << catch_up.output;
  const auto verify = run_cli("verify --all", env);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  std::cout << backup.output << check.output << catch_up.output << verify.output;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(PgBouncerCli, ARoleWithTransactionPoolingExitsWithUsage) {
  backend().create_migrated("pgb_cli_role");
  const auto r =
      run_cli("get ada", {{"PREFSTORE_DATABASE_URL", backend().bouncer().url("pgb_cli_role")},
                          {"PREFSTORE_TRANSACTION_POOLING", "1"},
                          {"PREFSTORE_ROLE", "prefstore_reader"}});
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("transaction_pooling"), std::string::npos) << r.output;
}

TEST(PgBouncerCli, MigrateThroughTheProxyExitsWithSchemaAndSaysToConnectDirectly) {
  backend().create_empty("pgb_cli_empty");
  const auto r =
      run_cli("migrate", {{"PREFSTORE_DATABASE_URL", backend().bouncer().url("pgb_cli_empty")},
                          {"PREFSTORE_TRANSACTION_POOLING", "1"}});
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 6) << r.output;
  EXPECT_NE(r.output.find("against the server directly"), std::string::npos) << r.output;
}

}  // namespace
