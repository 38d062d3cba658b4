// Observability (issue 7, points 3 to 5): Store::metrics() in the Prometheus text format,
// Store::status() with its health verdict, `prefstore status` / `prefstore metrics` on a live
// store and on a stopped server, and structured logs that never hold a password.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

using prefstore::testing::run_cli;
using prefstore::testing::ScratchDatabase;
using prefstore::testing::set_read_only;
using namespace std::chrono_literals;

StoreOptions options_for(const std::string& url) {
  StoreOptions o;
  o.database_url = url;
  o.strict = false;
  o.pool.max_size = 3;
  return o;
}

void exec(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

// The value of the sample `series` (name and labels exactly as rendered), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  for (std::size_t at = 0; (at = text.find(prefix, at)) != std::string::npos; ++at) {
    if (at == 0 || text[at - 1] == '\n') {
      const auto end = text.find('\n', at);
      return std::stod(text.substr(at + prefix.size(), end - at - prefix.size()));
    }
  }
  return -1;
}

bool mentions(const std::vector<std::string>& problems, const std::string& part) {
  for (const auto& p : problems) {
    if (p.find(part) != std::string::npos) return true;
  }
  return false;
}

TEST(Metrics, CountOperationsErrorsAppendsAndDuplicates) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  const Value tz(std::string("Europe/Paris"));
  AppendOptions once;
  once.event_ids = {"6f1c1c52-5b7e-4b7e-9d0e-2f4d5b1a0c01"};
  (void)store.set("ada", "calendar.time_zone", tz, {}, once);
  (void)store.set("ada", "calendar.time_zone", tz, {}, once);  // the same id: a duplicate
  (void)store.set_many("ada", {{"calendar.week_start", Value(std::string("monday"))},
                               {"calendar.default_meeting_minutes", Value(std::int64_t{30})}});
  AppendOptions stale;
  stale.expected = storage::ExpectedVersion::exactly(1);
  EXPECT_THROW((void)store.set("ada", "calendar.time_zone", tz, {}, stale), VersionConflictError);
  EXPECT_THROW((void)store.set("ada", "", tz), ValidationError);
  (void)store.get("ada", "calendar.time_zone");
  (void)store.get_all("ada");

  const std::string text = store.metrics();
  EXPECT_EQ(sample(text, "prefstore_operation_duration_seconds_count{operation=\"set\"}"), 4)
      << text;
  EXPECT_EQ(sample(text, "prefstore_operation_duration_seconds_count{operation=\"set_many\"}"), 1);
  EXPECT_EQ(sample(text, "prefstore_operation_duration_seconds_count{operation=\"get\"}"), 1);
  EXPECT_EQ(sample(text, "prefstore_operation_duration_seconds_count{operation=\"get_all\"}"), 1);
  EXPECT_EQ(sample(text,
                   "prefstore_operation_errors_total{operation=\"set\",error=\"version_"
                   "conflict\"}"),
            1)
      << text;
  EXPECT_EQ(
      sample(text, "prefstore_operation_errors_total{operation=\"set\",error=\"validation\"}"), 1);
  EXPECT_EQ(sample(text, "prefstore_events_appended_total"), 3);
  EXPECT_EQ(sample(text, "prefstore_append_duplicates_total"), 1);
  EXPECT_EQ(sample(text, "prefstore_up"), 1);
  EXPECT_EQ(sample(text, "prefstore_log_events"), 3);
  EXPECT_EQ(sample(text, "prefstore_streams"), 1);
  EXPECT_GE(sample(text, "prefstore_pool_connections_opened_total"), 1);
  EXPECT_GE(sample(text, "prefstore_pool_acquire_wait_seconds_count"), 6);
  EXPECT_EQ(sample(text, "prefstore_pool_max_connections"), 3);
  // Every shipped asynchronous projection is behind by the whole log until it runs.
  EXPECT_EQ(sample(text, "prefstore_projection_lag_events{projection=\"preference_value_counts\"}"),
            3);
  // Every line is a comment or a sample: name{labels} value.
  const std::regex line(R"((# (HELP|TYPE) .*)|([a-z_:]+(\{.*\})? [-+0-9.eInfNa]+))");
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "the text must end with a newline";
    EXPECT_TRUE(std::regex_match(text.substr(start, end - start), line))
        << text.substr(start, end - start);
    start = end + 1;
  }
}

