// Least privilege and the right to erasure (issue 6, points 2 and 6), against a real server.
//
// - Roles: as prefstore_reader, prefstore_writer and prefstore_owner, UPDATE, DELETE and TRUNCATE
//   of the log fail (privileges for the first two, the append-only trigger for the owner); the
//   owner removes events only through prefstore.erase_stream(); a Store and the CLI work as the
//   role their task needs and get PermissionError (exit 7) naming the role beyond it; a login
//   role that is not a member of the role asked for is refused, naming both; every object of
//   the schema is owned by prefstore_owner.
// - Erasure: a user's events, stream, snapshots and current preferences go, other users stay;
//   the StreamErased record in "$audit" holds who, when, why, how many events, the positions and
//   the chain head; a retry with the same event id returns the first record; bad input is
//   refused with nothing written; the asynchronous value counts forget the user (caught up
//   before or after the erasure, and when rebuilt); backups taken afterwards hold none of the
//   user's data; the user id can start again from version 1; a rapidcheck model run interleaves
//   erasures with writes.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/value_counts.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"

namespace prefstore {
namespace {

namespace fs = std::filesystem;
using prefstore::testing::admin;
using prefstore::testing::check_property;
using prefstore::testing::run_cli;
using prefstore::testing::ScratchDatabase;

// ------------------------------------------------------------------------------------------
// Helpers

// Runs sql in the database at url as the superuser, optionally after SET ROLE role; returns the
// SQLSTATE of the error, or "" when it succeeded.
std::string sqlstate_as(const std::string& url, const std::string& role, const std::string& sql) {
  pqxx::connection conn(url);
  try {
    pqxx::work tx(conn);
    if (!role.empty()) tx.exec("SET LOCAL ROLE " + role);
    tx.exec(sql);
    tx.commit();
    return "";
  } catch (const pqxx::insufficient_privilege&) {
    return "42501";  // libpqxx 6.4 leaves sqlstate() empty for this class
  } catch (const pqxx::sql_error& e) {
    return e.sqlstate().empty() ? std::string("?") : e.sqlstate();
  }
}

// The first column of the first row of sql, as text ("" for NULL or no row).
std::string scalar(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto rows = tx.exec(sql);
  if (rows.empty() || rows[0][0].is_null()) return "";
  return rows[0][0].c_str();
}

std::int64_t count(const std::string& url, const std::string& sql) {
  return std::stoll(scalar(url, sql));
}

// Creates a login role (once per cluster) that is a member of `member_of` (none when empty).
void ensure_login_role(const std::string& login, const std::string& member_of) {
  admin("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '" + login +
        "') THEN CREATE ROLE " + login + " LOGIN; END IF; END $$");
  if (!member_of.empty()) admin("GRANT " + member_of + " TO " + login);
}

StoreOptions options_for(const std::string& url, const std::string& role = {}) {
  StoreOptions o;
  o.database_url = url;
  o.strict = false;
  o.pool.max_size = 3;
  o.pool.role = role;
  return o;
}

Metadata by(std::string actor) {
  Metadata m;
  m.actor = std::move(actor);
  m.source = "settings-web";
  return m;
}

void catch_up(Store& store) {
  projections::ProjectionRunner runner(store.pool(), projections::default_projections());
  (void)runner.catch_up();
}

// key -> (value as JSON text, users) of the value counts read model.
std::map<std::string, std::string> value_counts(const std::string& url) {
  std::map<std::string, std::string> out;
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  for (const auto& row :
       tx.exec("SELECT key || ' ' || value::text, users FROM prefstore.preference_value_counts")) {
    out[row[0].c_str()] = row[1].c_str();
  }
  return out;
}

// A calendar-assistant user with a few preferences and a snapshot.
void seed_user(Store& store, const std::string& user, const std::string& zone) {
  (void)store.set(user, "calendar.time_zone", Value(zone), by("user:" + user));
  (void)store.set(user, "calendar.working_hours.start", Value(std::string("08:30")),
                  by("user:" + user));
  (void)store.set(user, "reminders.default_minutes", Value(std::int64_t{10}), by("user:" + user));
  (void)store.set(user, "notifications.channels", Value(StringList{"email", "push"}),
                  by("calendar-sync"));
  (void)store.snapshot(user);
}

// ------------------------------------------------------------------------------------------
// Roles

TEST(Roles, NoRoleCanUpdateDeleteOrTruncateTheLog) {
  ScratchDatabase db;
  {
    Store store(options_for(db.url()));
    seed_user(store, "alice", "Europe/Berlin");
  }
  for (const std::string role : {"prefstore_reader", "prefstore_writer", "prefstore_owner"}) {
    SCOPED_TRACE(role);
    EXPECT_EQ(sqlstate_as(db.url(), role, "UPDATE prefstore.events SET payload = '{}'"), "42501");
    EXPECT_EQ(sqlstate_as(db.url(), role, "DELETE FROM prefstore.events"), "42501");
    EXPECT_EQ(sqlstate_as(db.url(), role, "TRUNCATE prefstore.events"), "42501");
    EXPECT_EQ(sqlstate_as(db.url(), role,
                          "DELETE FROM prefstore.events WHERE stream_id = 'alice' AND "
                          "stream_version = 1"),
              "42501");
  }
  // Not even a superuser gets past the trigger.
  EXPECT_EQ(sqlstate_as(db.url(), "", "DELETE FROM prefstore.events"), "42501");
  EXPECT_EQ(sqlstate_as(db.url(), "", "TRUNCATE prefstore.events"), "42501");
  // Only the owner may run the erasure path; the reader may not append at all.
  EXPECT_EQ(sqlstate_as(db.url(), "prefstore_writer",
                        "SELECT prefstore.erase_stream('alice', 'r', 'a', gen_random_uuid())"),
            "42501");
  EXPECT_EQ(sqlstate_as(db.url(), "prefstore_reader",
                        "SELECT prefstore.erase_stream('alice', 'r', 'a', gen_random_uuid())"),
            "42501");
  EXPECT_EQ(sqlstate_as(db.url(), "prefstore_reader",
                        "INSERT INTO prefstore.streams (stream_id) VALUES ('mallory')"),
            "42501");
  // A forged erasure record does not help a role without DELETE on the log.
  EXPECT_EQ(sqlstate_as(db.url(), "prefstore_writer",
                        "INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) "
                        "VALUES ('$audit', 1, now()); "
                        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, "
                        "event_type, schema_version, payload, recorded_at) VALUES ('$audit', 1, "
                        "gen_random_uuid(), 'StreamErased', 1, '{\"stream_id\": \"alice\"}', "
                        "now()); "
                        "DELETE FROM prefstore.events WHERE stream_id = 'alice'"),
            "42501");
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"), 4);
  EXPECT_EQ(sqlstate_as(db.url(), "prefstore_owner",
                        "SELECT prefstore.erase_stream('alice', 'GDPR request 7', 'ops', "
                        "gen_random_uuid())"),
            "");
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"), 0);
}

TEST(Roles, TheOwnerRoleOwnsEveryObject) {
  ScratchDatabase db;
  EXPECT_EQ(scalar(db.url(),
                   "SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner), ', ') "
                   "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = 'prefstore' AND c.relkind IN ('r', 'v', 'S', 'p') "
                   "AND pg_get_userbyid(c.relowner) <> 'prefstore_owner'"),
            "");
  EXPECT_EQ(scalar(db.url(),
                   "SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p "
                   "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'prefstore' "
                   "AND pg_get_userbyid(p.proowner) <> 'prefstore_owner'"),
            "");
  EXPECT_EQ(scalar(db.url(),
                   "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = "
                   "'prefstore'"),
            "prefstore_owner");
}

TEST(Roles, AStoreWorksAsItsRoleAndIsRefusedBeyondIt) {
  ScratchDatabase db;
  {
    Store writer(options_for(db.url(), "prefstore_writer"));
    seed_user(writer, "alice", "Europe/Berlin");
    EXPECT_EQ(scalar(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"),
              "4");
    try {
      (void)writer.erase_user("alice", "GDPR request 8");
      ADD_FAILURE() << "a writer erased a user";
    } catch (const PermissionError& e) {
      EXPECT_NE(std::string(e.what()).find("prefstore_owner"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)writer.backup(prefstore::testing::make_temp_dir("dp") / "b.psb"),
                 PermissionError);
  }
  {
    Store reader(options_for(db.url(), "prefstore_reader"));
    EXPECT_EQ(reader.get("alice", "calendar.time_zone"), Value(std::string("Europe/Berlin")));
    EXPECT_EQ(reader.version("alice"), 4);
    EXPECT_THROW((void)reader.set("alice", "calendar.time_zone", Value(std::string("UTC"))),
                 PermissionError);
    EXPECT_THROW((void)reader.reset("alice", "calendar.time_zone"), PermissionError);
  }
  {
    Store owner(options_for(db.url(), "prefstore_owner"));
    const auto record = owner.erase_user("alice", "GDPR request 8", {"ops:dana", ""});
    EXPECT_EQ(record.events, 4);
  }
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"), 0);
}

TEST(Roles, ALoginRoleOutsideTheRoleIsRefusedNamingBoth) {
  ScratchDatabase db;
  ensure_login_role("dp_outsider", "");
  StoreOptions o =
      options_for(storage::conninfo_with(db.url(), {{"user", "dp_outsider"}}), "prefstore_writer");
  o.migrate_on_open = false;
  Store store(o);
  try {
    (void)store.set("alice", "calendar.time_zone", Value(std::string("UTC")));
    ADD_FAILURE() << "an outsider wrote";
  } catch (const PermissionError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("dp_outsider"), std::string::npos) << what;
    EXPECT_NE(what.find("prefstore_writer"), std::string::npos) << what;
  }
  StoreOptions missing = options_for(db.url(), "no_such_role_here");
  missing.migrate_on_open = false;
  Store nobody(missing);
  EXPECT_THROW((void)nobody.get("alice", "calendar.time_zone"), PermissionError);
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events"), 0);
}

TEST(Roles, TheCliWorksAsTheRoleOfEachCommand) {
  ScratchDatabase db;
  ensure_login_role("dp_reader_login", "prefstore_reader");
  ensure_login_role("dp_writer_login", "prefstore_writer");
  ensure_login_role("dp_owner_login", "prefstore_owner");
  const auto as = [&](const std::string& login) {
    return std::map<std::string, std::string>{
        {"PREFSTORE_DATABASE_URL", storage::conninfo_with(db.url(), {{"user", login}})}};
  };
  const auto writer =
      run_cli("--open set alice calendar.time_zone Europe/Berlin", as("dp_writer_login"));
  EXPECT_EQ(writer.exit_code, 0) << writer.output;
  const auto read = run_cli("get alice calendar.time_zone", as("dp_reader_login"));
  EXPECT_EQ(read.exit_code, 0) << read.output;
  EXPECT_NE(read.output.find("Europe/Berlin"), std::string::npos) << read.output;

  const auto reader_writes =
      run_cli("--open set alice calendar.time_zone UTC", as("dp_reader_login"));
  EXPECT_EQ(reader_writes.exit_code, 7) << reader_writes.output;
  EXPECT_NE(reader_writes.output.find("prefstore_writer"), std::string::npos)
      << reader_writes.output;

  const auto writer_erases =
      run_cli("erase alice --reason 'GDPR request 9'", as("dp_writer_login"));
  EXPECT_EQ(writer_erases.exit_code, 7) << writer_erases.output;
  EXPECT_NE(writer_erases.output.find("prefstore_owner"), std::string::npos)
      << writer_erases.output;
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"), 1);

  const auto owner_erases =
      run_cli("erase alice --reason 'GDPR request 9' --actor ops:dana", as("dp_owner_login"));
  EXPECT_EQ(owner_erases.exit_code, 0) << owner_erases.output;
  EXPECT_NE(owner_erases.output.find("erased alice: 1 events"), std::string::npos)
      << owner_erases.output;
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = 'alice'"), 0);

  // PREFSTORE_ROLE=none keeps the login role's own privileges (here: none on the schema).
  auto env = as("dp_outsider");
  ensure_login_role("dp_outsider", "");
  env["PREFSTORE_ROLE"] = "none";
  const auto outsider = run_cli("get alice calendar.time_zone", env);
  EXPECT_EQ(outsider.exit_code, 7) << outsider.output;
}

// ------------------------------------------------------------------------------------------
// Erasure

TEST(Erasure, RemovesTheUserAndRecordsWhoWhenWhyHowManyAndTheChainHead) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  seed_user(store, "alice", "Europe/Berlin");
  seed_user(store, "bob", "America/New_York");
  const std::string head =
      scalar(db.url(),
             "SELECT encode(chain_hash, 'hex') FROM prefstore.events WHERE stream_id = 'alice' "
             "AND stream_version = 4");
  const std::string positions = scalar(
      db.url(),
      "SELECT min(global_position) || '-' || max(global_position) FROM prefstore.events WHERE "
      "stream_id = 'alice'");
  const auto bob_before = store.get_all("bob");

  const auto record = store.erase_user("alice", "GDPR request 17", {"ops:carol", ""});
  EXPECT_FALSE(record.already_erased);
  EXPECT_EQ(record.events, 4);
  EXPECT_EQ(record.stream_version, 4);
  EXPECT_EQ(std::to_string(record.first_position) + "-" + std::to_string(record.last_position),
            positions);
  EXPECT_EQ(record.chain_head, head);

  for (const std::string table : {"events", "streams", "snapshots", "preferences_current"}) {
    EXPECT_EQ(
        count(db.url(), "SELECT count(*) FROM prefstore." + table + " WHERE stream_id = 'alice'"),
        0)
        << table;
  }
  EXPECT_EQ(store.version("alice"), 0);
  EXPECT_EQ(store.get("alice", "calendar.time_zone"), std::nullopt);
  EXPECT_EQ(store.get_all("bob").size(), bob_before.size());
  EXPECT_EQ(store.version("bob"), 4);

  // The record: one StreamErased event in "$audit" at the returned position.
  pqxx::connection conn(db.url());
  pqxx::nontransaction tx(conn);
  const auto row = tx.exec1(
      "SELECT event_type, payload->>'stream_id', (payload->>'events')::bigint, "
      "payload->>'chain_head', metadata->>'actor', metadata->>'reason', "
      "recorded_at > now() - interval '1 minute', event_id::text "
      "FROM prefstore.events WHERE stream_id = '$audit' AND global_position = " +
      std::to_string(record.audit_position));
  EXPECT_EQ(row[0].as<std::string>(), "StreamErased");
  EXPECT_EQ(row[1].as<std::string>(), "alice");
  EXPECT_EQ(row[2].as<std::int64_t>(), 4);
  EXPECT_EQ(row[3].as<std::string>(), head);
  EXPECT_EQ(row[4].as<std::string>(), "ops:carol");
  EXPECT_EQ(row[5].as<std::string>(), "GDPR request 17");
  EXPECT_TRUE(row[6].as<bool>());
  EXPECT_EQ(row[7].as<std::string>(), record.event_id);
  // The library decodes it like any event.
  const auto audit = store.history("$audit");
  ASSERT_EQ(audit.size(), 1U);
  const auto* erased = std::get_if<StreamErased>(&audit[0].data);
  ASSERT_NE(erased, nullptr);
  EXPECT_EQ(erased->stream_id, "alice");
  EXPECT_EQ(erased->chain_head, head);
  EXPECT_EQ(audit[0].metadata.reason, "GDPR request 17");
}

TEST(Erasure, ARetryReturnsTheFirstRecordAndBadInputWritesNothing) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  seed_user(store, "alice", "Europe/Berlin");
  const std::string id = "0b8f5c1e-3d2a-4c6b-9e7f-1a2b3c4d5e6f";
  const auto first = store.erase_user("alice", "GDPR request 21", {"ops", id});
  const auto again = store.erase_user("alice", "GDPR request 21", {"ops", id});
  EXPECT_TRUE(again.already_erased);
  EXPECT_EQ(again.audit_position, first.audit_position);
  EXPECT_EQ(again.events, first.events);
  EXPECT_EQ(again.chain_head, first.chain_head);
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events WHERE stream_id = '$audit'"), 1);

