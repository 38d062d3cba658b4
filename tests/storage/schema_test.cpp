// The initial schema (migrations/0001_initial_schema.sql): the data model of DESIGN.md, documented
// in the database itself, append-only, with its three roles.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "error_translation.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/migrations.hpp"
#include "test_cluster.hpp"

namespace prefstore::storage {
namespace {

using prefstore::testing::TestCluster;

class SchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_url = TestCluster::instance().fresh_database();
    PoolOptions o;
    o.conninfo = m_url;
    ConnectionPool pool(o);
    (void)MigrationRunner(pool).migrate();
    m_conn = std::make_unique<pqxx::connection>(m_url);
  }
  std::string one(const std::string& sql) {
    pqxx::nontransaction tx(*m_conn);
    const auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }
  // Runs sql in its own transaction as `role`; returns the SQLSTATE it failed with, "" if none.
  std::string sqlstate_as(const std::string& role, const std::string& sql) {
    pqxx::work tx(*m_conn);
    try {
      if (!role.empty()) tx.exec("SET LOCAL ROLE " + role);
      tx.exec(sql);
    } catch (...) {
      try {
        detail::rethrow_translated("schema test");
      } catch (const prefstore::Error& e) {
        return e.sqlstate();
      }
    }
    return "";
  }
  void insert_event(const std::string& stream) {
    pqxx::work tx(*m_conn);
    tx.exec_params(
        "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
        "last_recorded_at) "
        "VALUES ($1, 1, now(), now(), now())",
        stream);
    tx.exec_params(
        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
        "schema_version, payload, metadata, recorded_at) VALUES ($1, 1, gen_random_uuid(), "
        "'PreferenceSet', 1, '{\"key\":\"calendar.working_hours.start\",\"value\":\"09:00\"}', "
        "'{\"actor\":\"ada\"}', now())",
        stream);
    tx.commit();
  }
  std::string m_url;
  std::unique_ptr<pqxx::connection> m_conn;
};

TEST_F(SchemaTest, HasEveryTableOfTheDataModel) {
  for (const char* table : {"events", "streams", "preference_definitions", "preferences_current",
                            "projection_checkpoints", "snapshots", "schema_migrations"}) {
    EXPECT_EQ(one(std::string("SELECT (to_regclass('prefstore.") + table + "') IS NOT NULL)::text"),
              "true")
        << table;
  }
}

TEST_F(SchemaTest, EveryTableAndColumnHasAComment) {
  const std::string undocumented_tables =
      one("SELECT string_agg(c.relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = "
          "c.relnamespace "
          "WHERE n.nspname = 'prefstore' AND c.relkind IN ('r', 'v', 'p') "
          "AND obj_description(c.oid, 'pg_class') IS NULL");
  EXPECT_EQ(undocumented_tables, "");
  const std::string undocumented_columns =
      one("SELECT string_agg(c.relname || '.' || a.attname, ', ') FROM pg_attribute a "
          "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
          "WHERE n.nspname = 'prefstore' AND c.relkind IN ('r', 'v', 'p') AND a.attnum > 0 "
          "AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL");
  EXPECT_EQ(undocumented_columns, "");
}

// The four indexes of the design (0001) and the eight of the audit queries (0005); every one
// costs every append, so a new one must be added here on purpose.
TEST_F(SchemaTest, EventsHaveTheIndexesOfTheDesignAndOfTheAuditQueries) {
  const std::string indexes =
      one("SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\\n' ORDER BY "
          "pg_get_indexdef(i.indexrelid)) "
          "FROM pg_index i WHERE i.indrelid = 'prefstore.events'::regclass");
  EXPECT_EQ(one("SELECT count(*) FROM pg_index WHERE indrelid = 'prefstore.events'::regclass"),
            "12")
      << indexes;
  for (const char* audit :
       {"events_stream_id_global_position_idx", "events_key_global_position_idx",
        "events_multi_key_global_position_idx", "events_event_type_global_position_idx",
        "events_actor_global_position_idx", "events_source_global_position_idx",
        "events_correlation_id_global_position_idx", "events_recorded_at_brin_idx"}) {
    EXPECT_NE(indexes.find(audit), std::string::npos) << audit << "\n" << indexes;
  }
  EXPECT_NE(indexes.find("(stream_id, stream_version)"), std::string::npos) << indexes;
  EXPECT_NE(indexes.find("(stream_id, event_id)"), std::string::npos) << indexes;
  EXPECT_NE(indexes.find("(transaction_id, global_position)"), std::string::npos) << indexes;
  EXPECT_NE(indexes.find("(global_position)"), std::string::npos) << indexes;
}

// A session's temporary type named like a built-in one must not change what the hash chain
// trigger computes (pg_temp is searched first for type names unless the function fixes its
// search path: migration 0008).
TEST_F(SchemaTest, ATemporaryTypeCannotChangeTheChainHash) {
  pqxx::connection session(m_url);
  pqxx::nontransaction tx(session);
  tx.exec("CREATE DOMAIN pg_temp.text AS pg_catalog.varchar(1)");
  tx.exec("CREATE DOMAIN pg_temp.bytea AS pg_catalog.bytea CHECK (false)");
  tx.exec(
      "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
      "last_recorded_at) VALUES ('user-mallory', 1, now(), now(), now())");
  tx.exec(
      "INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, "
      "schema_version, payload, metadata, recorded_at) VALUES ('user-mallory', 1, "
      "gen_random_uuid(), 'PreferenceSet', 1, '{\"key\":\"calendar.timezone\"}', '{}', now())");
  EXPECT_EQ(one("SELECT (chain_hash = prefstore.chain_step(decode(repeat('00', 32), 'hex'), "
                "prefstore.event_canonical_bytes(global_position, stream_id, stream_version, "
                "event_id, event_type, schema_version, recorded_at, payload, metadata)))::text "
                "FROM prefstore.events WHERE stream_id = 'user-mallory'"),
            "true");
}