TEST(Metrics, ProjectionLagFallsToZeroWhenTheProjectorCatchesUp) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  for (int i = 0; i < 5; ++i) {
    (void)store.set("user" + std::to_string(i), "calendar.time_zone", Value(std::string("UTC")));
  }
  EXPECT_EQ(sample(store.metrics(),
                   "prefstore_projection_lag_events{projection=\"preference_value_counts\"}"),
            5);
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  EXPECT_EQ(runner.catch_up(), 10);  // 5 events for each of the two projections
  const std::string text = store.metrics();
  EXPECT_EQ(sample(text, "prefstore_projection_lag_events{projection=\"preference_value_counts\"}"),
            0);
  EXPECT_EQ(sample(text, "prefstore_projection_position{projection=\"preference_value_counts\"}"),
            5);
  EXPECT_EQ(sample(text, "prefstore_projection_failed{projection=\"snapshots\"}"), 0);
}

TEST(Metrics, RetriesAreCountedByOperationAndError) {
  ScratchDatabase db;
  StoreOptions o = options_for(db.url());
  o.retry.deadline = 20s;
  o.retry.max_attempts = 100;
  Store store(o);
  (void)store.set("ada", "calendar.time_zone", Value(std::string("UTC")));
  set_read_only(db.url(), true);
  std::thread heal([&] {
    std::this_thread::sleep_for(500ms);
    set_read_only(db.url(), false);
  });
  (void)store.set("ada", "calendar.time_zone", Value(std::string("Asia/Tokyo")));
  heal.join();
  const std::string text = store.metrics();
  EXPECT_GE(sample(text, "prefstore_retries_total{operation=\"set\",error=\"unavailable\"}"), 1)
      << text;
  EXPECT_GE(sample(text, "prefstore_pool_connections_discarded_total"), 1) << text;
}

TEST(Status, AFreshStoreIsHealthy) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  (void)store.set("ada", "calendar.time_zone", Value(std::string("UTC")));
  const StoreStatus s = store.status();
  EXPECT_TRUE(s.reachable);
  EXPECT_TRUE(s.healthy()) << s.verdict();
  EXPECT_EQ(s.verdict(), "healthy");
  EXPECT_EQ(s.schema_version, s.build_schema_version);
  EXPECT_EQ(s.pending_migrations, 0);
  ASSERT_TRUE(s.database_status.has_value());
  EXPECT_EQ(s.database_status->events, 1);
  EXPECT_EQ(s.database_status->streams, 1);
  EXPECT_FALSE(s.database_status->newest_backup.has_value());
  EXPECT_EQ(s.projections.size(), projections::default_projections().size());
  for (const auto& p : s.projections) EXPECT_TRUE(p.never_run) << p.name;
  // Projections that never ran are judged only on request.
  HealthThresholds strict;
  strict.require_projections = true;
  strict.max_lag_events = 0;
  EXPECT_FALSE(store.status(strict).healthy());
}

TEST(Status, AFailedOrLaggingProjectionIsUnhealthy) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  (void)store.set("ada", "calendar.time_zone", Value(std::string("UTC")));
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
  EXPECT_TRUE(store.status().healthy()) << store.status().verdict();
  for (int i = 0; i < 3; ++i)
    (void)store.set("bob", "calendar.week_start", Value(std::string("monday")));
  HealthThresholds t;
  t.max_lag_events = 2;
  StoreStatus s = store.status(t);
  EXPECT_FALSE(s.healthy());
  EXPECT_TRUE(
      mentions(s.problems, "projection preference_value_counts is 3 events behind (limit 2)"))
      << s.verdict();
  exec(db.url(),
       "UPDATE prefstore.projection_checkpoints SET state = 'failed', last_error = 'boom', "
       "error_position = 2 WHERE projection_name = 'snapshots'");
  s = store.status();
  EXPECT_TRUE(mentions(s.problems, "projection snapshots failed at position 1: boom"))
      << s.verdict();
}

