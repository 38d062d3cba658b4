// End-to-end load scenarios, each beside its raw baseline measured in the same run on the same
// throwaway local server (the performance issue's targets are ratios to these baselines):
//   set:      Store::set (validation, append, inline preferences_current) from 1, 2, 4 and 8
//             client threads, against one raw INSERT per transaction (prepared, autocommit)
//             into bench.raw_events, a table of the events table's shape (LIKE prefstore.events
//             INCLUDING ALL: the same columns, defaults, checks and indexes; no trigger, no
//             foreign key, no streams row, no current-state row);
//   batch:    EventLog::append of 100 events to one user per call, against a multi-row INSERT of
//             100 rows and a COPY of 100 rows (each its own transaction);
//   import:   EventLog::append_bulk of 5,000 events of many users per statement, against a COPY
//             of 5,000 rows;
//   get_all:  Store::get_all of a user with 20 preferences from 1, 2, 4 and 8 threads, against
//             the raw prepared SELECT of the user's rows of preferences_current.
// Each pair runs `rounds` times, alternating baseline and prefstore; the best rate of each side
// counts (the machine is shared: the best round is the least disturbed).
// Usage: prefstore_load_bench [SECONDS_PER_POINT] [RESULTS_MD] [THREADS_TSV]
//   RESULTS_MD: the Markdown tables (also printed); THREADS_TSV: the throughput-against-threads
//   data for the plot. Prints one "ratio" line per target on stderr.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <thread>

#include "bench_support.hpp"
#include "prefstore/event.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/store.hpp"

namespace {

using namespace prefstore;
using bench::Clock;

// One libpq connection of a raw baseline; throws with the server's message on any failure.
class RawConnection {
 public:
  explicit RawConnection(const std::string& url) : m_conn(PQconnectdb(url.c_str())) {
    if (PQstatus(m_conn) != CONNECTION_OK) fail("connect");
  }
  ~RawConnection() { PQfinish(m_conn); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void exec(const std::string& sql) { check(PQexec(m_conn, sql.c_str()), sql); }

  void prepare(const std::string& name, const std::string& sql) {
    check(PQprepare(m_conn, name.c_str(), sql.c_str(), 0, nullptr), "prepare " + name);
  }

  // Runs a prepared statement; returns the number of rows, after reading every field.
  // The first column of the first row of a query.
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(m_conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
      PQclear(r);
      fail(sql);
    }
    std::string out = PQgetvalue(r, 0, 0);
    PQclear(r);
    return out;
  }

  int run(const std::string& name, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecPrepared(m_conn, name.c_str(), static_cast<int>(values.size()),
                                 values.data(), nullptr, nullptr, 0);
    const ExecStatusType status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      PQclear(r);
      fail(name);
    }
    const int rows = PQntuples(r);
    std::size_t bytes = 0;
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < PQnfields(r); ++j) bytes += std::strlen(PQgetvalue(r, i, j));
    }
    PQclear(r);
    if (rows > 0 && bytes == 0) throw std::runtime_error(name + " returned empty rows");
    return rows;
  }

  // COPY table (columns) FROM STDIN with `data` (text format), as its own transaction.
  void copy_in(const std::string& target, const std::string& data) {
    PGresult* r = PQexec(m_conn, ("COPY " + target + " FROM STDIN").c_str());
    if (PQresultStatus(r) != PGRES_COPY_IN) {
      PQclear(r);
      fail("COPY");
    }
    PQclear(r);
    if (PQputCopyData(m_conn, data.data(), static_cast<int>(data.size())) != 1 ||
        PQputCopyEnd(m_conn, nullptr) != 1) {
      fail("COPY data");
    }
    check(PQgetResult(m_conn), "COPY end");
    PQclear(PQgetResult(m_conn));
  }

 private:
  void check(PGresult* r, const std::string& what) {
    const ExecStatusType status = PQresultStatus(r);
    PQclear(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(what);
  }
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("raw baseline: " + what + ": " + PQerrorMessage(m_conn));
  }
  PGconn* m_conn;
};

