// The prefstore command-line tool, run as a real process: migrate, migrate --status, local,
// exit codes, and passwords that never show.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <pqxx/pqxx>

#include "test_cluster.hpp"

namespace fs = std::filesystem;

namespace prefstore {
namespace {

using prefstore::testing::CommandResult;
using prefstore::testing::TestCluster;

// Runs the CLI with the given environment overrides ("" unsets a variable). The database
// variables of the calling environment are cleared first, so nothing leaks in.
CommandResult run_cli(const std::string& args, const std::map<std::string, std::string>& env) {
  static const char* cleared[] = {"PREFSTORE_DATABASE_URL",
                                  "PREFSTORE_HOME",
                                  "PGHOST",
                                  "PGHOSTADDR",
                                  "PGPORT",
                                  "PGDATABASE",
                                  "PGUSER",
                                  "PGSERVICE"};
  std::map<std::string, std::string> saved;
  for (const char* name : cleared) {
    if (const char* v = std::getenv(name)) saved[name] = v;
    ::unsetenv(name);
  }
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
  CommandResult r = prefstore::testing::run_shell(std::string(PREFSTORE_CLI_PATH) + " " + args);
  for (const auto& [k, v] : env) ::unsetenv(k.c_str());
  for (const auto& [k, v] : saved) ::setenv(k.c_str(), v.c_str(), 1);
  return r;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_cli("--help", {});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "migrate")) << r.output;
  EXPECT_TRUE(contains(r.output, "local")) << r.output;
  EXPECT_TRUE(contains(r.output, "PREFSTORE_DATABASE_URL")) << r.output;
}

TEST(Cli, UnknownCommandIsAUsageError) {
  EXPECT_EQ(run_cli("frobnicate", {}).exit_code, 2);
  EXPECT_EQ(run_cli("", {}).exit_code, 2);
  EXPECT_EQ(run_cli("local restart", {}).exit_code, 2);
}

TEST(Cli, MigrateAppliesThenReportsUpToDate) {
  const std::string url = TestCluster::instance().fresh_database();
  const auto before = run_cli("migrate --status", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(before.exit_code, 0) << before.output;
  EXPECT_TRUE(contains(before.output, "0001_initial_schema.sql")) << before.output;
  EXPECT_TRUE(contains(before.output, "pending")) << before.output;

  const auto first = run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_TRUE(contains(first.output, "applied 0001_initial_schema.sql")) << first.output;

  const auto second = run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_TRUE(contains(second.output, "up to date")) << second.output;

  const auto status = run_cli("migrate --status", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(contains(status.output, "applied")) << status.output;
  EXPECT_TRUE(contains(status.output, "0 pending")) << status.output;
}

TEST(Cli, ChangedMigrationExitsWithTheSchemaCodeNamingTheFile) {
  const std::string url = TestCluster::instance().fresh_database();
  ASSERT_EQ(run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}}).exit_code, 0);
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    tx.exec("UPDATE prefstore.schema_migrations SET checksum = repeat('0', 64) WHERE version = 1");
    tx.commit();
  }
  const auto r = run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(r.exit_code, 6) << r.output;
  EXPECT_TRUE(contains(r.output, "0001_initial_schema.sql")) << r.output;
  const auto status = run_cli("migrate --status", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(status.exit_code, 6) << status.output;
  EXPECT_TRUE(contains(status.output, "CHANGED")) << status.output;
}

TEST(Cli, UnreachableDatabaseExitsUnavailableWithoutShowingThePassword) {
  const std::string secret = "calendar-Pa55word";
  for (const std::string& url :
       {"postgresql://svc:" + secret + "@/prefs?host=/nonexistent/dir",
        "host=/nonexistent/dir user=svc password=" + secret + " dbname=prefs"}) {
    for (const char* args : {"migrate", "migrate --status"}) {
      const auto r = run_cli(args, {{"PREFSTORE_DATABASE_URL", url}});
      EXPECT_EQ(r.exit_code, 5) << r.output;
      EXPECT_FALSE(contains(r.output, secret)) << r.output;
      EXPECT_TRUE(contains(r.output, "***")) << r.output;
    }
  }
}

TEST(Cli, BadConnectionStringIsAUsageError) {
  const auto r =
      run_cli("migrate", {{"PREFSTORE_DATABASE_URL", "host='unterminated password=x1y2"}});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(contains(r.output, "x1y2")) << r.output;
}

TEST(Cli, LocalServerLifecycleAndDefaultDatabase) {
  const fs::path root = prefstore::testing::make_temp_dir("prefstore-cli");
  const std::map<std::string, std::string> env = {
      {"PREFSTORE_HOME", (root / ".prefstore").string()}};

  auto r = run_cli("local status", env);
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_TRUE(contains(r.output, "not created")) << r.output;

  r = run_cli("local start", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("local status", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "running")) << r.output;

  // No database configured: migrate uses the local server.
  r = run_cli("migrate", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "local server")) << r.output;
  EXPECT_TRUE(contains(r.output, "applied 0001_initial_schema.sql")) << r.output;

  r = run_cli("local url", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "dbname='prefstore'")) << r.output;
  {
    std::string url = r.output;
    while (!url.empty() && url.back() == '\n') url.pop_back();
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM prefstore.schema_migrations")[0].as<int>(), 1);
  }

  r = run_cli("local stop", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("local status", env);
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_TRUE(contains(r.output, "stopped")) << r.output;

  // Started again on demand by the next command, with its data.
  r = run_cli("migrate --status", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "0 pending")) << r.output;
  (void)run_cli("local stop", env);

  std::error_code ec;
  const fs::path cluster = root / ".prefstore" / "cluster";
  if (fs::is_symlink(cluster, ec)) fs::remove_all(fs::read_symlink(cluster, ec), ec);
  fs::remove_all(root, ec);
}

}  // namespace
}  // namespace prefstore