TEST(Status, SchemaDriftAndOldBackupsAreUnhealthy) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  HealthThresholds t;
  t.max_backup_age = std::chrono::hours(1);
  EXPECT_TRUE(mentions(store.status(t).problems, "no backup has been taken from this database"));
  const auto dir = testing::make_temp_dir("obs-backup");
  (void)store.backup(dir / "full.psb");
  StoreStatus s = store.status(t);
  EXPECT_TRUE(s.healthy()) << s.verdict();
  ASSERT_TRUE(s.database_status->newest_backup.has_value());
  EXPECT_EQ(s.database_status->newest_backup->file, (dir / "full.psb").string());
  exec(db.url(), "UPDATE prefstore.backup_history SET recorded_at = now() - interval '3 hours'");
  EXPECT_TRUE(mentions(store.status(t).problems, "newest backup is 3 h old (limit 1 h)"))
      << store.status(t).verdict();

  exec(db.url(),
       "ALTER TABLE prefstore.schema_migrations DISABLE TRIGGER USER; "
       "DELETE FROM prefstore.schema_migrations WHERE version = (SELECT max(version) FROM "
       "prefstore.schema_migrations)");
  EXPECT_TRUE(mentions(store.status().problems, "1 migration(s) pending (run `prefstore migrate`)"))
      << store.status().verdict();
  std::filesystem::remove_all(dir);
}

// A dedicated server the test can stop and start (the shared test cluster must stay up).
struct StoppableServer {
  std::filesystem::path home = testing::make_temp_dir("obs-server");
  storage::LocalServer server{[this] {
    storage::LocalServerOptions o;
    o.home = home;
    o.durable = false;
    o.port = testing::free_port();  // names the socket; no port is shared with other tests
    return o;
  }()};
  StoppableServer() { server.start(); }
  ~StoppableServer() {
    try {
      server.stop(storage::StopMode::immediate);
    } catch (...) {
    }
    std::filesystem::remove_all(server.cluster_dir());
    std::filesystem::remove_all(home);
  }
};

TEST(Status, AStoppedServerIsReportedAndTheStoreRecoversWhenItIsBack) {
  StoppableServer s;
  StoreOptions o = options_for(s.server.url());
  o.pool.connect_timeout = 2s;
  Store store(o);
  (void)store.set("ada", "calendar.time_zone", Value(std::string("UTC")));
  s.server.stop();

  const StoreStatus down = store.status();
  EXPECT_FALSE(down.reachable);
  EXPECT_FALSE(down.healthy());
  EXPECT_EQ(down.verdict().rfind("unhealthy: database unreachable: ", 0), 0u) << down.verdict();
  const std::string text = store.metrics();
  EXPECT_EQ(sample(text, "prefstore_up"), 0) << text;
  EXPECT_EQ(sample(text, "prefstore_healthy"), 0);
  EXPECT_EQ(sample(text, "prefstore_log_events"), -1) << "no stale database figures";
  EXPECT_GE(sample(text, "prefstore_pool_connect_failures_total"), 1);

  s.server.start();
  const StoreStatus up = store.status();
  EXPECT_TRUE(up.healthy()) << up.verdict();
  EXPECT_EQ(up.database_status->events, 1);
  EXPECT_EQ(sample(store.metrics(), "prefstore_up"), 1);
}

