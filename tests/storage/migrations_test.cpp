// The migration runner: order, exactly-once under concurrency, refusal of changed files,
// atomicity of a failing file. Each test runs on its own fresh database.
#include "prefstore/storage/migrations.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <pqxx/pqxx>
#include <thread>

#include "prefstore/errors.hpp"
#include "test_cluster.hpp"

namespace prefstore::storage {
namespace {

using prefstore::testing::TestCluster;

class MigrationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_url = TestCluster::instance().fresh_database();
    PoolOptions o;
    o.conninfo = m_url;
    o.max_size = 4;
    m_pool = std::make_unique<ConnectionPool>(o);
  }
  std::string query(const std::string& sql) {
    pqxx::connection c(m_url);
    pqxx::nontransaction tx(c);
    const auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }
  std::string m_url;
  std::unique_ptr<ConnectionPool> m_pool;
};

// A small, fake migration set: a counter table, and a migration that is not idempotent (it
// increments the counter), so applying a file twice would show.
std::vector<Migration> counting_migrations() {
  return {
      {1, "0001_counter.sql",
       "CREATE TABLE public.applied (n int NOT NULL); INSERT INTO public.applied VALUES (0);"},
      {2, "0002_bump.sql", "UPDATE public.applied SET n = n + 1;"},
  };
}

TEST(MigrationFiles, EmbeddedMigrationsAreNumberedFromOneWithoutGaps) {
  const auto& all = embedded_migrations();
  ASSERT_FALSE(all.empty());
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].version, static_cast<int>(i) + 1) << all[i].file_name;
    EXPECT_FALSE(all[i].sql.empty()) << all[i].file_name;
  }
  EXPECT_EQ(all[0].file_name, "0001_initial_schema.sql");
}

TEST(MigrationFiles, FileNameGrammar) {
  EXPECT_EQ(migration_version_from_file_name("0001_initial_schema.sql"), 1);
  EXPECT_EQ(migration_version_from_file_name("0042_add_index.sql"), 42);
  for (const char* bad : {"1_x.sql", "0001-x.sql", "0001_X.sql", "0000_zero.sql", "0001_x.SQL",
                          "0001_.sql", "abcd_x.sql"}) {
    EXPECT_THROW((void)migration_version_from_file_name(bad), UsageError) << bad;
  }
}

TEST(MigrationFiles, ChecksumIsTheSha256OfTheFile) {
  EXPECT_EQ(migration_checksum({1, "0001_a.sql", "abc"}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(MigrationsTest, AppliesEveryEmbeddedMigrationInOrderAndRecordsIt) {
  MigrationRunner runner(*m_pool);
  const auto applied = runner.migrate();
  ASSERT_EQ(applied.size(), embedded_migrations().size());
  for (std::size_t i = 0; i < applied.size(); ++i) {
    EXPECT_EQ(applied[i].version, embedded_migrations()[i].version);
    EXPECT_EQ(applied[i].state, MigrationState::applied);
    ASSERT_TRUE(applied[i].duration_ms.has_value());
    EXPECT_GE(*applied[i].duration_ms, 0.0);
  }
  EXPECT_EQ(query("SELECT count(*) FROM prefstore.schema_migrations"),
            std::to_string(embedded_migrations().size()));
  EXPECT_EQ(query("SELECT checksum FROM prefstore.schema_migrations WHERE version = 1"),
            migration_checksum(embedded_migrations()[0]));
  EXPECT_EQ(runner.current_version(), embedded_migrations().back().version);
}

TEST_F(MigrationsTest, SecondRunAppliesNothing) {
  MigrationRunner runner(*m_pool);
  (void)runner.migrate();
  EXPECT_TRUE(runner.migrate().empty());
}

TEST_F(MigrationsTest, StatusListsPendingThenApplied) {
  MigrationRunner runner(*m_pool, counting_migrations());
  auto before = runner.status();
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(before[0].state, MigrationState::pending);
  EXPECT_FALSE(before[0].applied_at.has_value());
  EXPECT_EQ(runner.current_version(), 0);
  (void)runner.migrate();
  auto after = runner.status();
  ASSERT_EQ(after.size(), 2u);
  for (const auto& s : after) {
    EXPECT_EQ(s.state, MigrationState::applied) << s.file_name;
    ASSERT_TRUE(s.applied_at.has_value());
    EXPECT_EQ(s.applied_at->size(), 24u) << *s.applied_at;  // 2026-11-30T06:00:00.000Z
  }
}

TEST_F(MigrationsTest, EightConcurrentRunnersApplyEachFileOnce) {
  std::atomic<int> failures{0};
  std::atomic<std::size_t> applied_total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        PoolOptions o;
        o.conninfo = m_url;
        ConnectionPool pool(o);  // one pool (one session) per runner, as separate processes would
        applied_total += MigrationRunner(pool, counting_migrations()).migrate().size();
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(applied_total.load(), 2u);  // two files, applied once in all
  EXPECT_EQ(query("SELECT n FROM public.applied"), "1");
  EXPECT_EQ(query("SELECT count(*) FROM prefstore.schema_migrations"), "2");
}

TEST_F(MigrationsTest, RefusesAChangedAppliedFileNamingIt) {
  (void)MigrationRunner(*m_pool, counting_migrations()).migrate();
  auto changed = counting_migrations();
  changed[0].sql += "\n-- an innocent-looking edit\n";
  MigrationRunner runner(*m_pool, changed);
  try {
    (void)runner.migrate();
    FAIL() << "expected MigrationError";
  } catch (const MigrationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("0001_counter.sql"), std::string::npos) << msg;
    EXPECT_NE(msg.find("changed after it was applied"), std::string::npos) << msg;
  }
  const auto status = runner.status();
  EXPECT_EQ(status[0].state, MigrationState::changed);
  EXPECT_EQ(status[1].state, MigrationState::applied);
}

TEST_F(MigrationsTest, RefusesADatabaseMigratedByANewerBuild) {
  auto newer = counting_migrations();
  newer.push_back({3, "0003_newer.sql", "SELECT 1;"});
  (void)MigrationRunner(*m_pool, newer).migrate();
  MigrationRunner older(*m_pool, counting_migrations());
  try {
    (void)older.migrate();
    FAIL() << "expected MigrationError";
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("0003_newer.sql"), std::string::npos) << e.what();
  }
  EXPECT_EQ(older.status().back().state, MigrationState::unknown);
}

TEST_F(MigrationsTest, FailingFileLeavesTheSchemaAsItWas) {
  auto migrations = counting_migrations();
  migrations.push_back({3, "0003_broken.sql",
                        "CREATE TABLE public.half_done (x int);\n"
                        "INSERT INTO public.half_done VALUES (1);\n"
                        "UPDATE public.applied SET n = n + 100;\n"
                        "ALTER TABLE public.no_such_table ADD COLUMN y int;"});
  MigrationRunner runner(*m_pool, migrations);
  try {
    (void)runner.migrate();
    FAIL() << "expected MigrationError";
  } catch (const MigrationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("0003_broken.sql"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no_such_table"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rolled back"), std::string::npos) << msg;
    EXPECT_EQ(e.sqlstate(), "42P01");
  }
  // Files 1 and 2 landed; nothing of file 3 did.
  EXPECT_EQ(query("SELECT to_regclass('public.half_done')::text"), "");
  EXPECT_EQ(query("SELECT n FROM public.applied"), "1");
  EXPECT_EQ(query("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                  "prefstore.schema_migrations"),
            "1,2");
  EXPECT_EQ(runner.current_version(), 2);

  // Fixed (it was never applied, so it may still change), it applies.
  migrations[2].sql = "CREATE TABLE public.half_done (x int);";
  EXPECT_EQ(MigrationRunner(*m_pool, migrations).migrate().size(), 1u);
  EXPECT_EQ(query("SELECT to_regclass('public.half_done')::text"), "half_done");
}

TEST_F(MigrationsTest, RefusesAPendingFileOlderThanAnAppliedOne) {
  auto migrations = counting_migrations();
  (void)MigrationRunner(*m_pool, {migrations[0], {3, "0003_later.sql", "SELECT 1;"}}).migrate();
  migrations.push_back({3, "0003_later.sql", "SELECT 1;"});
  try {
    (void)MigrationRunner(*m_pool, migrations).migrate();
    FAIL() << "expected MigrationError";
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("0002_bump.sql"), std::string::npos) << e.what();
  }
}

