// The prefstore command-line tool, run as a real process: migrate, migrate --status, local,
// exit codes, and passwords that never show.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <pqxx/pqxx>

#include "cli_runner.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/migrations.hpp"
#include "test_cluster.hpp"

namespace fs = std::filesystem;

namespace prefstore {
namespace {

using prefstore::testing::run_cli;
using prefstore::testing::TestCluster;

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

// The preference commands, their output and their exit codes (docs/errors.md).
TEST(Cli, DefineSetGetResetHistoryWithExitCodes) {
  const std::map<std::string, std::string> env = {
      {"PREFSTORE_DATABASE_URL", TestCluster::instance().fresh_database()},
      {"PREFSTORE_ACTOR", "grace@platform"}};
  auto r = run_cli(
      "define calendar.default_meeting_minutes --type int --default 30 --min 5 "
      "--max 480 --description 'Length of a new meeting'",
      env);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli(
      "define notifications.channels --type string_list --default email "
      "--allowed email,push,sms --max-items 2",
      env);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("define calendar.timezone --type nonsense", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "nonsense")) << r.output;
  r = run_cli("define calendar.timezone", env);  // --type missing
  EXPECT_EQ(r.exit_code, 2) << r.output;

  r = run_cli("definitions", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "min 5, max 480")) << r.output;
  EXPECT_TRUE(contains(r.output, "2 definitions")) << r.output;

  r = run_cli("set ada calendar.default_meeting_minutes 45 --source calendar-web --reason 'focus'",
              env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "version 1")) << r.output;
  r = run_cli("set ada notifications.channels email,push --source calendar-mobile", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // Validation: exit 3, the message names key, value and constraint; nothing written.
  r = run_cli("set ada calendar.default_meeting_minutes 600", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "calendar.default_meeting_minutes: 600 is above the maximum 480"))
      << r.output;
  r = run_cli("set ada calendar.default_meeting_minutes soon", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  r = run_cli("set ada calendar.unknown_key 1", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  r = run_cli("--open set ada calendar.unknown_key 1", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // Conflict: exit 4, with the actual version.
  r = run_cli("set ada calendar.default_meeting_minutes 50 --expect-version 1", env);
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "stream is at version 3")) << r.output;
  r = run_cli("set ada calendar.default_meeting_minutes 50 --expect-version 3", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // A retry with the same event id writes nothing.
  const std::string id = "6f1c2a9e-4b7d-4c1e-9a55-2f0d8e7b3c11";
  r = run_cli("reset ada calendar.default_meeting_minutes --event-id " + id, env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("reset ada calendar.default_meeting_minutes --event-id " + id, env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "already stored")) << r.output;

  r = run_cli("get ada", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "[email, push]")) << r.output;
  EXPECT_TRUE(contains(r.output, "default")) << r.output;
  r = run_cli("get ada calendar.default_meeting_minutes", env);
  EXPECT_EQ(r.output, "30\n");
  r = run_cli("get ada --json", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\"notifications.channels\":[\"email\",\"push\"]")) << r.output;

  r = run_cli("history ada", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "5 events")) << r.output;
  EXPECT_TRUE(contains(r.output, "calendar-mobile")) << r.output;
  EXPECT_TRUE(contains(r.output, "focus")) << r.output;
  r = run_cli("history ada --json --limit 1", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\"actor\":\"grace@platform\"")) << r.output;

  r = run_cli("deprecate calendar.default_meeting_minutes --note 'use calendar.meeting.length'",
              env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("definitions --json", env);
  EXPECT_TRUE(contains(r.output, "\"deprecated\":true")) << r.output;
}

// A log of `events` preference changes spread over 40 users, appended in bulk.
void bulk_log(const std::string& url, int events) {
  storage::PoolOptions o;
  o.conninfo = url;
  storage::ConnectionPool pool(o);
  (void)storage::MigrationRunner(pool).migrate();
  storage::EventLog log(pool);
  std::vector<storage::BulkEvent> batch;
  const std::vector<std::string> zones = {"Europe/London", "Asia/Tokyo", "UTC", "America/Lima"};
  for (int i = 0; i < events; ++i) {
    const std::string user = "user-" + std::to_string((i * 7) % 40);
    if (i % 9 == 0) {
      batch.push_back({user, {{}, PreferenceReset{"calendar.timezone"}}, {}});
    } else {
      batch.push_back({user, {{}, PreferenceSet{"calendar.timezone", zones[(i * 13) % 4]}}, {}});
    }
  }
  (void)log.append_bulk(batch);
}