// The calendar assistant's preferences: 20 definitions, so a user can hold 20 preferences.
std::vector<PreferenceDefinition> calendar_definitions() {
  auto def = [](std::string key, ValueType type, Value fallback) {
    PreferenceDefinition d;
    d.key = std::move(key);
    d.type = type;
    d.default_value = std::move(fallback);
    return d;
  };
  std::vector<PreferenceDefinition> defs = {
      def("calendar.timezone", ValueType::string, std::string("UTC")),
      def("calendar.default_meeting_minutes", ValueType::integer, std::int64_t{30}),
      def("notifications.channels", ValueType::string_list, StringList{"email"}),
      def("reminders.minutes_before", ValueType::integer, std::int64_t{10}),
      def("calendar.working_hours_start", ValueType::string, std::string("09:00")),
      def("calendar.working_hours_end", ValueType::string, std::string("17:00")),
      def("calendar.working_days", ValueType::string_list,
          StringList{"mon", "tue", "wed", "thu", "fri"}),
      def("calendar.week_start", ValueType::string, std::string("monday")),
      def("calendar.buffer_minutes", ValueType::integer, std::int64_t{5}),
      def("calendar.decline_outside_hours", ValueType::boolean, false),
      def("calendar.focus_block_minutes", ValueType::integer, std::int64_t{90}),
      def("calendar.lunch_start", ValueType::string, std::string("12:00")),
      def("calendar.video_provider", ValueType::string, std::string("meet")),
      def("calendar.language", ValueType::string, std::string("en")),
      def("notifications.quiet_hours_start", ValueType::string, std::string("22:00")),
      def("notifications.quiet_hours_end", ValueType::string, std::string("07:00")),
      def("notifications.daily_digest", ValueType::boolean, true),
      def("reminders.second_reminder_minutes", ValueType::integer, std::int64_t{2}),
      def("reminders.sound", ValueType::string, std::string("chime")),
      def("reminders.snooze_minutes", ValueType::integer, std::int64_t{5}),
  };
  defs[1].constraints.min = 5;
  defs[1].constraints.max = 480;
  defs[0].constraints.max_length = 64;
  defs[2].constraints.allowed_values =
      std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
  return defs;
}

// The i-th change a writer makes: the four preferences users change most.
std::pair<std::string, Value> calendar_change(std::int64_t i) {
  static const std::vector<std::string> zones = {"Europe/London", "Europe/Berlin", "Asia/Tokyo",
                                                 "America/New_York", "Australia/Sydney"};
  switch (i % 4) {
    case 0:
      return {"calendar.timezone", zones[static_cast<std::size_t>(i / 4) % zones.size()]};
    case 1:
      return {"calendar.default_meeting_minutes", std::int64_t{15 * (1 + i % 4)}};
    case 2:
      return {"notifications.channels", StringList{i % 3 ? "email" : "push"}};
    default:
      return {"reminders.minutes_before", std::int64_t{5 + i % 30}};
  }
}

std::string random_uuid(std::mt19937_64& random) {
  static const char* hex = "0123456789abcdef";
  std::string s(36, '-');
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    s[static_cast<std::size_t>(i)] = hex[random() % 16];
  }
  s[14] = '4';
  s[19] = hex[8 + random() % 4];
  return s;
}

// One event's column values as prefstore would store them (the raw baseline writes the same).
struct RawEvent {
  std::string stream_id;
  std::int64_t version;
  std::string event_id;
  EncodedEvent encoded;
  std::string chain_hash;  // 64 hex digits: the baseline stores a 32-byte value, not a hash
};

RawEvent raw_event(const std::string& user, std::int64_t version, std::int64_t i,
                   std::mt19937_64& random) {
  auto [key, value] = calendar_change(i);
  std::string hash = random_uuid(random) + random_uuid(random);
  hash.erase(std::remove(hash.begin(), hash.end(), '-'), hash.end());
  return {user, version, random_uuid(random), encode(PreferenceSet{key, std::move(value)}),
          hash.substr(0, 64)};
}

