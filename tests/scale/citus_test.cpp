// Distributed mode on Citus (the scale-out issue, point 2), against a real coordinator and two
// workers on 127.0.0.1. Needs Citus installed into PostgreSQL 15 (scripts/install-citus.sh,
// which `make test-scale` runs). Run by `make test-scale`.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <stop_token>
#include <thread>

#include <unistd.h>

#include "calendar_definitions.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/projections/current_state.hpp"
#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "scale_servers.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

namespace fs = std::filesystem;
using scale_test::meeting_length;
using scale_test::timezone;

using testing::CitusNode;

// A coordinator and two workers, shared by the tests of this program.
class Citus {
 public:
  static Citus& instance() {
    static Citus citus;
    return citus;
  }
  testing::CitusCluster cluster{2};
  CitusNode& coordinator = cluster.coordinator;

  StoreOptions options() const {
    StoreOptions o;
    o.database_url = coordinator.url();
    o.distributed = true;
    return o;
  }
};

// Stops and joins writer threads when a test leaves, also when an assertion throws while they
// run (a joinable thread destroyed would end the program).
struct StopWriters {
  std::atomic<bool>& writing;
  std::vector<std::thread>& threads;
  ~StopWriters() {
    writing = false;
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }
};

// The port of the worker holding the user's shard.
int worker_port_of(const std::string& user, const std::string& database = "prefstore") {
  return std::stoi(Citus::instance().coordinator.value(
      "SELECT nodeport FROM pg_catalog.citus_shards WHERE table_name = "
      "'prefstore.streams'::regclass AND shardid = "
      "pg_catalog.get_shard_id_for_distribution_column('prefstore.streams', " +
          pqxx::connection(Citus::instance().coordinator.url()).quote(user) + ")",
      database));
}

// Options of a store in distributed mode on a database of its own (created on every node, the
// workers registered), so that a test that moves or holds things leaves the others alone.
StoreOptions own_distributed_database(const std::string& database) {
  StoreOptions o;
  o.database_url = Citus::instance().cluster.create_database(database);
  o.distributed = true;
  return o;
}

TEST(Citus, MigrateDistributedDistributesByUserAndEveryUserStatementHitsOneShard) {
  Store store(Citus::instance().options());
  (void)store.define(meeting_length());
  (void)store.define(timezone());
  const auto status = storage::distribution_status(store.pool());
  std::cout << "distributed: " << status.distributed_tables.size()
            << " tables, reference: " << status.reference_tables.size()
            << " tables, workers: " << status.workers << "\n";
  EXPECT_EQ(status.workers, 2);
  EXPECT_EQ(
      std::set<std::string>(status.distributed_tables.begin(), status.distributed_tables.end()),
      (std::set<std::string>{"prefstore.events", "prefstore.preference_value_holders",
                             "prefstore.preferences_current", "prefstore.snapshots",
                             "prefstore.streams"}));
  EXPECT_EQ(status.reference_tables.size(), 4u);

  (void)store.set("ada@example.com", "calendar.timezone", std::string("Europe/Berlin"));
  EXPECT_EQ(store.get("ada@example.com", "calendar.timezone"), Value(std::string("Europe/Berlin")));

  // The read of get_all: a router plan of one task.
  const std::string plan = [&] {
    pqxx::connection c(Citus::instance().coordinator.url());
    pqxx::nontransaction tx(c);
    std::string text;
    for (const auto& row :
         tx.exec("EXPLAIN SELECT key, value::text FROM prefstore.preferences_current WHERE "
                 "stream_id = 'ada@example.com'")) {
      text += row[0].as<std::string>() + "\n";
    }
    return text;
  }();
  std::cout << plan;
  EXPECT_NE(plan.find("Task Count: 1"), std::string::npos) << plan;
  EXPECT_NE(plan.find("Custom Scan (Citus Adaptive)"), std::string::npos) << plan;
}