TEST(StatusCli, LiveStoreIsHealthyAndJudgedAgainstFlags) {
  ScratchDatabase db;
  {
    Store store(options_for(db.url()));
    (void)store.set("ada", "calendar.time_zone", Value(std::string("UTC")));
  }
  const std::map<std::string, std::string> env{{"PREFSTORE_DATABASE_URL", db.url()}};
  auto r = run_cli("status", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("log: 1 events in 1 streams"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\nhealthy\n"), std::string::npos) << r.output;
  r = run_cli("status --json", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"healthy\":true"), std::string::npos) << r.output;
  r = run_cli("status --max-backup-age 24", env);
  EXPECT_EQ(r.exit_code, 9) << r.output;
  EXPECT_NE(r.output.find("unhealthy: no backup has been taken from this database"),
            std::string::npos)
      << r.output;
  r = run_cli("metrics", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sample(r.output, "prefstore_up"), 1) << r.output;
  EXPECT_EQ(sample(r.output, "prefstore_log_events"), 1);
}

TEST(StatusCli, AStoppedServerExitsUnavailableAndMetricsSayDown) {
  StoppableServer s;
  { Store store(options_for(s.server.url())); }
  s.server.stop();
  const std::map<std::string, std::string> env{{"PREFSTORE_DATABASE_URL", s.server.url()}};
  auto r = run_cli("status", env);
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("unhealthy: database unreachable"), std::string::npos) << r.output;
  r = run_cli("status --json", env);
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("\"reachable\":false"), std::string::npos) << r.output;
  r = run_cli("metrics", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sample(r.output, "prefstore_up"), 0) << r.output;
  EXPECT_EQ(sample(r.output, "prefstore_log_events"), -1);
  // A health check never starts the local server it checks.
  const auto home = testing::make_temp_dir("obs-local");
  r = run_cli("status", {{"PREFSTORE_HOME", home.string()}});
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_FALSE(std::filesystem::exists(home / "cluster")) << r.output;
  std::filesystem::remove_all(home);
}

// Captures the library's log records for one test and restores the defaults afterwards.
class CapturedLog {
 public:
  explicit CapturedLog(LogLevel level) {
    set_log_sink([this](const LogRecord& r) {
      std::lock_guard lock(m_mutex);
      m_lines.push_back(format_logfmt(r));
    });
    set_log_level(level);
  }
  ~CapturedLog() {
    set_log_level(LogLevel::off);
    set_log_sink({});
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(m_mutex);
    return m_lines;
  }

 private:
  std::mutex m_mutex;
  std::vector<std::string> m_lines;
};

TEST(Logs, RetriesAreLoggedAsStructuredLinesWithoutThePassword) {
  CapturedLog captured(LogLevel::debug);
  StoreOptions o;
  o.database_url = "postgresql://prefstore_app:s3cr3t-pw@127.0.0.1:1/prefstore";
  o.migrate_on_open = false;
  o.retry.deadline = 300ms;
  o.retry.initial_backoff = 20ms;
  Store store(o);
  EXPECT_THROW((void)store.get("ada", "calendar.time_zone"), UnavailableError);
  const auto lines = captured.lines();
  bool retry = false;
  for (const auto& line : lines) {
    EXPECT_EQ(line.find("s3cr3t-pw"), std::string::npos) << line;
    retry =
        retry || (line.find("level=warn event=retry operation=get attempt=1") != std::string::npos);
  }
  EXPECT_TRUE(retry) << (lines.empty() ? "no lines" : lines.front());
}

TEST(Logs, TheCliWritesLogfmtOnStderrAtTheLevelAskedAndNeverThePassword) {
  const std::string url = "postgresql://prefstore_app:s3cr3t-pw@127.0.0.1:1/prefstore";
  auto r = run_cli("--log-level debug get ada", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_EQ(r.output.find("s3cr3t-pw"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("level=warn event=connection_failed database="), std::string::npos)
      << r.output;
  // Quiet by default: the same failure without a level writes the error only.
  r = run_cli("get ada", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(r.output.find("event="), std::string::npos) << r.output;
  r = run_cli("get ada", {{"PREFSTORE_DATABASE_URL", url}, {"PREFSTORE_LOG_LEVEL", "warn"}});
  EXPECT_NE(r.output.find("level=warn event=connection_failed"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("s3cr3t-pw"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace prefstore
