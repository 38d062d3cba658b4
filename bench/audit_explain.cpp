// The plans of the audit queries (Store::audit, `prefstore history`) on a log of EVENTS events,
// for docs/schema.md ("Audit queries"), and what the audit indexes of migration 0005 cost an
// append.
//   1. Builds a calendar-assistant log with SQL (20,000 users over one year: time zones, meeting
//      lengths, working hours, reminders, notification channels; actors, sources, correlation
//      ids, resets and restores), then VACUUM ANALYZE.
//   2. For each query shape, runs the statement query_audit runs once (to warm the cache), then
//      prints EXPLAIN (ANALYZE, BUFFERS) of it.
//   3. Times single-event appends (EventLog::append, one client, every metadata field set) in a
//      fresh database with the 0005 indexes, without them, and with them again.
// Usage: prefstore_audit_explain [EVENTS]   (default 1000000)
//        prefstore_audit_explain --append-cost   (step 3 alone)
//   With PREFSTORE_AUDIT_EXPLAIN_URL set, step 1 and 3 are skipped and the plans are taken on
//   that database (a log built by an earlier run).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "prefstore/storage/audit_query.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/migrations.hpp"

namespace {

using namespace prefstore;
using bench::Clock;
using bench::pool_options;

// $1: events, $2: users. Event i belongs to user (i * 7919) % users; recorded_at grows with i
// over one year from 2025-12-01 with up to a second of jitter (as concurrent appends give).
constexpr const char* kGenerate = R"sql(
INSERT INTO g
SELECT i,
       'user-' || ((i * 7919) % $2::bigint),
       CASE WHEN i % 200 = 7 THEN 'PreferencesRestored'
            WHEN i % 10 = 3 THEN 'PreferenceReset'
            ELSE 'PreferenceSet' END,
       (ARRAY['calendar.time_zone', 'calendar.default_meeting_minutes',
              'calendar.working_hours.start', 'reminders.default_minutes',
              'notifications.channels'])[CASE WHEN (i * 31) % 100 < 35 THEN 1
                                             WHEN (i * 31) % 100 < 60 THEN 2
                                             WHEN (i * 31) % 100 < 80 THEN 3
                                             WHEN (i * 31) % 100 < 95 THEN 4 ELSE 5 END],
       CASE WHEN i % 10 < 7 THEN 'user:user-' || ((i * 7919) % $2::bigint)
            WHEN i % 20 < 19 THEN 'calendar-sync@system' ELSE 'support:grace' END,
       CASE WHEN i % 1000 = 500 THEN 'prefstore-cli'
            WHEN i % 10 < 5 THEN 'settings-web'
            WHEN i % 10 < 8 THEN 'calendar-sync' ELSE 'mobile-app' END,
       CASE WHEN i % 20 < 2 THEN 'req-' || (i / 20) ELSE '' END,
       timestamptz '2025-12-01 00:00:00+00'
         + make_interval(secs => i * (31536000.0 / $1::bigint) + ((i * 37) % 1000) / 1000.0)
FROM generate_series(1::bigint, $1::bigint) AS i
)sql";

constexpr const char* kStreams = R"sql(
INSERT INTO prefstore.streams (stream_id, version, created_at, updated_at, last_recorded_at)
SELECT stream_id, count(*), min(recorded_at), max(recorded_at), max(recorded_at)
FROM g GROUP BY stream_id
)sql";

constexpr const char* kEvents = R"sql(
INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type, schema_version,
                              payload, metadata, recorded_at)
SELECT stream_id, row_number() OVER (PARTITION BY stream_id ORDER BY i), gen_random_uuid(),
       event_type, 1,
       CASE event_type
         WHEN 'PreferenceReset' THEN jsonb_build_object('key', key)
         WHEN 'PreferencesRestored' THEN jsonb_build_object(
             'as_of', '2025-12-01T00:00:00.000000Z',
             'changes', jsonb_build_array(
                 jsonb_build_object('key', key, 'type', 'string', 'value', 'restored'),
                 jsonb_build_object('key', 'notifications.channels', 'reset', true)))
         ELSE jsonb_build_object('key', key, 'type',
             CASE WHEN key LIKE '%minutes' THEN 'int'
                  WHEN key = 'notifications.channels' THEN 'string_list' ELSE 'string' END,
             'value', CASE WHEN key LIKE '%minutes' THEN to_jsonb(15 * (1 + i % 4))
                           WHEN key = 'notifications.channels'
                             THEN jsonb_build_array(CASE WHEN i % 3 = 0 THEN 'push' ELSE 'email' END)
                           WHEN key = 'calendar.time_zone'
                             THEN to_jsonb((ARRAY['Europe/London', 'Asia/Tokyo', 'UTC',
                                                  'America/Lima'])[1 + i % 4])
                           ELSE to_jsonb('0' || (7 + i % 3) || ':00') END)
       END,
       jsonb_build_object('actor', actor, 'source', source, 'reason', 'settings page',
                          'correlation_id', correlation_id, 'causation_id', ''),
       recorded_at
FROM g ORDER BY i
)sql";