// Every statement prefstore sends for one user must run on one shard. The session refuses any
// statement that Citus splits into several tasks (citus.multi_task_query_log_level = error),
// so a single multi-shard statement fails the operation that sent it.
TEST(Citus, EverySingleUserOperationRunsOnOneShard) {
  {
    Store setup(Citus::instance().options());
    (void)setup.define(meeting_length());
    (void)setup.define(timezone());
  }
  StoreOptions o = Citus::instance().options();
  o.database_url = *o.database_url + " options='-c citus.multi_task_query_log_level=error'";
  o.distributed = false;  // migrated already; distribute() itself spans every shard
  o.retry.max_attempts = 1;
  Store store(o);
  const std::string user = "grace@example.com";
  int operations = 0;
  const auto run = [&](const std::string& what, const std::function<void()>& call) {
    SCOPED_TRACE(what);
    EXPECT_NO_THROW(call());
    ++operations;
  };
  AppendOptions retry_of;
  run("set", [&] {
    const auto r = store.set(user, "calendar.timezone", std::string("Europe/Berlin"));
    (void)r;
  });
  run("set with an expected version", [&] {
    AppendOptions exact;
    exact.expected = storage::ExpectedVersion::exactly(1);
    (void)store.set(user, "calendar.default_meeting_minutes", std::int64_t{45}, {}, exact);
  });
  run("set_many", [&] {
    (void)store.set_many(user, {{"calendar.timezone", std::string("Europe/Paris")},
                                {"calendar.default_meeting_minutes", std::int64_t{25}}});
  });
  run("a retried write (same event id)", [&] {
    retry_of.event_ids = {"6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e"};
    (void)store.set(user, "calendar.default_meeting_minutes", std::int64_t{50}, {}, retry_of);
    const auto again =
        store.set(user, "calendar.default_meeting_minutes", std::int64_t{50}, {}, retry_of);
    EXPECT_TRUE(again.duplicate);
  });
  run("a version conflict", [&] {
    AppendOptions stale;
    stale.expected = storage::ExpectedVersion::exactly(1);
    EXPECT_THROW(
        (void)store.set(user, "calendar.default_meeting_minutes", std::int64_t{55}, {}, stale),
        VersionConflictError);
  });
  run("reset", [&] { (void)store.reset(user, "calendar.timezone"); });
  run("get", [&] { (void)store.get(user, "calendar.default_meeting_minutes"); });
  run("get_all", [&] { (void)store.get_all(user); });
  run("history", [&] { (void)store.history(user); });
  run("version", [&] { (void)store.version(user); });
  run("get_all as of version 2", [&] { (void)store.get_all(user, AsOf::at_version(2)); });
  run("diff", [&] { (void)store.diff(user, AsOf::at_version(1), AsOf::latest()); });
  run("snapshot", [&] { (void)store.snapshot(user); });
  run("get_all as of the snapshot's version", [&] { (void)store.get_all(user, AsOf::latest()); });
  run("audit of the user", [&] {
    AuditQuery q;
    q.user = user;
    (void)store.audit(q);
  });
  run("restore to version 2", [&] { (void)store.restore(user, AsOf::at_version(2)); });
  std::cout << operations << " single-user operations, each statement on one shard\n";
}

// Model-based: random sets, resets and reads of several users through the coordinator match a
// simple in-memory model.
RC_GTEST_PROP(Citus, TheDistributedStoreMatchesTheModel, ()) {
  static Store* store = [] {
    auto* s = new Store(Citus::instance().options());
    (void)s->define(meeting_length());
    (void)s->define(timezone());
    return s;
  }();
  static int run = 0;
  ++run;
  std::map<std::string, std::map<std::string, Value>> model;
  const auto steps = *rc::gen::inRange(1, 20);
  for (int i = 0; i < steps; ++i) {
    const std::string user = "user" + std::to_string(*rc::gen::inRange(0, 6)) + "-run" +
                             std::to_string(run) + "@example.com";
    switch (*rc::gen::inRange(0, 4)) {
      case 0: {
        const auto minutes = *rc::gen::inRange<std::int64_t>(5, 481);
        (void)store->set(user, "calendar.default_meeting_minutes", minutes);
        model[user]["calendar.default_meeting_minutes"] = minutes;
        break;
      }
      case 1: {
        const std::string tz =
            *rc::gen::element<std::string>("Europe/Berlin", "America/Chicago", "Asia/Tokyo", "UTC");
        (void)store->set(user, "calendar.timezone", tz);
        model[user]["calendar.timezone"] = tz;
        break;
      }
      case 2:
        (void)store->reset(user, "calendar.timezone");
        model[user].erase("calendar.timezone");
        break;
      default: {
        const auto all = store->get_all(user);
        for (const auto& [key, def] :
             {std::pair<std::string, Value>{"calendar.default_meeting_minutes", std::int64_t{30}},
              std::pair<std::string, Value>{"calendar.timezone", std::string("UTC")}}) {
          const auto it = model[user].find(key);
          RC_ASSERT(all.at(key).value == (it == model[user].end() ? def : it->second));
        }
      }
    }
  }
}