const std::string kEmptyMetadata = encode_metadata(Metadata{});

constexpr const char* kRawColumns =
    "bench.raw_events (stream_id, stream_version, event_id, event_type, schema_version, "
    "payload, metadata, recorded_at, chain_hash)";

std::vector<std::string> insert_params(const RawEvent& e) {
  return {e.stream_id,
          std::to_string(e.version),
          e.event_id,
          e.encoded.event_type,
          std::to_string(e.encoded.schema_version),
          e.encoded.payload_json,
          kEmptyMetadata,
          "\\x" + e.chain_hash};
}

std::string multi_row_insert_sql(int rows) {
  std::string sql = std::string("INSERT INTO ") + kRawColumns + " VALUES ";
  for (int r = 0; r < rows; ++r) {
    const int b = r * 8;
    sql += (r ? ", (" : "(") + std::string("$") + std::to_string(b + 1) + ", $" +
           std::to_string(b + 2) + "::bigint, $" + std::to_string(b + 3) + "::uuid, $" +
           std::to_string(b + 4) + ", $" + std::to_string(b + 5) + "::integer, $" +
           std::to_string(b + 6) + "::jsonb, $" + std::to_string(b + 7) + "::jsonb, now(), $" +
           std::to_string(b + 8) + "::bytea)";
  }
  return sql;
}

std::string copy_line(const RawEvent& e) {
  auto escaped = [](const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '\\' || c == '\t' || c == '\n') out += '\\';
      out += c == '\t' ? 't' : c == '\n' ? 'n' : c;
    }
    return out;
  };
  return e.stream_id + '\t' + std::to_string(e.version) + '\t' + e.event_id + '\t' +
         e.encoded.event_type + '\t' + std::to_string(e.encoded.schema_version) + '\t' +
         escaped(e.encoded.payload_json) + '\t' + escaped(kEmptyMetadata) + "\tnow\t\\\\x" +
         e.chain_hash + '\n';
}

struct Point {
  double rate = 0;  // items (events or reads) per second
  double p50_us = 0;
  double p99_us = 0;
};

// Runs `threads` workers for `seconds`: each gets its callable from make(thread) (connections
// are opened there, before the clock starts) and calls it until time is up; every call counts
// `items_per_call` items.
Point drive(int threads, double seconds, int items_per_call,
            const std::function<std::function<void(std::int64_t)>(int)>& make) {
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(threads));
  std::atomic<bool> stop{false};
  std::barrier ready(threads + 1);
  std::vector<std::string> errors(static_cast<std::size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::function<void(std::int64_t)> call;
      try {
        call = make(t);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(t)] = e.what();
      }
      ready.arrive_and_wait();
      if (!call) return;
      auto& mine = latencies[static_cast<std::size_t>(t)];
      try {
        for (std::int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
          const auto started = Clock::now();
          call(i);
          mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started).count());
        }
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(t)] = e.what();
      }
    });
  }
  ready.arrive_and_wait();
  const auto started = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  for (const auto& e : errors) {
    if (!e.empty()) throw std::runtime_error("a load worker failed: " + e);
  }
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  if (all.empty()) throw std::runtime_error("no call completed");
  std::sort(all.begin(), all.end());
  return {static_cast<double>(all.size()) * items_per_call / elapsed, all[all.size() / 2],
          all[std::min(all.size() - 1, all.size() * 99 / 100)]};
}

// The better of two points (higher rate), for best-of-rounds.
Point best(const Point& a, const Point& b) {
  return a.rate >= b.rate ? a : b;
}

struct Pair {
  std::string scenario;
  std::string baseline_name;
  Point baseline;
  Point prefstore;
  double target = 0;  // 0: no target
  int threads = 1;
  std::string unit;  // "events/s" or "reads/s"
};

// Runs baseline and prefstore `rounds` times, alternating, and keeps the best of each.
Pair measure_pair(Pair pair, int rounds, const std::function<Point()>& baseline,
                  const std::function<Point()>& prefstore) {
  for (int r = 0; r < rounds; ++r) {
    pair.baseline = best(pair.baseline, baseline());
    pair.prefstore = best(pair.prefstore, prefstore());
  }
  return pair;
}