TEST_F(MigrationsTest, MalformedOrDuplicateMigrationSetsAreUsageErrors) {
  EXPECT_THROW(MigrationRunner(*m_pool, {{1, "first.sql", "SELECT 1;"}}), UsageError);
  EXPECT_THROW(MigrationRunner(*m_pool, {{2, "0001_a.sql", "SELECT 1;"}}), UsageError);
  EXPECT_THROW(
      MigrationRunner(*m_pool, {{1, "0001_a.sql", "SELECT 1;"}, {1, "0001_b.sql", "SELECT 2;"}}),
      UsageError);
}

TEST_F(MigrationsTest, LockIsReleasedAfterAFailure) {
  auto migrations = counting_migrations();
  migrations[1].sql = "SELECT no_such_function();";
  EXPECT_THROW((void)MigrationRunner(*m_pool, migrations).migrate(), MigrationError);
  // The advisory lock is not held any more: another session can take it at once.
  EXPECT_EQ(query("SELECT pg_try_advisory_lock(x'7072656673746f72'::bigint)::text"), "true");
}

TEST_F(MigrationsTest, UnreachableDatabaseIsUnavailable) {
  PoolOptions o;
  o.conninfo = "host=/nonexistent/socket/dir dbname=x";
  ConnectionPool pool(o);
  EXPECT_THROW((void)MigrationRunner(pool).migrate(), UnavailableError);
  EXPECT_THROW((void)MigrationRunner(pool).status(), UnavailableError);
}

// N processes (the real CLI) migrating one database at once.
TEST_F(MigrationsTest, SixProcessesMigratingAtOnceApplyEachFileOnce) {
  ::setenv("PREFSTORE_DATABASE_URL", m_url.c_str(), 1);
  const auto result = prefstore::testing::run_shell(
      "pids=''; for i in 1 2 3 4 5 6; do " PREFSTORE_CLI_PATH
      " migrate > /dev/null & "
      "pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc");
  ::unsetenv("PREFSTORE_DATABASE_URL");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(query("SELECT count(*) FROM prefstore.schema_migrations"),
            std::to_string(embedded_migrations().size()));
  EXPECT_EQ(query("SELECT count(DISTINCT version) FROM prefstore.schema_migrations"),
            std::to_string(embedded_migrations().size()));
}

}  // namespace
}  // namespace prefstore::storage