// The commit-safe catch-up per worker: writers on both workers append while a runner folds
// the log into the value counts, lane by lane; afterwards every event was applied exactly once
// (the lanes' counts add up to the log) and the cross-user counts equal the current state.
TEST(Citus, PerWorkerProjectorsSkipNothingUnderConcurrentWriters) {
  Store store(Citus::instance().options());
  (void)store.define(timezone());
  std::atomic<bool> writing{true};
  std::atomic<int> written{0};
  std::vector<std::thread> writers;
  const auto began = std::chrono::steady_clock::now();
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      const char* zones[] = {"Europe/Berlin", "America/Chicago", "Asia/Tokyo", "UTC"};
      for (int i = 0; i < 60; ++i) {
        const std::string user = "busy" + std::to_string((t * 7 + i) % 24) + "@example.com";
        (void)store.set(user, "calendar.timezone", std::string(zones[(t + i) % 4]));
        ++written;
      }
    });
  }
  projections::ProjectionRunner runner(store.pool(),
                                       {std::make_shared<projections::ValueCountsProjection>()},
                                       projections::RunnerOptions{.batch_size = 7});
  std::int64_t applied_while_writing = 0;
  std::thread projector([&] {
    while (writing) {
      try {
        applied_while_writing += runner.run_once();
      } catch (const TransientError&) {
      }
    }
  });
  for (auto& w : writers) w.join();
  const auto writing_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - began)
                              .count();
  writing = false;
  projector.join();
  const std::int64_t rest = runner.catch_up();

  const CitusNode& c = Citus::instance().coordinator;
  const auto events = std::stoll(c.value("SELECT count(*) FROM prefstore.events"));
  const auto processed = std::stoll(
      c.value("SELECT coalesce(sum(events_processed), 0) FROM prefstore.projection_checkpoints "
              "WHERE projection_name LIKE 'preference_value_counts__node%'"));
  const auto lanes =
      std::stoll(c.value("SELECT count(*) FROM prefstore.projection_checkpoints WHERE "
                         "projection_name LIKE 'preference_value_counts__node%'"));
  std::cout << written << " writes by 4 writers in " << writing_ms << " ms; " << lanes
            << " lanes applied " << applied_while_writing << " events while they wrote and " << rest
            << " after; the log holds " << events << ", the checkpoints count " << processed
            << "\n";
  EXPECT_EQ(lanes, 2);
  EXPECT_EQ(processed, events);
  const std::string mismatches = c.value(
      "SELECT count(*) FROM (SELECT key, value_type, value, count(*) AS users FROM "
      "prefstore.preferences_current GROUP BY 1, 2, 3) truth FULL JOIN "
      "prefstore.preference_value_counts vc USING (key, value_type, value) "
      "WHERE truth.users IS DISTINCT FROM vc.users");
  EXPECT_EQ(mismatches, "0");
  const auto counted = std::stoll(
      c.value("SELECT coalesce(sum(users), 0) FROM prefstore.preference_value_counts WHERE key = "
              "'calendar.timezone' AND value_type = 'string'"));
  EXPECT_GE(counted, 24);  // the 24 busy users, and the other tests' users of the database
}

// Moving a running single-server store (point 2, "on an existing single-server store"): a
// store migrated without Citus's tables, with history and projections behind, is distributed
// by `migrate --distributed` while writers go on through a Store opened before the move.
// Every event stays, every writer's last value is read back, the projections go on per worker
// from where they were without applying a moved event twice, and verify finds nothing wrong.
TEST(Citus, MovingARunningSingleServerStoreKeepsEveryEventAndItsProjectionsGoOn) {
  // A plain PostgreSQL database on the coordinator's server until the move begins.
  const std::string url = Citus::instance().cluster.create_database("moving", false);
  const CitusNode& c = Citus::instance().coordinator;
  StoreOptions single;
  single.database_url = url;
  Store store(single);  // migrated as a single server: no table of Citus's
  (void)store.define(timezone());
  (void)store.define(meeting_length());
  const char* zones[] = {"Europe/Berlin", "America/Chicago", "Asia/Tokyo", "UTC"};
  for (int u = 0; u < 30; ++u) {
    const std::string user = "before" + std::to_string(u) + "@example.com";
    (void)store.set(user, "calendar.timezone", std::string(zones[u % 4]));
    (void)store.set(user, "calendar.default_meeting_minutes", std::int64_t{15 + u});
  }
  {
    projections::ProjectionRunner runner(store.pool(), projections::default_projections());
    (void)runner.catch_up();
  }
  for (int u = 0; u < 5; ++u) {  // left for the move to catch up
    (void)store.set("before" + std::to_string(u) + "@example.com", "calendar.timezone",
                    std::string("Asia/Tokyo"));
  }
  const auto before = std::stoll(c.value("SELECT count(*) FROM prefstore.events", "moving"));

  // Writers through the Store opened before the move, each on users of its own.
  std::atomic<bool> writing{true};
  std::atomic<int> landed{0};
  std::atomic<int> failed{0};
  std::mutex model_mutex;
  std::map<std::string, std::string> model;  // user -> last time zone that landed
  std::vector<std::thread> writers;
  StopWriters stop_writers{writing, writers};
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; writing; ++i) {
        const std::string user =
            "during" + std::to_string(t) + "_" + std::to_string(i % 10) + "@example.com";
        const std::string zone = zones[(t + i) % 4];
        try {
          (void)store.set(user, "calendar.timezone", zone);
          ++landed;
          const std::lock_guard lock(model_mutex);
          model[user] = zone;
        } catch (const std::exception& e) {
          if (failed++ == 0) std::cout << "a write during the move failed: " << e.what() << "\n";
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int landed_before_move = landed;
  Citus::instance().cluster.register_workers("moving");  // CREATE EXTENSION citus, add nodes
  {
    StoreOptions d = single;
    d.distributed = true;
    Store mover(d);  // migrate --distributed
  }
  const int landed_at_move = landed;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  writing = false;
  for (auto& w : writers) w.join();

  const auto status = storage::distribution_status(store.pool());
  const auto events = std::stoll(c.value("SELECT count(*) FROM prefstore.events", "moving"));
  const auto moved = std::stoll(
      c.value("SELECT count(*) FROM prefstore.events WHERE transaction_id = '1'::xid8", "moving"));
  std::cout << "history: " << before << " events; the writers landed " << landed_before_move
            << " before the move, " << (landed_at_move - landed_before_move)
            << " while it ran (moved with the rest), " << (landed - landed_at_move) << " after it; "
            << failed << " failed; the log holds " << events << ", " << moved
            << " of them moved (transaction id 1)\n";
  EXPECT_EQ(status.distributed_tables.size(), 5u);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(landed - landed_at_move, 0);  // writes went on after the move
  EXPECT_EQ(events, before + landed);
  EXPECT_GE(moved, before);
  for (const auto& [user, zone] : model) {
    EXPECT_EQ(store.get(user, "calendar.timezone"), Value(zone)) << user;
  }
  EXPECT_EQ(store.get("before3@example.com", "calendar.timezone"),
            Value(std::string("Asia/Tokyo")));
  EXPECT_EQ(store.version("before29@example.com"), 2);

  // The projections: the lanes start after the moved events; counts equal the current state.
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  const std::int64_t applied = runner.catch_up();
  const auto lanes = std::stoll(
      c.value("SELECT count(*) FROM prefstore.projection_checkpoints WHERE projection_name LIKE "
              "'preference_value_counts\\_\\_node%'",
              "moving"));
  const auto single_checkpoints = std::stoll(
      c.value("SELECT count(*) FROM prefstore.projection_checkpoints WHERE projection_name NOT "
              "LIKE '%\\_\\_node%'",
              "moving"));
  std::cout << "after the move the lanes of 2 projections applied " << applied << " events\n";
  EXPECT_EQ(applied, 2 * (events - moved));  // every new event once per projection, no moved one
  EXPECT_EQ(lanes, 2);
  EXPECT_EQ(single_checkpoints, 0);
  const std::string mismatches = c.value(
      "SELECT count(*) FROM (SELECT key, value_type, value, count(*) AS users FROM "
      "prefstore.preferences_current GROUP BY 1, 2, 3) truth FULL JOIN "
      "prefstore.preference_value_counts vc USING (key, value_type, value) "
      "WHERE truth.users IS DISTINCT FROM vc.users",
      "moving");
  EXPECT_EQ(mismatches, "0");

  // Lag per lane: one more event shows on its worker's lanes only.
  (void)store.set("before7@example.com", "calendar.timezone", std::string("UTC"));
  std::int64_t lagging = 0;
  std::int64_t lag = 0;
  for (const auto& s : storage::checkpoint_status(store.pool())) {
    if (s.lag_events > 0) ++lagging;
    lag += s.lag_events;
  }
  EXPECT_EQ(lagging, 2);  // value counts and snapshots, on the user's worker
  EXPECT_EQ(lag, 2);
  (void)runner.catch_up();

  const auto report = store.verify();
  std::cout << "verify after the move: " << report.events_checked << " events, "
            << report.problems.size() << " problems, " << report.value_counts_streams_behind
            << " streams behind the value counts\n";
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.value_counts_streams_behind, 0);
  EXPECT_EQ(report.events_checked, events + 1);
}