  seed_user(store, "bob", "Europe/Paris");
  const auto events_before = count(db.url(), "SELECT count(*) FROM prefstore.events");
  const auto refused = [&](const std::string& user, const std::string& reason,
                           const std::string& event_id, const std::string& needle) {
    try {
      (void)store.erase_user(user, reason, {"ops", event_id});
      ADD_FAILURE() << "erasing " << user << " was accepted";
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused("nobody", "GDPR request 22", "", "does not exist");
  refused("bob", "   ", "", "reason");
  refused("bob", "GDPR request 23", "not-a-uuid", "not a UUID");
  refused("$def:calendar.time_zone", "cleanup", "", "$");
  refused("", "cleanup", "", "user id");
  // The id of alice's record cannot be reused for bob.
  EXPECT_THROW((void)store.erase_user("bob", "GDPR request 24", {"ops", id}), ConflictError);
  EXPECT_EQ(count(db.url(), "SELECT count(*) FROM prefstore.events"), events_before);
  EXPECT_EQ(store.version("bob"), 4);
}

TEST(Erasure, AsynchronousReadModelsForgetTheUser) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  seed_user(store, "alice", "Europe/Berlin");
  seed_user(store, "bob", "Europe/Berlin");
  seed_user(store, "carol", "Asia/Tokyo");
  catch_up(store);  // counted alice before the erasure
  EXPECT_EQ(value_counts(db.url())["calendar.time_zone \"Europe/Berlin\""], "2");

  (void)store.set("dave", "calendar.time_zone", Value(std::string("Asia/Tokyo")), by("dave"));
  (void)store.erase_user("alice", "GDPR request 30", {"ops", ""});
  (void)store.erase_user("dave", "GDPR request 31", {"ops", ""});  // never counted
  catch_up(store);
  auto counts = value_counts(db.url());
  EXPECT_EQ(counts["calendar.time_zone \"Europe/Berlin\""], "1");
  EXPECT_EQ(counts["calendar.time_zone \"Asia/Tokyo\""], "1");
  EXPECT_EQ(counts["notifications.channels [\"email\", \"push\"]"], "2");
  EXPECT_EQ(count(db.url(),
                  "SELECT count(*) FROM prefstore.preference_value_holders WHERE stream_id IN "
                  "('alice', 'dave')"),
            0);

  // A rebuild from the log gives the same counts.
  projections::ValueCountsProjection projection;
  (void)projections::rebuild_projection(store.pool(), projection);
  EXPECT_EQ(value_counts(db.url()), counts);
}

TEST(Erasure, BackupsTakenAfterwardsHoldNoneOfTheUsersData) {
  ScratchDatabase source;
  ScratchDatabase target;
  const fs::path dir = prefstore::testing::make_temp_dir("prefstore-erasure-test");
  Store store(options_for(source.url()));
  seed_user(store, "bob", "Europe/Paris");
  const std::string marker = "alice-private-note-4711";
  (void)store.set("alice", "calendar.time_zone", Value(std::string("Pacific/Auckland")),
                  by("user:alice"));
  (void)store.set("alice", "calendar.meeting_note", Value(marker), by(marker + "-actor"));
  (void)store.snapshot("alice");
  (void)store.backup(dir / "before.psb");
  (void)store.erase_user("alice", "GDPR request 40", {"ops", ""});
  (void)store.backup(dir / "after.psb");

  const auto contains = [](const fs::path& file, const std::string& needle) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return bytes.find(needle) != std::string::npos;
  };
  EXPECT_TRUE(contains(dir / "before.psb", marker));  // the check can see the marker at all
  EXPECT_FALSE(contains(dir / "after.psb", marker));
  EXPECT_FALSE(contains(dir / "after.psb", "Pacific/Auckland"));