TEST_F(SchemaTest, EventsRecordTheirTransactionId) {
  insert_event("user-ada");
  EXPECT_EQ(one("SELECT (transaction_id > '0'::xid8)::text FROM prefstore.events"), "true");
}

TEST_F(SchemaTest, ConstraintsRejectBadRows) {
  insert_event("user-ada");
  // Same stream version twice: the primary key backstop.
  EXPECT_EQ(sqlstate_as("",
                        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, "
                        "event_type, schema_version, payload, recorded_at) VALUES ('user-ada', 1, "
                        "gen_random_uuid(), 'PreferenceSet', 1, '{}', now())"),
            "23505");
  // An event for a stream that does not exist.
  EXPECT_EQ(sqlstate_as("",
                        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, "
                        "event_type, schema_version, payload, recorded_at) VALUES ('nobody', 1, "
                        "gen_random_uuid(), 'PreferenceSet', 1, '{}', now())"),
            "23503");
  // A payload that is not a JSON object.
  EXPECT_EQ(sqlstate_as("",
                        "INSERT INTO prefstore.events (stream_id, stream_version, event_id, "
                        "event_type, schema_version, payload, recorded_at) VALUES ('user-ada', 2, "
                        "gen_random_uuid(), 'PreferenceSet', 1, '[1]', now())"),
            "23514");
  // A definition key outside the grammar.
  EXPECT_EQ(
      sqlstate_as("",
                  "INSERT INTO prefstore.preference_definitions (key, value_type, version, "
                  "defined_at, updated_at, last_position) VALUES ('Bad Key', 'bool', 1, now(), "
                  "now(), 1)"),
      "23514");
}

TEST_F(SchemaTest, LogIsAppendOnlyEvenForTheOwner) {
  insert_event("user-ada");
  // The test connects as a superuser: only the trigger stands in the way.
  EXPECT_EQ(sqlstate_as("", "UPDATE prefstore.events SET event_type = 'PreferenceReset'"), "42501");
  EXPECT_EQ(sqlstate_as("", "DELETE FROM prefstore.events"), "42501");
  EXPECT_EQ(sqlstate_as("", "TRUNCATE prefstore.events CASCADE"), "42501");
  EXPECT_EQ(one("SELECT count(*) FROM prefstore.events WHERE event_type = 'PreferenceSet'"), "1");
}

TEST_F(SchemaTest, CreatesTheThreeRoles) {
  EXPECT_EQ(one("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN "
                "('prefstore_owner', 'prefstore_writer', 'prefstore_reader')"),
            "prefstore_owner,prefstore_reader,prefstore_writer");
}

TEST_F(SchemaTest, WriterAppendsButCannotRewriteTheLog) {
  insert_event("user-ada");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "SELECT count(*) FROM prefstore.events"), "");
  EXPECT_EQ(
      sqlstate_as("prefstore_writer",
                  "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
                  "last_recorded_at) VALUES ('user-bob', 0, now(), now(), NULL)"),
      "");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "UPDATE prefstore.events SET event_type = 'X'"),
            "42501");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "DELETE FROM prefstore.events"), "42501");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "TRUNCATE prefstore.events"), "42501");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "DROP TABLE prefstore.snapshots"), "42501");
  EXPECT_EQ(sqlstate_as("prefstore_writer", "DELETE FROM prefstore.schema_migrations"), "42501");
}

TEST_F(SchemaTest, ReaderOnlyReads) {
  insert_event("user-ada");
  EXPECT_EQ(sqlstate_as("prefstore_reader", "SELECT count(*) FROM prefstore.events"), "");
  EXPECT_EQ(sqlstate_as("prefstore_reader", "SELECT count(*) FROM prefstore.preferences_current"),
            "");
  EXPECT_EQ(
      sqlstate_as("prefstore_reader",
                  "INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, "
                  "last_recorded_at) VALUES ('user-eve', 0, now(), now(), now())"),
      "42501");
  EXPECT_EQ(sqlstate_as("prefstore_reader", "DELETE FROM prefstore.preferences_current"), "42501");
  EXPECT_EQ(sqlstate_as("prefstore_reader", "UPDATE prefstore.events SET event_type = 'X'"),
            "42501");
}

TEST_F(SchemaTest, PublicHasNoAccess) {
  (void)one("CREATE ROLE calendar_intruder NOLOGIN");
  EXPECT_EQ(sqlstate_as("calendar_intruder", "SELECT count(*) FROM prefstore.events"), "42501");
  (void)one("DROP ROLE calendar_intruder");
}

TEST_F(SchemaTest, MigratingASecondDatabaseInTheSameClusterReusesTheRoles) {
  // Roles are cluster-wide; the second database's migration must not fail on them.
  const std::string other = TestCluster::instance().fresh_database();
  PoolOptions o;
  o.conninfo = other;
  ConnectionPool pool(o);
  EXPECT_EQ(MigrationRunner(pool).migrate().size(), embedded_migrations().size());
}

}  // namespace
}  // namespace prefstore::storage