// The move refuses a store whose projections are behind the log when nothing catches them up
// (storage::distribute without DistributeOptions::catch_up), names them, and changes nothing.
TEST(Citus, MovingAStoreWithProjectionsBehindIsRefusedAndChangesNothing) {
  const std::string url = Citus::instance().cluster.create_database("behind", false);
  StoreOptions single;
  single.database_url = url;
  Store store(single);
  (void)store.define(timezone());
  (void)store.set("ada@example.com", "calendar.timezone", std::string("Europe/Berlin"));
  {
    projections::ProjectionRunner runner(store.pool(), projections::default_projections());
    (void)runner.catch_up();
  }
  (void)store.set("ada@example.com", "calendar.timezone", std::string("Asia/Tokyo"));
  Citus::instance().cluster.register_workers("behind");
  storage::prepare_distribution(store.pool());
  try {
    storage::distribute(store.pool());
    ADD_FAILURE() << "the move was not refused";
  } catch (const UsageError& e) {
    std::cout << "refused: " << e.what() << "\n";
    EXPECT_NE(std::string(e.what()).find("preference_value_counts (1 events not applied)"),
              std::string::npos)
        << e.what();
  }
  const auto status = storage::distribution_status(store.pool());
  EXPECT_TRUE(status.distributed_tables.empty());
  EXPECT_FALSE(storage::is_distributed(store.pool()));
  EXPECT_EQ(store.get("ada@example.com", "calendar.timezone"), Value(std::string("Asia/Tokyo")));
  // With the catch-up it moves.
  storage::DistributeOptions with_catch_up;
  with_catch_up.catch_up = [&] {
    projections::ProjectionRunner runner(store.pool(), projections::default_projections());
    (void)runner.catch_up();
  };
  storage::distribute(store.pool(), with_catch_up);
  EXPECT_EQ(storage::distribution_status(store.pool()).distributed_tables.size(), 5u);
  EXPECT_EQ(store.get("ada@example.com", "calendar.timezone"), Value(std::string("Asia/Tokyo")));
}