void build_log(const std::string& url, std::int64_t events) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  tx.exec(
      "CREATE TEMP TABLE g (i bigint, stream_id text, event_type text, key text, actor text, "
      "source text, correlation_id text, recorded_at timestamptz)");
  tx.exec_params(kGenerate, events, std::int64_t{20000});
  tx.exec(kStreams);
  tx.exec(kEvents);
  tx.exec("VACUUM ANALYZE prefstore.events");
}

// The size of the log and of each of its indexes, as a Markdown table.
void print_sizes(const std::string& url) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  std::printf("| relation | size |\n| --- | --- |\n");
  for (const auto& row : tx.exec(
           "SELECT 'prefstore.events (heap)', pg_size_pretty(pg_relation_size('prefstore.events')) "
           "UNION ALL (SELECT c.relname::text, pg_size_pretty(pg_relation_size(c.oid)) "
           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
           "WHERE i.indrelid = 'prefstore.events'::regclass ORDER BY c.oid)")) {
    std::printf("| %s | %s |\n", row[0].c_str(), row[1].c_str());
  }
  std::printf("\n");
}

struct Shape {
  std::string name;
  storage::AuditQuery query;
  bool second_page = false;  // explain the page after the first one (with its cursor)
};

Timestamp at(const char* iso) {
  return *parse_timestamp(iso);
}

std::vector<Shape> shapes() {
  using storage::AuditOrder;
  using storage::AuditQuery;
  std::vector<Shape> s;
  const auto add = [&s](std::string name, AuditQuery q, bool second = false) {
    s.push_back({std::move(name), std::move(q), second});
  };
  add("no filter, newest first", {});
  AuditQuery q;
  q.user = "user-4242";
  add("user", q);
  q = {};
  q.key = "notifications.channels";
  add("key (with restores)", q);
  q = {};
  q.key = "notifications.channels";
  add("key, second page", q, true);
  q = {};
  q.key_prefix = "reminders.";
  add("key prefix", q);
  q = {};
  q.actor = "support:grace";
  add("actor", q);
  q = {};
  q.source = "prefstore-cli";
  add("source (a rare one)", q);
  q = {};
  q.event_type = "PreferenceReset";
  add("event type (rare)", q);
  q = {};
  q.event_type = "PreferenceSet";
  add("event type PreferenceSet", q);
  q = {};
  q.correlation_id = "req-25000";
  add("correlation id", q);
  q = {};
  q.from_time = at("2026-11-30T00:00:00Z");
  add("time: the last day", q);
  q = {};
  q.from_time = at("2026-03-01T00:00:00Z");
  q.to_time = at("2026-03-02T00:00:00Z");
  add("time: one day in March", q);
  q = {};
  q.from_position = 400000;
  q.to_position = 400500;
  add("position range", q);
  q = {};
  q.user = "user-4242";
  q.key_prefix = "calendar.";
  add("user and key prefix", q);
  q = {};
  q.source = "settings-web";
  q.event_type = "PreferenceReset";
  q.from_time = at("2026-06-01T00:00:00Z");
  add("source, event type and time (matches in the window)", q);
  q = {};
  q.source = "calendar-sync";
  q.from_time = at("2026-03-01T00:00:00Z");
  q.to_time = at("2026-03-02T00:00:00Z");
  add("source and one day in March (beyond the window)", q);
  q = {};
  q.actor = "calendar-sync@system";
  q.key = "calendar.working_hours.start";
  add("actor and key", q);
  q = {};
  q.source = "mobile-app";
  q.event_type = "PreferenceReset";
  add("source and event type that never meet", q);
  q = {};
  q.order = AuditOrder::oldest_first;
  add("oldest first, no filter", q);
  q = {};
  q.order = AuditOrder::oldest_first;
  q.actor = "support:grace";
  add("oldest first, actor, second page", q, true);
  return s;
}

// Trims EXPLAIN output to what the docs need: drops "Planning:" buffer lines.
void explain_all(const std::string& url) {
  storage::ConnectionPool pool(pool_options(url));
  for (auto& shape : shapes()) {
    storage::AuditQuery q = shape.query;
    if (shape.second_page) {
      const auto first = storage::query_audit(pool, q);
      q.cursor = first.next_cursor;
    }
    (void)storage::query_audit(pool, q);  // warm the cache
    std::cout << "### " << shape.name << "\n\n```\n"
              << storage::explain_audit(pool, q, storage::ExplainMode::analyze_buffers)
              << "```\n\n";
  }
}

struct AppendRate {
  double per_second = 0;
  double wal_bytes = 0;  // WAL written per append: the work, whatever else the machine does
};