std::string query(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
}

// Counts of the asynchronous read model and of the inline state, as comparable text.
std::pair<std::string, std::string> value_counts(const std::string& url) {
  return {query(url,
                "SELECT coalesce(string_agg(value::text || ':' || users, ',' ORDER BY "
                "value::text), '') FROM prefstore.preference_value_counts"),
          query(url,
                "SELECT coalesce(string_agg(v || ':' || n, ',' ORDER BY v), '') FROM "
                "(SELECT value::text AS v, count(*) AS n FROM prefstore.preferences_current "
                "GROUP BY value::text) c")};
}

// Kill -9 of the projector at random moments, between writing and checkpointing included.
// Oracle: the value counts (which are not idempotent: a batch applied twice would count users
// twice) equal the counts of the inline state, and every event was processed exactly once.
TEST(CliProjections, KilledRunnerResumesWithoutApplyingAnythingTwice) {
  const std::string url = TestCluster::instance().fresh_database();
  bulk_log(url, 6000);
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", url}};
  // Small batches make many transactions, so the kills land in the middle of the work.
  int kills = 0;
  std::vector<long> processed;
  for (int round = 0; round < 6; ++round) {
    const auto r =
        run_cli("projections run --batch-size 3 > /dev/null & pid=$!; sleep 0." +
                    std::to_string(3 + round) + "; kill -9 $pid; wait $pid; echo killed=$?",
                env);
    kills += contains(r.output, "killed=137") ? 1 : 0;
    const std::string n = query(url,
                                "SELECT events_processed FROM prefstore.projection_checkpoints "
                                "WHERE projection_name = 'preference_value_counts'");
    processed.push_back(n.empty() ? 0 : std::stol(n));
  }
  const long before_catch_up = processed.back();
  // The kills interrupted work in progress: the projector had not finished after the first ones.
  EXPECT_LT(processed.front(), 6000);
  EXPECT_TRUE(std::is_sorted(processed.begin(), processed.end()));
  const auto r = run_cli("projections catch-up", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::cout << kills << " kills; processed before the final catch-up: " << before_catch_up
            << " of 6000\n";
  EXPECT_GE(kills, 3);
  EXPECT_EQ(query(url,
                  "SELECT events_processed FROM prefstore.projection_checkpoints WHERE "
                  "projection_name = 'preference_value_counts'"),
            "6000");
  const auto [async_counts, inline_counts] = value_counts(url);
  EXPECT_FALSE(inline_counts.empty());
  EXPECT_EQ(async_counts, inline_counts);
}

TEST(CliProjections, StatusRunStopsCleanlyOnSigtermAndRebuildShowsProgress) {
  const std::string url = TestCluster::instance().fresh_database();
  bulk_log(url, 500);
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", url}};
  auto r = run_cli("projections status", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "preference_value_counts")) << r.output;
  EXPECT_TRUE(contains(r.output, "500")) << r.output;  // the lag in events

  r = run_cli("projections run 2>&1 & pid=$!; sleep 2; kill -TERM $pid; wait $pid; echo exit=$?",
              env);
  EXPECT_TRUE(contains(r.output, "exit=0")) << r.output;
  EXPECT_TRUE(contains(r.output, "stopping (signal 15)")) << r.output;
  r = run_cli("projections status", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "stopped")) << r.output;
  EXPECT_EQ(query(url, "SELECT events_processed FROM prefstore.projection_checkpoints"), "500");

  r = run_cli("projections rebuild preference_value_counts --batch-size 100", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "100% 500/500 events")) << r.output;
  EXPECT_TRUE(contains(r.output, "swapped")) << r.output;
  const auto [async_counts, inline_counts] = value_counts(url);
  EXPECT_EQ(async_counts, inline_counts);

  r = run_cli("projections rebuild no_such_projection", env);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "preference_value_counts")) << r.output;  // lists the known ones
  EXPECT_EQ(run_cli("projections", env).exit_code, 2);
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
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM prefstore.schema_migrations")[0].as<std::size_t>(),
              prefstore::storage::embedded_migrations().size());
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