std::string fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::stod(argv[1]) : 4.0;
  const std::string results = argc > 2 ? argv[2] : "";
  const std::string threads_tsv = argc > 3 ? argv[3] : "";
  const int rounds = 2;
  const std::vector<int> thread_counts = {1, 2, 4, 8};
  return bench::with_throwaway_server("load_bench", [&](storage::LocalServer& server,
                                                        const std::filesystem::path&) {
    const std::string url = server.url();
    {
      RawConnection setup(url);
      setup.exec(
          "CREATE SCHEMA bench; CREATE TABLE bench.raw_events (LIKE prefstore.events INCLUDING "
          "ALL)");
    }
    StoreOptions options;
    options.database_url = url;
    options.pool.max_size = 8;
    Store store(options);
    const auto definitions = calendar_definitions();
    for (const auto& d : definitions) (void)store.define(d);
    storage::EventLog log(store.pool());

    std::vector<Pair> pairs;
    std::map<int, std::map<std::string, double>> by_threads;
    std::atomic<std::int64_t> round_counter{0};
    // PREFSTORE_BENCH_ONLY=set|batch|import|get_all runs one group (for profiling).
    const char* only_env = std::getenv("PREFSTORE_BENCH_ONLY");
    const std::string only = only_env != nullptr ? only_env : "";
    auto wanted = [&only](const char* group) { return only.empty() || only == group; };

    // Single-event set, against one raw INSERT per transaction.
    for (const int threads : thread_counts) {
      if (!wanted("set")) break;
      auto raw = [&] {
        const std::int64_t round = round_counter++;
        return drive(threads, seconds, 1, [&, round](int t) -> std::function<void(std::int64_t)> {
          auto conn = std::make_shared<RawConnection>(url);
          conn->prepare("insert", std::string("INSERT INTO ") + kRawColumns +
                                      " VALUES ($1, $2::bigint, $3::uuid, $4, $5::integer, "
                                      "$6::jsonb, $7::jsonb, now(), $8::bytea)");
          auto random = std::make_shared<std::mt19937_64>(static_cast<std::uint64_t>(t + 1));
          auto versions = std::make_shared<std::vector<std::int64_t>>(500, 0);
          return [=](std::int64_t i) {
            const auto u = static_cast<std::size_t>(i % 500);
            const std::string user =
                "raw-" + std::to_string(round) + "-" + std::to_string(t) + "-" + std::to_string(u);
            conn->run("insert", insert_params(raw_event(user, ++(*versions)[u], i, *random)));
          };
        });
      };
      auto set = [&] {
        const std::int64_t round = round_counter++;
        return drive(threads, seconds, 1, [&, round](int t) -> std::function<void(std::int64_t)> {
          return [&, round, t](std::int64_t i) {
            auto [key, value] = calendar_change(i);
            (void)store.set("user-" + std::to_string(round) + "-" + std::to_string(t) + "-" +
                                std::to_string(i % 500),
                            key, std::move(value));
          };
        });
      };
      auto pair = measure_pair({"set, " + std::to_string(threads) + " thread(s)",
                                "raw INSERT per transaction",
                                {},
                                {},
                                0.85,
                                threads,
                                "events/s"},
                               rounds, raw, set);
      if (threads != 1 && threads != 8) pair.target = 0;
      by_threads[threads]["raw_insert"] = pair.baseline.rate;
      by_threads[threads]["set"] = pair.prefstore.rate;
      pairs.push_back(pair);
    }

    // Batched appends: 100 events to one user per call, against multi-row INSERT and COPY.
    if (wanted("batch")) {
      constexpr int kBatch = 100;
      auto raw_batch = [&](bool copy) {
        const std::int64_t round = round_counter++;
        return drive(1, seconds, kBatch,
                     [&, round, copy](int) -> std::function<void(std::int64_t)> {
                       auto conn = std::make_shared<RawConnection>(url);
                       conn->prepare("insert100", multi_row_insert_sql(kBatch));
                       auto random = std::make_shared<std::mt19937_64>(7);
                       return [=](std::int64_t i) {
                         const std::string user =
                             "rawbatch-" + std::to_string(round) + "-" + std::to_string(i);
                         std::vector<std::string> params;
                         std::string data;
                         for (int k = 0; k < kBatch; ++k) {
                           const auto e = raw_event(user, k + 1, k, *random);
                           if (copy) {
                             data += copy_line(e);
                           } else {
                             const auto p = insert_params(e);
                             params.insert(params.end(), p.begin(), p.end());
                           }
                         }
                         if (copy) {
                           conn->copy_in(kRawColumns, data);
                         } else {
                           conn->run("insert100", params);
                         }
                       };
                     });
      };
      auto append_batch = [&] {
        const std::int64_t round = round_counter++;
        return drive(1, seconds, kBatch, [&, round](int) -> std::function<void(std::int64_t)> {
          return [&, round](std::int64_t i) {
            std::vector<storage::NewEvent> events;
            for (int k = 0; k < kBatch; ++k) {
              auto [key, value] = calendar_change(k);
              events.push_back({{}, PreferenceSet{key, std::move(value)}});
            }
            (void)log.append("batch-" + std::to_string(round) + "-" + std::to_string(i), events,
                             ExpectedVersion::no_stream(), Metadata{});
          };
        });
      };
      pairs.push_back(measure_pair(
          {"append, 100 events per call", "COPY of 100 rows", {}, {}, 0.6, 1, "events/s"}, rounds,
          [&] { return raw_batch(true); }, append_batch));
      pairs.push_back(measure_pair(
          {"append, 100 events per call", "multi-row INSERT of 100 rows", {}, {}, 0, 1, "events/s"},
          rounds, [&] { return raw_batch(false); }, append_batch));
    }

    // Bulk import: 5,000 events of many users per statement, against COPY of 5,000 rows.
    if (wanted("import")) {
      constexpr int kChunk = 5000;
      // A call takes a quarter of a second or more: three times the time, for enough calls.
      const double import_seconds = 3 * seconds;
      auto raw_import = [&] {
        const std::int64_t round = round_counter++;
        return drive(
            1, import_seconds, kChunk, [&, round](int) -> std::function<void(std::int64_t)> {
              auto conn = std::make_shared<RawConnection>(url);
              auto random = std::make_shared<std::mt19937_64>(11);
              return [=](std::int64_t i) {
                std::string data;
                for (int k = 0; k < kChunk; ++k) {
                  data += copy_line(raw_event("rawimport-" + std::to_string(round) + "-" +
                                                  std::to_string(i) + "-" + std::to_string(k % 500),
                                              k / 500 + 1, k, *random));
                }
                conn->copy_in(kRawColumns, data);
              };
            });
      };
      auto bulk = [&] {
        const std::int64_t round = round_counter++;
        return drive(1, import_seconds, kChunk,
                     [&, round](int) -> std::function<void(std::int64_t)> {
                       return [&, round](std::int64_t i) {
                         std::vector<storage::BulkEvent> chunk;
                         chunk.reserve(kChunk);
                         for (int k = 0; k < kChunk; ++k) {
                           auto [key, value] = calendar_change(k);
                           chunk.push_back({"import-" + std::to_string(round) + "-" +
                                                std::to_string(i) + "-" + std::to_string(k % 500),
                                            {{}, PreferenceSet{key, std::move(value)}},
                                            {}});
                         }
                         (void)log.append_bulk(chunk, kChunk);
                       };
                     });
      };
      pairs.push_back(measure_pair({"bulk import, 5,000 events per statement",
                                    "COPY of 5,000 rows",
                                    {},
                                    {},
                                    0.6,
                                    1,
                                    "events/s"},
                                   rounds, raw_import, bulk));
    }

    // get_all of a user with 20 preferences, against the raw SELECT of the same rows.
    if (wanted("get_all")) {
      constexpr int kUsers = 200;
      for (int u = 0; u < kUsers; ++u) {
        std::vector<std::pair<std::string, Value>> values;
        for (const auto& d : definitions) values.emplace_back(d.key, *d.default_value);
        (void)store.set_many("reader-" + std::to_string(u), values);
      }
      for (const int threads : thread_counts) {
        auto raw = [&] {
          return drive(threads, seconds, 1, [&](int t) -> std::function<void(std::int64_t)> {
            auto conn = std::make_shared<RawConnection>(url);
            conn->prepare("select",
                          "SELECT key, value_type, value, version, updated_at, updated_by, "
                          "last_position FROM prefstore.preferences_current WHERE stream_id = $1");
            return [=](std::int64_t i) {
              const int rows =
                  conn->run("select", {"reader-" + std::to_string((i * 8 + t) % kUsers)});
              if (rows != 20) throw std::runtime_error("raw SELECT read " + std::to_string(rows));
            };
          });
        };
        auto get_all = [&] {
          return drive(threads, seconds, 1, [&](int t) -> std::function<void(std::int64_t)> {
            return [&, t](std::int64_t i) {
              const auto all = store.get_all("reader-" + std::to_string((i * 8 + t) % kUsers));
              if (all.size() != 20)
                throw std::runtime_error("get_all read " + std::to_string(all.size()));
            };
          });
        };
        auto pair =
            measure_pair({"get_all (20 preferences), " + std::to_string(threads) + " thread(s)",
                          "raw SELECT",
                          {},
                          {},
                          0.8,
                          threads,
                          "reads/s"},
                         rounds, raw, get_all);
        if (threads != 1 && threads != 8) pair.target = 0;
        by_threads[threads]["raw_select"] = pair.baseline.rate;
        by_threads[threads]["get_all"] = pair.prefstore.rate;
        pairs.push_back(pair);
      }
    }

    std::string settings;
    {
      RawConnection conn(url);
      settings = conn.value(
          "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name) "
          "FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'synchronous_commit', "
          "'full_page_writes', 'max_connections', 'max_wal_size', 'wal_level', 'work_mem')");
    }
    std::string table = "Settings of the server of this run: " + settings +
                        ".\n\n"
                        "| scenario | baseline | baseline rate | prefstore rate | ratio | target | "
                        "prefstore p50 / p99 (µs) | baseline p50 / p99 (µs) |\n"
                        "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (const auto& p : pairs) {
      const double ratio = p.prefstore.rate / p.baseline.rate;
      const std::string target =
          p.target == 0 ? "-"
                        : fmt("%.2f", p.target) + (ratio >= p.target ? " met" : " **missed**");
      table += "| " + p.scenario + " | " + p.baseline_name + " | " + fmt("%.0f", p.baseline.rate) +
               " " + p.unit + " | " + fmt("%.0f", p.prefstore.rate) + " " + p.unit + " | " +
               fmt("%.2f", ratio) + " | " + target + " | " + fmt("%.0f", p.prefstore.p50_us) +
               " / " + fmt("%.0f", p.prefstore.p99_us) + " | " + fmt("%.0f", p.baseline.p50_us) +
               " / " + fmt("%.0f", p.baseline.p99_us) + " |\n";
      if (p.target != 0) {
        std::fprintf(stderr, "ratio: %-45s %.2f of %s (target %.2f): %s\n", p.scenario.c_str(),
                     ratio, p.baseline_name.c_str(), p.target,
                     ratio >= p.target ? "met" : "MISSED");
      }
    }
    std::cout << table;
    if (!results.empty()) std::ofstream(results) << table;
    if (!threads_tsv.empty() && only.empty()) {
      std::ofstream tsv(threads_tsv);
      tsv << "# threads\traw_insert\tset\traw_select\tget_all\n";
      for (const auto& [threads, rates] : by_threads) {
        tsv << threads << '\t' << rates.at("raw_insert") << '\t' << rates.at("set") << '\t'
            << rates.at("raw_select") << '\t' << rates.at("get_all") << '\n';
      }
    }
  });
}