// The operations beyond single-user calls in distributed mode: a bulk import lands across both
// workers all or nothing; a full backup of the distributed store restores into a single-server
// database, which then moves to Citus with the same state; what is not supported (incremental
// backups, a restore into a distributed database) is refused and changes nothing.
TEST(Citus, ImportBackupAndRestoreInDistributedMode) {
  Store store(Citus::instance().options());
  (void)store.define(timezone());
  (void)store.define(meeting_length());
  storage::EventLog log(store.pool());
  std::vector<storage::BulkEvent> import;
  for (int i = 0; i < 200; ++i) {
    const std::string user = "imported" + std::to_string(i % 40) + "@example.com";
    import.push_back({user,
                      storage::NewEvent{{},
                                        PreferenceSet {
                                          "calendar.default_meeting_minutes",
                                          Value(std::int64_t{10 + i % 100})
                                        }},
                      Metadata {}});
  }
  EXPECT_EQ(log.append_bulk(import, 64), 200);
  int on_first_worker = 0;
  const int first_port = Citus::instance().cluster.workers[0]->port();
  for (int u = 0; u < 40; ++u) {
    const std::string user = "imported" + std::to_string(u) + "@example.com";
    EXPECT_EQ(store.version(user), 5) << user;
    EXPECT_EQ(store.get(user, "calendar.default_meeting_minutes"),
              Value(std::int64_t{10 + (160 + u) % 100}))
        << user;
    if (worker_port_of(user) == first_port) ++on_first_worker;
  }
  std::cout << "imported 200 events of 40 users, " << on_first_worker
            << " of them on the first worker\n";
  EXPECT_GT(on_first_worker, 0);
  EXPECT_LT(on_first_worker, 40);

  // An import whose last event reuses an id stored in its stream lands nothing, on either worker
  // (the 39 events before it are spread over both).
  const auto events_before =
      std::stoll(Citus::instance().coordinator.value("SELECT count(*) FROM prefstore.events"));
  std::vector<storage::BulkEvent> clash;
  for (int i = 0; i < 40; ++i) {
    clash.push_back(
        {"imported" + std::to_string(i) + "@example.com",
         storage::NewEvent{
             {}, PreferenceSet{"calendar.default_meeting_minutes", Value(std::int64_t{99})}},
         Metadata{}});
  }
  const std::string stored_id = Citus::instance().coordinator.value(
      "SELECT event_id::text FROM prefstore.events WHERE stream_id = 'imported39@example.com' "
      "LIMIT 1");
  clash.back().event.event_id = stored_id;
  EXPECT_THROW((void)log.append_bulk(clash, 16), ConflictError);
  EXPECT_EQ(
      std::stoll(Citus::instance().coordinator.value("SELECT count(*) FROM prefstore.events")),
      events_before);
  EXPECT_EQ(store.version("imported5@example.com"), 5);

  // Single appends run on the workers, which draw positions from their own ranges (an import's
  // calls run in the coordinator's transaction and draw from its sequence).
  for (int u = 0; u < 40; ++u) {
    (void)store.set("imported" + std::to_string(u) + "@example.com", "calendar.timezone",
                    std::string("Europe/Berlin"));
  }
  const auto events_backed_up =
      std::stoll(Citus::instance().coordinator.value("SELECT count(*) FROM prefstore.events"));

  // A full backup; an incremental one and a restore here are refused.
  const fs::path dir =
      fs::temp_directory_path() / ("prefstore-citus-backup-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "full.bak";
  const auto backup = store.backup(file);
  std::cout << "backup of the distributed store: " << backup.trailer.event_count << " events, "
            << backup.trailer.snapshot_count << " snapshots\n";
  EXPECT_EQ(backup.trailer.event_count, events_backed_up);
  storage::BackupOptions incremental;
  incremental.since_position = backup.header.until_position;
  EXPECT_THROW((void)store.backup(dir / "incremental.bak", incremental), UsageError);
  EXPECT_THROW((void)store.restore_backup(file), UsageError);
  EXPECT_EQ(
      std::stoll(Citus::instance().coordinator.value("SELECT count(*) FROM prefstore.events")),
      events_backed_up);

  // Restore into a plain database on the coordinator's server, then move it.
  const std::string url = Citus::instance().cluster.create_database("restored", false);
  StoreOptions single;
  single.database_url = url;
  {
    Store restored(single);
    const auto summary = restored.restore_backup(file);
    EXPECT_EQ(summary.events, events_backed_up);
  }
  Citus::instance().cluster.register_workers("restored");
  StoreOptions moved_options = single;
  moved_options.distributed = true;
  Store moved(moved_options);
  EXPECT_TRUE(storage::is_distributed(moved.pool()));
  for (int u = 0; u < 40; ++u) {
    const std::string user = "imported" + std::to_string(u) + "@example.com";
    const auto here = moved.get_all(user);
    const auto there = store.get_all(user);
    ASSERT_EQ(here.size(), there.size()) << user;
    for (const auto& [key, resolved] : there) {
      ASSERT_TRUE(here.count(key)) << user << " " << key;
      EXPECT_EQ(here.at(key).value, resolved.value) << user << " " << key;
      EXPECT_EQ(here.at(key).is_default, resolved.is_default) << user << " " << key;
    }
    EXPECT_EQ(moved.version(user), 6) << user;
  }
  // New events on both workers take positions after the restored ones of their worker's range
  // (the restored log holds positions of the first cluster's workers).
  for (int u = 0; u < 40; ++u) {
    (void)moved.set("imported" + std::to_string(u) + "@example.com", "calendar.timezone",
                    std::string("Asia/Tokyo"));
  }
  EXPECT_EQ(
      Citus::instance().coordinator.value(
          "SELECT count(*) - count(DISTINCT global_position) FROM prefstore.events", "restored"),
      "0");
  const auto report = moved.verify();
  std::cout << "restored into a single server and moved: verify read " << report.events_checked
            << " events, " << report.problems.size() << " problems\n";
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.events_checked, events_backed_up + 40);

  fs::remove_all(dir);
}