namespace prefstore {
namespace {

// The time-travel commands end to end: get --as-of, diff, restore (dry run, keys, the audit
// trail), snapshot create/list/prune, and usage errors for bad moments.
TEST(Cli, TimeTravelCommands) {
  const std::string url = TestCluster::instance().fresh_database();
  const std::map<std::string, std::string> env = {{"PREFSTORE_DATABASE_URL", url},
                                                  {"PREFSTORE_ACTOR", "support@example.com"}};
  const auto ok = [&](const std::string& args) {
    const auto r = run_cli(args, env);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
    return r.output;
  };
  ok("define calendar.timezone --type string --default UTC");
  ok("define calendar.default_meeting_minutes --type int --default 30 --min 5 --max 480");
  ok("set ada calendar.timezone Europe/London --actor ada");
  ok("set ada calendar.default_meeting_minutes 45 --actor ada");
  ok("set ada calendar.timezone America/New_York --actor assistant --reason travel");

  // Moments by version: v2 is London + 45.
  EXPECT_EQ(ok("get ada calendar.timezone --as-of version:2 --json"), "\"Europe/London\"\n");
  EXPECT_EQ(ok("get ada --as-of version:1 --json"),
            "{\"calendar.default_meeting_minutes\":30,\"calendar.timezone\":\"Europe/London\"}\n");
  const std::string diff = ok("diff ada --from version:2 --to now");
  EXPECT_TRUE(contains(diff, "Europe/London")) << diff;
  EXPECT_TRUE(contains(diff, "America/New_York")) << diff;
  EXPECT_TRUE(contains(diff, "assistant")) << diff;
  EXPECT_TRUE(contains(diff, "travel")) << diff;
  EXPECT_TRUE(contains(diff, "1 key changed")) << diff;

  const std::string plan = ok("restore ada --to version:1 --dry-run");
  EXPECT_TRUE(contains(plan, "dry run: nothing written")) << plan;
  EXPECT_EQ(ok("get ada calendar.timezone --json"), "\"America/New_York\"\n");
  const std::string restored =
      ok("restore ada --to version:1 --keys calendar.timezone --reason 'ticket 4711'");
  EXPECT_TRUE(contains(restored, "PreferencesRestored at version 4")) << restored;
  EXPECT_EQ(ok("get ada --json"),
            "{\"calendar.default_meeting_minutes\":45,\"calendar.timezone\":\"Europe/London\"}\n");
  const std::string history = ok("history ada");
  EXPECT_TRUE(contains(history, "PreferencesRestored")) << history;
  EXPECT_TRUE(contains(history, "ticket 4711")) << history;
  EXPECT_TRUE(contains(history, "support@example.com")) << history;

  // The policy: every 2nd event of a user, written by the asynchronous projection.
  ok("projections catch-up --snapshot-every 2");
  const std::string policy = ok("snapshot list ada");
  EXPECT_TRUE(contains(policy, "2 snapshots")) << policy;  // versions 2 and 4
  EXPECT_TRUE(contains(ok("snapshot prune --keep 1"), "1 snapshots deleted"));
  EXPECT_TRUE(contains(ok("snapshot create ada"), "exists already"));
  ok("set ada calendar.default_meeting_minutes 50 --actor ada");
  EXPECT_TRUE(contains(ok("snapshot create ada"), "snapshot of ada at version 5 written"));
  const std::string list = ok("snapshot list");
  EXPECT_TRUE(contains(list, "ada")) << list;
  EXPECT_TRUE(contains(list, "yes")) << list;
  EXPECT_TRUE(contains(ok("snapshot prune --keep 2"), "0 snapshots deleted"));

  const auto bad_moment = run_cli("get ada --as-of yesterday-ish", env);
  EXPECT_EQ(bad_moment.exit_code, 2) << bad_moment.output;
  EXPECT_TRUE(contains(bad_moment.output, "yesterday-ish")) << bad_moment.output;
  EXPECT_EQ(run_cli("restore ada --to now", env).exit_code, 2);
  EXPECT_EQ(run_cli("restore --to version:1", env).exit_code, 2);  // no user, no --all
}

}  // namespace
}  // namespace prefstore