  Store restored(options_for(target.url()));
  (void)restored.restore_backup(dir / "after.psb");
  EXPECT_EQ(restored.version("alice"), 0);
  EXPECT_EQ(restored.version("bob"), 4);
  EXPECT_EQ(count(target.url(),
                  "SELECT count(*) FROM prefstore.events WHERE stream_id = '$audit' AND "
                  "event_type = 'StreamErased'"),
            1);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(Erasure, AnErasedUserIdStartsAgainFromVersionOne) {
  ScratchDatabase db;
  Store store(options_for(db.url()));
  seed_user(store, "alice", "Europe/Berlin");
  (void)store.erase_user("alice", "GDPR request 50", {"ops", ""});
  const auto result = store.set("alice", "calendar.time_zone", Value(std::string("UTC")));
  EXPECT_EQ(result.stream_version, 1);
  EXPECT_EQ(store.get("alice", "calendar.time_zone"), Value(std::string("UTC")));
  // Its chain starts from the genesis value again.
  EXPECT_EQ(scalar(db.url(),
                   "SELECT chain_hash = sha256('\\x" + std::string(64, '0') +
                       "'::bytea || prefstore.event_canonical_bytes(global_position, stream_id, "
                       "stream_version, event_id, event_type, schema_version, recorded_at, "
                       "payload, metadata)) FROM prefstore.events WHERE stream_id = 'alice'"),
            "t");
}

// Model: user -> key -> value. Writes and erasures interleaved at random; after each run the
// store's current state and the caught-up value counts equal the model's.
TEST(ErasureModel, InterleavedWritesAndErasuresMatchTheModel) {
  check_property(
      [] {
        ScratchDatabase db;
        Store store(options_for(db.url()));
        std::map<std::string, std::map<std::string, std::string>> model;
        const std::vector<std::string> users = {"alice", "bob", "carol"};
        const std::vector<std::string> zones = {"Europe/Berlin", "Asia/Tokyo", "UTC"};
        const auto steps = *rc::gen::inRange(1, 12);
        for (int i = 0; i < steps; ++i) {
          const auto user = *rc::gen::elementOf(users);
          const auto op = *rc::gen::inRange(0, 4);
          if (op == 0 && model.contains(user)) {
            (void)store.erase_user(user, "request " + std::to_string(i), {"ops", ""});
            model.erase(user);
          } else if (op == 1) {
            catch_up(store);
          } else {
            const auto zone = *rc::gen::elementOf(zones);
            (void)store.set(user, "calendar.time_zone", Value(zone));
            model[user]["calendar.time_zone"] = zone;
          }
        }
        catch_up(store);
        std::map<std::string, std::int64_t> expected_counts;
        for (const auto& user : users) {
          const auto it = model.find(user);
          const auto value = store.get(user, "calendar.time_zone");
          if (it == model.end()) {
            RC_ASSERT(!value.has_value());
            RC_ASSERT(store.version(user) == 0);
          } else {
            RC_ASSERT(value == Value(it->second.at("calendar.time_zone")));
            ++expected_counts["calendar.time_zone \"" + it->second.at("calendar.time_zone") + "\""];
          }
        }
        std::map<std::string, std::string> expected;
        for (const auto& [k, n] : expected_counts) expected[k] = std::to_string(n);
        RC_ASSERT(value_counts(db.url()) == expected);
      },
      10, 20);
}

}  // namespace
}  // namespace prefstore