// TESTING.md #3 per worker: one append held open on a worker while 1,000 later appends commit on
// both, with the projector running. Oracle: the held worker's lane never passes the open
// transaction and shows the stall as lag, the other worker's lane goes on, and once it commits
// every event of the log is applied exactly once (the lanes' counts equal the log's).
TEST(Citus, AnAppendHeldOpenOnOneWorkerStallsOnlyItsLaneAndNothingIsSkipped) {
  const std::string database = "held";
  const StoreOptions o = own_distributed_database(database);
  const std::string url = *o.database_url;
  const CitusNode& c = Citus::instance().coordinator;
  Store store(o);
  (void)store.define(timezone());
  (void)store.define(meeting_length());
  (void)store.set("early@example.com", "calendar.timezone", std::string("UTC"));
  const int held_port = Citus::instance().cluster.workers[0]->port();
  std::string slow;
  for (int i = 0; slow.empty(); ++i) {
    const std::string u = "slow" + std::to_string(i) + "@example.com";
    if (worker_port_of(u, database) == held_port) slow = u;
  }
  const auto group_of = [&](int port) {
    return c.value(
        "SELECT groupid FROM pg_catalog.pg_dist_node WHERE nodeport = " + std::to_string(port),
        database);
  };
  const std::string held_lane = "preference_value_counts__node" + group_of(held_port);
  const std::string other_lane =
      "preference_value_counts__node" + group_of(Citus::instance().cluster.workers[1]->port());

  // The held append: its rows are on the worker, in a transaction of that worker.
  pqxx::connection slow_connection(url);
  pqxx::work held(slow_connection);
  held.exec("INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) VALUES (" +
            held.quote(slow) + ", 1, now())");
  held.exec(
      "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
      "schema_version, payload, recorded_at) VALUES (" +
      held.quote(slow) +
      ", 1, gen_random_uuid(), 'PreferenceSet', 1, "
      "'{\"key\":\"calendar.timezone\",\"type\":\"string\",\"value\":\"UTC\"}', now())");
  const auto held_xid = std::stoull(
      held.exec1("SELECT transaction_id::text FROM prefstore.events WHERE stream_id = " +
                 held.quote(slow))[0]
          .as<std::string>());

  projections::RunnerOptions options;
  options.batch_size = 50;
  options.poll_interval = std::chrono::milliseconds(20);
  projections::ProjectionRunner runner(
      store.pool(), {std::make_shared<projections::ValueCountsProjection>()}, options);
  std::stop_source stop;
  std::thread projector([&] { runner.run(stop.get_token()); });
  std::atomic<bool> passed_open_transaction{false};
  std::atomic<bool> watching{true};
  std::thread watcher([&] {
    while (watching) {
      const auto at = c.value(
          "SELECT coalesce(max(last_transaction_id::text::bigint), 0) FROM "
          "prefstore.projection_checkpoints WHERE projection_name = " +
              pqxx::connection(url).quote(held_lane),
          database);
      if (std::stoull(at) >= held_xid) passed_open_transaction = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 250; ++i) {
        (void)store.set("later" + std::to_string((w * 250 + i) % 16) + "@example.com",
                        "calendar.default_meeting_minutes", std::int64_t{5 + i % 200});
      }
    });
  }
  for (auto& t : writers) t.join();
  // The committed events of each worker (the held one is not visible to other sessions).
  const auto events_on = [&](int port) {
    return std::stoll(c.value(
        "SELECT coalesce(sum(result::bigint), 0) FROM "
        "pg_catalog.run_command_on_placements('prefstore.events', 'SELECT count(*) FROM %s') "
        "WHERE nodeport = " +
            std::to_string(port),
        database));
  };
  const auto processed = [&](const std::string& lane) {
    return std::stoll(
        c.value("SELECT coalesce(max(events_processed), 0) FROM prefstore.projection_checkpoints "
                "WHERE projection_name = " +
                    pqxx::connection(url).quote(lane),
                database));
  };
  const auto other_port = Citus::instance().cluster.workers[1]->port();
  for (int i = 0; i < 400 && processed(other_lane) < events_on(other_port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto held_processed = processed(held_lane);
  const auto held_committed = events_on(held_port);
  const auto other_processed = processed(other_lane);
  const auto other_committed = events_on(other_port);
  std::int64_t held_lag = -1;
  std::int64_t other_lag = -1;
  for (const auto& s : storage::checkpoint_status(store.pool())) {
    if (s.checkpoint.projection == held_lane) held_lag = s.lag_events;
    if (s.checkpoint.projection == other_lane) other_lag = s.lag_events;
  }
  watching = false;
  watcher.join();
  held.commit();
  const auto total = [&] {
    return std::stoll(c.value("SELECT count(*) FROM prefstore.events", database));
  };
  for (int i = 0; i < 400 && processed(held_lane) + processed(other_lane) < total(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  stop.request_stop();
  projector.join();
  std::cout << "while held: the held worker's lane applied " << held_processed << " of "
            << held_committed << " committed events (lag " << held_lag << "), the other's "
            << other_processed << " of " << other_committed << " (lag " << other_lag
            << "); after the commit the lanes applied "
            << processed(held_lane) + processed(other_lane) << " of " << total() << "\n";
  EXPECT_FALSE(passed_open_transaction.load());
  EXPECT_LT(held_processed, held_committed);    // stalled behind the open transaction
  EXPECT_GT(held_lag, 0);                       // and status shows it
  EXPECT_EQ(other_processed, other_committed);  // the other worker's lane went on
  EXPECT_EQ(other_lag, 0);
  EXPECT_EQ(processed(held_lane) + processed(other_lane), total());  // each event once
  EXPECT_EQ(c.value("SELECT users FROM prefstore.preference_value_counts WHERE key = "
                    "'calendar.timezone' AND value = '\"UTC\"'",
                    database),
            "2");  // early and slow
}

// Rebuilds in distributed mode while two writers go on: the value counts (an asynchronous
// projection, one lane per worker) and the current state (inline). Oracle: afterwards the tables
// are still distributed as before, the counts equal a GROUP BY of the current state, verify
// (current state and holders against the log) finds nothing, and events written after the
// rebuild are projected by the lanes it handed over.
TEST(Citus, RebuildsRunPerWorkerWhileWritersGoOn) {
  const std::string database = "rebuilt";
  Store store(own_distributed_database(database));
  (void)store.define(timezone());
  const CitusNode& c = Citus::instance().coordinator;
  const char* zones[] = {"Europe/Berlin", "America/Chicago", "Asia/Tokyo", "UTC"};
  for (int u = 0; u < 40; ++u) {
    (void)store.set("user" + std::to_string(u) + "@example.com", "calendar.timezone",
                    std::string(zones[u % 4]));
  }
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();

  std::atomic<bool> writing{true};
  std::atomic<int> written{0};
  std::vector<std::thread> writers;
  StopWriters stop_writers{writing, writers};
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      // At most 300 writes each, paced: the rebuild's batches (100 events, a distributed
      // transaction each) keep up, and the run stays short.
      for (int i = 0; writing && i < 300; ++i) {
        (void)store.set("user" + std::to_string((t * 13 + i) % 40) + "@example.com",
                        "calendar.timezone", std::string(zones[(t + i) % 4]));
        ++written;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  projections::ValueCountsProjection counts;
  projections::RebuildOptions small;
  small.batch_size = 100;
  const auto counted = projections::rebuild_projection(store.pool(), counts, small);
  projections::CurrentStateProjection current;
  const auto folded = projections::rebuild_projection(store.pool(), current, small);
  const int written_during = written;
  writing = false;
  for (auto& w : writers) w.join();
  std::cout << "rebuilt the value counts from " << counted.applied
            << " events and the current state from " << folded.applied << " while "
            << written_during << " writes landed\n";
  EXPECT_TRUE(counted.swapped);
  EXPECT_TRUE(folded.swapped);
  EXPECT_GT(written_during, 0);

  const auto status = storage::distribution_status(store.pool());
  EXPECT_EQ(status.distributed_tables.size(), 5u);
  EXPECT_EQ(status.reference_tables.size(), 4u);
  EXPECT_EQ(c.value("SELECT count(*) FROM prefstore.projection_checkpoints WHERE "
                    "projection_name LIKE '%rebuild%'",
                    database),
            "0");
  (void)store.set("user0@example.com", "calendar.timezone", std::string("Asia/Tokyo"));
  (void)runner.catch_up();
  EXPECT_EQ(c.value("SELECT count(*) FROM (SELECT key, value_type, value, count(*) AS users FROM "
                    "prefstore.preferences_current GROUP BY 1, 2, 3) truth FULL JOIN "
                    "prefstore.preference_value_counts vc USING (key, value_type, value) "
                    "WHERE truth.users IS DISTINCT FROM vc.users",
                    database),
            "0");
  EXPECT_EQ(store.get("user0@example.com", "calendar.timezone"), Value(std::string("Asia/Tokyo")));
  const auto report = store.verify();
  std::cout << "verify after the rebuilds: " << report.events_checked << " events, "
            << report.problems.size() << " problems, " << report.value_counts_streams_behind
            << " streams behind the value counts\n";
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.value_counts_streams_behind, 0);
}

// Shard moves are not supported (docs/scaling.md, "Shard moves"): a moved shard's events keep
// the transaction ids of the worker that wrote them, which the new worker's lanes compare with
// ids of their own counter. verify names every stream of a moved shard (once each), and nothing
// before the move. The oracle: the streams whose shard is the moved one.
TEST(Citus, VerifyNamesTheStreamsOfAShardMovedToAnotherWorker) {
  const std::string database = "shardmove";
  Store store(own_distributed_database(database));
  (void)store.define(timezone());
  for (int u = 0; u < 40; ++u) {
    const std::string user = "mover" + std::to_string(u) + "@example.com";
    (void)store.set(user, "calendar.timezone", std::string(u % 2 ? "Asia/Tokyo" : "UTC"));
    (void)store.set(user, "calendar.timezone", std::string("Europe/Berlin"));
  }
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
  const auto before = store.verify();
  EXPECT_TRUE(before.problems.empty())
      << before.problems.size() << " problems before the move, the first: "
      << (before.problems.empty() ? "" : before.problems[0].message);

  const CitusNode& c = Citus::instance().coordinator;
  const auto& workers = Citus::instance().cluster.workers;
  const std::string shard = c.value(
      "SELECT pg_catalog.get_shard_id_for_distribution_column('prefstore.streams', "
      "'mover0@example.com')",
      database);
  const int from = worker_port_of("mover0@example.com", database);
  const int to = workers.at(0)->port() == from ? workers.at(1)->port() : workers.at(0)->port();
  c.exec("SELECT pg_catalog.citus_move_shard_placement(" + shard + ", '127.0.0.1', " +
             std::to_string(from) + ", '127.0.0.1', " + std::to_string(to) +
             ", shard_transfer_mode := 'block_writes')",
         database);
  ASSERT_EQ(worker_port_of("mover0@example.com", database), to);
  // The streams of the moved shard with events written on a worker (not through the
  // coordinator, whose positions are group 0's: a definition's, say).
  const auto in_shard = std::stoll(
      c.value("SELECT count(DISTINCT stream_id) FROM prefstore.events WHERE "
              "pg_catalog.get_shard_id_for_distribution_column('prefstore.streams', stream_id) = " +
                  shard + " AND global_position >= (1::bigint << 48)",
              database));

  const auto after = store.verify();
  std::set<std::string> named;
  for (const auto& p : after.problems) {
    EXPECT_EQ(p.kind, storage::VerifyProblemKind::moved_by_shard_move) << p.message;
    EXPECT_TRUE(named.insert(p.stream_id).second) << "named twice: " << p.stream_id;
    EXPECT_EQ(c.value("SELECT pg_catalog.get_shard_id_for_distribution_column("
                      "'prefstore.streams', " +
                          pqxx::connection(c.url()).quote(p.stream_id) + ")",
                      database),
              shard)
        << p.stream_id << " is not in the moved shard";
  }
  std::cout << "moved shard " << shard << " from port " << from << " to " << to << ": " << in_shard
            << " streams in it, verify named " << named.size()
            << (after.problems.empty() ? "" : "; the first: " + after.problems[0].message) << "\n";
  EXPECT_EQ(static_cast<std::int64_t>(named.size()), in_shard);
  EXPECT_TRUE(named.count("mover0@example.com"));
}

TEST(Citus, AStoppedWorkerFailsItsUsersWritesClearlyWhileOthersGoOnAndNothingIsLost) {
  StoreOptions o = Citus::instance().options();
  o.retry.max_attempts = 2;
  Store store(o);
  (void)store.define(meeting_length());
  // Two users on different workers.
  const int first_port = worker_port_of("w0@example.com");
  std::string other;
  for (int i = 1; other.empty(); ++i) {
    const std::string u = "w" + std::to_string(i) + "@example.com";
    if (worker_port_of(u) != first_port) other = u;
  }
  CitusNode& down = Citus::instance().cluster.workers[0]->port() == first_port
                        ? *Citus::instance().cluster.workers[0]
                        : *Citus::instance().cluster.workers[1];
  (void)store.set("w0@example.com", "calendar.default_meeting_minutes", std::int64_t{15});
  (void)store.set(other, "calendar.default_meeting_minutes", std::int64_t{15});

  down.stop();
  int failed = 0;
  int landed = 0;
  for (int i = 0; i < 5; ++i) {
    try {
      (void)store.set("w0@example.com", "calendar.default_meeting_minutes", std::int64_t{20 + i});
    } catch (const UnavailableError& e) {
      ++failed;
      if (i == 0) std::cout << "write for a user of the stopped worker: " << e.what() << "\n";
    }
    (void)store.set(other, "calendar.default_meeting_minutes", std::int64_t{20 + i});
    ++landed;
  }
  std::cout << "worker stopped: " << failed << " of 5 writes of its user failed, " << landed
            << " of 5 of the other worker's user landed\n";
  EXPECT_EQ(failed, 5);
  EXPECT_EQ(landed, 5);

  down.start();
  (void)store.set("w0@example.com", "calendar.default_meeting_minutes", std::int64_t{99});
  EXPECT_EQ(store.get("w0@example.com", "calendar.default_meeting_minutes"),
            Value(std::int64_t{99}));
  EXPECT_EQ(store.version("w0@example.com"), 2);
  EXPECT_EQ(store.version(other), 6);
  EXPECT_EQ(store.get(other, "calendar.default_meeting_minutes"), Value(std::int64_t{24}));
}

}  // namespace
}  // namespace prefstore