AppendRate append_rate(storage::EventLog& log, pqxx::connection& conn, int n, int run) {
  const Metadata who{"user:alice", "settings-web", "settings page", "req-1", ""};
  const auto lsn = [&conn] {
    pqxx::nontransaction tx(conn);
    return tx.exec("SELECT pg_current_wal_lsn()::text")[0][0].as<std::string>();
  };
  const std::string before = lsn();
  const auto started = Clock::now();
  for (int i = 0; i < n; ++i) {
    const std::string user = "user-" + std::to_string((i * 7 + run) % 200);
    (void)log.append(user,
                     {{{}, PreferenceSet{"calendar.time_zone", std::string("Europe/London")}}},
                     storage::ExpectedVersion::any(), who);
  }
  AppendRate rate;
  rate.per_second = n / std::chrono::duration<double>(Clock::now() - started).count();
  const std::string after = lsn();
  pqxx::nontransaction tx(conn);
  rate.wal_bytes =
      tx.exec_params("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)", after, before)[0][0]
          .as<double>() /
      n;
  return rate;
}

void append_cost(storage::LocalServer& server) {
  {
    pqxx::connection admin(server.url("postgres"));
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE DATABASE append_cost");
  }
  const std::string url = server.url("append_cost");
  storage::ConnectionPool pool(pool_options(url));
  (void)storage::MigrationRunner(pool).migrate();
  storage::EventLog log(pool);
  pqxx::connection conn(url);
  const auto indexes = [&conn](bool create) {
    pqxx::nontransaction tx(conn);
    const char* names[] = {
        "events_stream_id_global_position_idx",      "events_key_global_position_idx",
        "events_multi_key_global_position_idx",      "events_event_type_global_position_idx",
        "events_actor_global_position_idx",          "events_source_global_position_idx",
        "events_correlation_id_global_position_idx", "events_recorded_at_brin_idx"};
    if (!create) {
      for (const char* n : names) tx.exec(std::string("DROP INDEX prefstore.") + n);
      return;
    }
    tx.exec(
        "CREATE INDEX events_stream_id_global_position_idx ON prefstore.events (stream_id, "
        "global_position)");
    tx.exec(
        "CREATE INDEX events_key_global_position_idx ON prefstore.events (((payload ->> 'key') "
        "COLLATE \"C\"), global_position)");
    tx.exec(
        "CREATE INDEX events_multi_key_global_position_idx ON prefstore.events "
        "(global_position) WHERE NOT (payload ? 'key')");
    tx.exec(
        "CREATE INDEX events_event_type_global_position_idx ON prefstore.events (event_type, "
        "global_position) WHERE event_type <> 'PreferenceSet'");
    for (const char* field : {"actor", "source", "correlation_id"}) {
      tx.exec(std::string("CREATE INDEX events_") + field +
              "_global_position_idx ON prefstore.events ((metadata ->> '" + field +
              "'), global_position) WHERE (metadata ->> '" + field + "') <> ''");
    }
    tx.exec(
        "CREATE INDEX events_recorded_at_brin_idx ON prefstore.events USING brin (recorded_at)");
  };
  // Alternating runs, so that the machine's other load falls on both sides alike.
  constexpr int kAppends = 3000;
  constexpr int kRounds = 3;
  (void)append_rate(log, conn, 500, 0);  // warm up
  std::vector<AppendRate> with, without;
  for (int round = 0; round < kRounds; ++round) {
    with.push_back(append_rate(log, conn, kAppends, 2 * round + 1));
    indexes(false);
    without.push_back(append_rate(log, conn, kAppends, 2 * round + 2));
    indexes(true);
  }
  std::printf(
      "### append cost (EventLog::append, 1 client, %d appends per run, fsync off)\n\n"
      "| round | with the 0005 indexes | without them | ratio |\n| --- | --- | --- | --- |\n",
      kAppends);
  double with_sum = 0, without_sum = 0, with_wal = 0, without_wal = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::printf("| %d | %.0f appends/s, %.0f B of WAL each | %.0f appends/s, %.0f B | %.2f |\n",
                round + 1, with[round].per_second, with[round].wal_bytes, without[round].per_second,
                without[round].wal_bytes, with[round].per_second / without[round].per_second);
    with_sum += with[round].per_second;
    without_sum += without[round].per_second;
    with_wal += with[round].wal_bytes;
    without_wal += without[round].wal_bytes;
  }
  std::printf("| all | %.0f appends/s, %.0f B of WAL each | %.0f appends/s, %.0f B | %.2f |\n\n",
              with_sum / kRounds, with_wal / kRounds, without_sum / kRounds, without_wal / kRounds,
              with_sum / without_sum);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--append-cost") {
    return bench::with_throwaway_server(
        "audit_explain",
        [&](storage::LocalServer& server, const std::filesystem::path&) { append_cost(server); });
  }
  const std::int64_t events = argc > 1 ? std::stoll(argv[1]) : 1000000;
  if (const char* url = std::getenv("PREFSTORE_AUDIT_EXPLAIN_URL")) {
    try {
      explain_all(url);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "prefstore_audit_explain: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  return bench::with_throwaway_server(
      "audit_explain", [&](storage::LocalServer& server, const std::filesystem::path&) {
        const auto started = Clock::now();
        build_log(server.url(), events);
        std::printf("log of %lld events built in %.0f s\n\n", static_cast<long long>(events),
                    std::chrono::duration<double>(Clock::now() - started).count());
        print_sizes(server.url());
        explain_all(server.url());
        append_cost(server);
      });
}
