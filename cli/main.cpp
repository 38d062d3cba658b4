// prefstore: the operator's command-line tool. See `prefstore --help`, README.md and
// docs/errors.md for the exit codes.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <csignal>
#include <stop_token>
#include <thread>

#include "backup.hpp"
#include "common.hpp"
#include "erasure.hpp"
#include "history.hpp"
#include "observe.hpp"
#include "output.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/projections/rebuild.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/snapshot_writer.hpp"
#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "retention.hpp"
#include "time_travel.hpp"
#include "verify.hpp"

namespace {

using prefstore::cli::json_string;
using prefstore::cli::Table;
using namespace prefstore::cli;  // NOLINT: the tool's shared flags and exit codes

std::string format_duration(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << ms << " ms";
  return out.str();
}

void print_result(const std::string& what, const prefstore::AppendResult& r) {
  std::cout << what << (r.duplicate ? " (already stored: this retry wrote nothing)" : "")
            << ": version " << r.stream_version << ", position " << r.global_position << ", at "
            << prefstore::format_timestamp(r.recorded_at) << "\n";
}

// --- commands -------------------------------------------------------------------------------

int run_migrate(bool status_only, bool distributed) {
  auto options = store_options(false, Task::migrate);
  options.migrate_on_open = false;
  options.distributed = distributed;
  prefstore::Store store(options);
  std::cout << "database: " << store.redacted_database_url()
            << (store.uses_local_server() ? " (prefstore's local server)" : "") << "\n";
  if (!status_only) {
    const auto applied = store.migrate();
    if (applied.empty()) std::cout << "schema is up to date; no migration applied\n";
    for (const auto& m : applied) {
      std::cout << "applied " << m.file_name << " in " << format_duration(*m.duration_ms) << "\n";
    }
    return kOk;
  }
  const auto rows = store.migration_status();
  Table table({"VERSION", "FILE", "STATE", "APPLIED AT", "DURATION"});
  int pending = 0;
  bool broken = false;
  for (const auto& r : rows) {
    std::ostringstream v;
    v << std::setw(4) << std::setfill('0') << r.version;
    table.add({v.str(), r.file_name, prefstore::storage::to_string(r.state),
               r.applied_at.value_or("-"), r.duration_ms ? format_duration(*r.duration_ms) : "-"});
    pending += r.state == prefstore::storage::MigrationState::pending ? 1 : 0;
    broken = broken || r.state == prefstore::storage::MigrationState::changed ||
             r.state == prefstore::storage::MigrationState::unknown;
  }
  table.print(std::cout);
  std::cout << rows.size() << " migrations, " << pending << " pending\n";
  if (broken) {
    std::cerr << "prefstore: the database's migrations do not match this build (see CHANGED or "
                 "unknown above)\n";
    return kSchema;
  }
  return kOk;
}

int run_local(const std::string& action) {
  prefstore::storage::LocalServer server(
      prefstore::storage::local_server_options_from_environment());
  if (action == "start") {
    server.start();
    std::cout << "local server running (pid " << server.postmaster_pid() << "), cluster at "
              << server.cluster_dir().string() << "\n";
  } else if (action == "stop") {
    const bool was_running = server.running();
    server.stop();
    std::cout << (was_running ? "local server stopped\n" : "local server was not running\n");
  } else if (action == "status") {
    if (!server.initialized()) {
      std::cout << "local server: not created (home " << server.options().home.string() << ")\n";
      return kUnavailable;
    }
    if (!server.running()) {
      std::cout << "local server: stopped (cluster at " << server.cluster_dir().string() << ")\n";
      return kUnavailable;
    }
    std::cout << "local server: running (pid " << server.postmaster_pid() << ")\n"
              << "cluster: " << server.cluster_dir().string() << "\n"
              << "socket:  " << server.socket_dir().string() << "\n"
              << "log:     " << server.log_file().string() << "\n"
              << "url:     " << server.url() << "\n";
  } else if (action == "url") {
    server.start();
    std::cout << server.url() << "\n";
  }
  return kOk;
}

// Parses VALUE for key: with the key's type when it is defined, else (open mode) inferred.
prefstore::Value value_for(prefstore::Store& store, const std::string& key,
                           const std::string& text) {
  prefstore::validate_key(key);
  if (auto def = store.definition(key))
    return prefstore::parse_value(key, def->definition.type, text);
  return prefstore::infer_value(text);
}

int run_set(bool open_mode, const std::string& user, const std::string& key,
            const std::string& text, const WriteFlags& flags) {
  prefstore::Store store(store_options(open_mode, Task::write));
  const auto result =
      store.set(user, key, value_for(store, key, text), flags.metadata(), flags.options());
  print_result("set " + key + " of " + user, result);
  return kOk;
}

int run_reset(bool open_mode, const std::string& user, const std::string& key,
              const WriteFlags& flags) {
  prefstore::Store store(store_options(open_mode, Task::write));
  print_result("reset " + key + " of " + user,
               store.reset(user, key, flags.metadata(), flags.options()));
  return kOk;
}

int run_get(const std::string& user, const std::string& key, bool json,
            const prefstore::AsOf& as_of) {
  prefstore::Store store(store_options(true, Task::read));
  const bool latest = as_of.kind == prefstore::AsOf::Kind::latest;
  if (!latest) {
    const auto state = store.state_as_of(user, as_of);
    if (!json) {
      std::cerr << user << " as of " << as_of.describe() << ": version " << state.version << " ("
                << state.events_replayed << " events replayed after "
                << (state.snapshot_version > 0
                        ? "the snapshot at version " + std::to_string(state.snapshot_version)
                        : std::string("the start"))
                << ")\n";
    }
    for (const auto& bad : state.bad_snapshots) {
      std::cerr << "warning: the snapshot at version " << bad.stream_version << " is unusable ("
                << bad.problem << "); it was skipped and rewritten\n";
    }
  }
  if (!key.empty()) {
    const auto value = latest ? store.get(user, key) : store.get(user, key, as_of);
    if (!value) {
      std::cerr << "prefstore: " << user << " has no value for " << key
                << " and it has no default\n";
      return kError;
    }
    std::cout << (json ? prefstore::to_json(*value) : prefstore::format_value(*value)) << "\n";
    return kOk;
  }
  const auto all = latest ? store.get_all(user) : store.get_all(user, as_of);
  if (json) {
    std::string out = "{";
    for (const auto& [k, p] : all) {
      out += (out.size() > 1 ? "," : "") + json_string(k) + ":" + prefstore::to_json(p.value);
    }
    std::cout << out << "}\n";
    return kOk;
  }
  Table table({"KEY", "VALUE", "FROM", "VERSION", "UPDATED AT", "BY"});
  for (const auto& [k, p] : all) {
    if (p.is_default) {
      table.add({k, prefstore::format_value(p.value), "default", "-", "-", "-"});
    } else {
      table.add({k, prefstore::format_value(p.value), "set", std::to_string(p.entry->version),
                 prefstore::format_timestamp(p.entry->updated_at),
                 p.entry->updated_by.empty() ? "-" : p.entry->updated_by});
    }
  }
  table.print(std::cout);
  return kOk;
}

struct DefineFlags {
  std::string type;
  std::string default_text;
  std::optional<double> min, max;
  std::optional<std::int64_t> max_length, max_items;
  std::optional<std::string> pattern;
  std::vector<std::string> allowed;
  std::string description;
};

int run_define(const std::string& key, const DefineFlags& f, const WriteFlags& flags) {
  prefstore::Store store(store_options(false, Task::write));
  prefstore::validate_key(key);
  const auto type = prefstore::parse_value_type(f.type);
  if (!type) {
    throw prefstore::ValidationError(
        "--type \"" + f.type + "\" is not a type: use bool, int, double, string or string_list");
  }
  prefstore::PreferenceDefinition d;
  d.key = key;
  d.type = *type;
  d.description = f.description;
  d.constraints.min = f.min;
  d.constraints.max = f.max;
  d.constraints.max_length = f.max_length;
  d.constraints.max_items = f.max_items;
  d.constraints.pattern = f.pattern;
  if (!f.allowed.empty()) {
    const auto item_type =
        *type == prefstore::ValueType::string_list ? prefstore::ValueType::string : *type;
    std::vector<prefstore::Value> allowed;
    for (const auto& a : f.allowed) allowed.push_back(prefstore::parse_value(key, item_type, a));
    d.constraints.allowed_values = allowed;
  }
  if (!f.default_text.empty()) d.default_value = prefstore::parse_value(key, *type, f.default_text);
  print_result("defined " + key, store.define(d, flags.metadata(), flags.options()));
  return kOk;
}

int run_deprecate(const std::string& key, const std::string& note, const WriteFlags& flags) {
  prefstore::Store store(store_options(false, Task::write));
  print_result("deprecated " + key, store.deprecate(key, note, flags.metadata(), flags.options()));
  return kOk;
}

std::string describe_constraints(const prefstore::PreferenceDefinition& d) {
  std::string out;
  auto add = [&out](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  auto num = [](double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  };
  const auto& c = d.constraints;
  if (c.min) add("min " + num(*c.min));
  if (c.max) add("max " + num(*c.max));
  if (c.max_length) add("max length " + std::to_string(*c.max_length));
  if (c.pattern) add("pattern " + *c.pattern);
  if (c.allowed_values) {
    std::string a;
    for (const auto& v : *c.allowed_values)
      a += (a.empty() ? "" : "|") + prefstore::format_value(v);
    add("one of " + a);
  }
  if (c.max_items) add("max items " + std::to_string(*c.max_items));
  return out.empty() ? "-" : out;
}

int run_definitions(bool json) {
  prefstore::Store store(store_options(false, Task::read));
  const auto catalog = store.definitions();
  if (json) {
    for (const auto& [key, e] : catalog) {
      const auto& d = e.definition;
      std::cout << "{\"key\":" << json_string(key) << ",\"type\":\"" << prefstore::to_string(d.type)
                << "\",\"default\":"
                << (d.default_value ? prefstore::to_json(*d.default_value) : "null")
                << ",\"constraints\":" << json_string(describe_constraints(d))
                << ",\"description\":" << json_string(d.description)
                << ",\"deprecated\":" << (d.deprecated ? "true" : "false")
                << ",\"version\":" << e.version << "}\n";
    }
    return kOk;
  }
  Table table({"KEY", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION", "VERSION"});
  for (const auto& [key, e] : catalog) {
    const auto& d = e.definition;
    std::string description = d.description;
    if (d.deprecated) description = "DEPRECATED (" + d.deprecation_note + ") " + description;
    table.add({key, prefstore::to_string(d.type),
               d.default_value ? prefstore::format_value(*d.default_value) : "-",
               describe_constraints(d), description, std::to_string(e.version)});
  }
  table.print(std::cout);
  std::cout << catalog.size() << " definitions\n";
  return kOk;
}

std::string describe_event(const prefstore::EventData& data) {
  return std::visit(
      [](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, prefstore::PreferenceSet>) {
          return e.key + " = " + prefstore::format_value(e.value);
        } else if constexpr (std::is_same_v<T, prefstore::PreferenceReset>) {
          return e.key + " back to default";
        } else if constexpr (std::is_same_v<T, prefstore::PreferenceDefined>) {
          return e.definition.key + " defined as " + prefstore::to_string(e.definition.type);
        } else if constexpr (std::is_same_v<T, prefstore::PreferencesRestored>) {
          std::string text = "restored as of " + prefstore::format_timestamp(e.as_of) + ":";
          for (const auto& change : e.changes) {
            text += " " + change.key +
                    (change.value ? " = " + prefstore::format_value(*change.value)
                                  : " back to default") +
                    ";";
          }
          if (!e.changes.empty()) text.pop_back();
          return text;
        } else if constexpr (std::is_same_v<T, prefstore::StreamErased>) {
          return "erased stream " + e.stream_id + " (" + std::to_string(e.events) +
                 " events, chain head " + e.chain_head + ")";
        } else if constexpr (std::is_same_v<T, prefstore::StreamCompacted>) {
          return "compacted stream " + e.stream_id + " up to version " +
                 std::to_string(e.up_to_version) + " (" + std::to_string(e.events) +
                 " events older than " + prefstore::format_timestamp(e.older_than) + ")";
        } else if constexpr (std::is_same_v<T, prefstore::PreferencesBaseline>) {
          std::string text =
              "baseline of " + std::to_string(e.compacted_events) + " compacted events:";
          for (const auto& p : e.preferences) {
            text += " " + p.key + " = " + prefstore::format_value(p.value) + ";";
          }
          if (!e.preferences.empty()) text.pop_back();
          return text;
        } else {
          return e.key + " deprecated: " + e.note;
        }
      },
      data);
}

// --- projections ---------------------------------------------------------------------------

std::shared_ptr<prefstore::projections::Projection> projection_named(const std::string& name) {
  auto p = prefstore::projections::find_projection(name);
  if (!p) {
    std::string known;
    for (const auto& q : prefstore::projections::default_projections()) {
      known += (known.empty() ? "" : ", ") + q->name();
    }
    throw prefstore::ValidationError("no projection is named \"" + name + "\"; known: " + known);
  }
  return p;
}

int run_projections_status() {
  prefstore::Store store(store_options(true, Task::read));
  const auto head = prefstore::storage::log_head(store.pool());
  Table table({"PROJECTION", "STATE", "POSITION", "LAG (EVENTS)", "LAG (SECONDS)", "PROCESSED",
               "UPDATED AT", "LAST ERROR"});
  bool failed = false;
  const auto statuses = prefstore::storage::checkpoint_status(store.pool());
  // Every shipped projection appears, even before its first run (without writing: status is a
  // read, run as prefstore_reader).
  for (const auto& p : prefstore::projections::default_projections()) {
    const bool known = std::any_of(statuses.begin(), statuses.end(), [&](const auto& s) {
      return prefstore::storage::is_checkpoint_of(s.checkpoint.projection, p->name());
    });
    if (!known) {
      table.add(
          {p->name(), "idle", "0", std::to_string(head.events), "-", "0", "-", "- (never run)"});
    }
  }
  for (const auto& s : statuses) {
    const auto& c = s.checkpoint;
    std::ostringstream lag;
    lag << std::fixed << std::setprecision(1) << s.lag_seconds;
    table.add({c.projection, prefstore::storage::to_string(c.state),
               std::to_string(c.position.global_position), std::to_string(s.lag_events), lag.str(),
               std::to_string(c.events_processed), prefstore::format_timestamp(c.updated_at),
               c.last_error.value_or("-")});
    failed = failed || c.state == prefstore::storage::ProjectionState::failed;
  }
  table.print(std::cout);
  std::cout << "log: " << head.events << " events, newest at position " << head.last_position
            << " (preferences_current is projected inline, in each append's transaction)\n";
  return failed ? kError : kOk;
}

// The shipped asynchronous projections, with the snapshot policy's interval set.
std::vector<std::shared_ptr<prefstore::projections::Projection>> async_projections(
    std::int64_t snapshot_every) {
  auto all = prefstore::projections::default_projections();
  for (auto& p : all) {
    if (p->name() == "snapshots") {
      p = std::make_shared<prefstore::projections::SnapshotProjection>(snapshot_every);
    }
  }
  return all;
}

int run_projections_catch_up(std::size_t batch_size, std::int64_t snapshot_every) {
  prefstore::Store store(store_options(true, Task::write));
  prefstore::projections::RunnerOptions options;
  options.batch_size = batch_size;
  prefstore::projections::ProjectionRunner runner(store.pool(), async_projections(snapshot_every),
                                                  options);
  const auto applied = runner.catch_up();
  std::cout << "applied " << applied << " events\n";
  return kOk;
}

int run_projections_run(std::size_t batch_size, std::int64_t snapshot_every) {
  // SIGINT and SIGTERM are taken by a watcher thread, which asks the runner to stop.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  prefstore::Store store(store_options(true, Task::write));
  prefstore::projections::RunnerOptions options;
  options.batch_size = batch_size;
  prefstore::projections::ProjectionRunner runner(store.pool(), async_projections(snapshot_every),
                                                  options);
  std::stop_source stop;
  std::thread watcher([&stop, signals] {
    int received = 0;
    sigwait(&signals, &received);
    if (received != 0) std::cerr << "prefstore: stopping (signal " << received << ")\n";
    stop.request_stop();
  });
  std::cout << "running projections until SIGINT or SIGTERM\n" << std::flush;
  std::int64_t applied = 0;
  (void)runner.on_advanced(
      [&applied](const std::string&, prefstore::storage::LogPosition) { ++applied; });
  try {
    runner.run(stop.get_token());
  } catch (...) {
    pthread_kill(watcher.native_handle(), SIGTERM);
    watcher.join();
    throw;
  }
  watcher.join();
  std::cout << "stopped after " << applied << " batches\n";
  return kOk;
}

int run_projections_rebuild(const std::string& name, std::size_t batch_size, bool restart) {
  auto projection = projection_named(name);
  prefstore::Store store(store_options(true, Task::administer));
  prefstore::projections::RebuildOptions options;
  options.batch_size = batch_size;
  options.restart = restart;
  options.progress = [](const prefstore::projections::RebuildProgress& p) {
    const double total = static_cast<double>(std::max<std::int64_t>(p.total, p.applied));
    const double fraction = total > 0 ? static_cast<double>(p.applied) / total : 1.0;
    const int filled = static_cast<int>(fraction * 30);
    std::cerr << "\r[" << std::string(filled, '#') << std::string(30 - filled, ' ') << "] "
              << static_cast<int>(fraction * 100) << "% " << p.applied << "/" << p.total
              << " events" << (p.resumed ? " (resumed)" : "") << (p.swapped ? ", swapped\n" : "")
              << std::flush;
  };
  const auto result =
      prefstore::projections::rebuild_projection(store.pool(), *projection, options);
  std::cout << "rebuilt " << name << " from " << result.applied << " events; now at position "
            << result.position.global_position << "\n";
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "prefstore: an event-sourced preference store on PostgreSQL.\n"
      "The database comes from PREFSTORE_DATABASE_URL, else libpq's PG* variables or service "
      "file,\nelse prefstore's own local server under ./.prefstore (or $PREFSTORE_HOME).\n"
      "Exit codes: 0 ok, 1 error, 2 usage, 3 validation, 4 conflict, 5 unavailable, 6 schema,\n"
      "7 permission, 8 corrupt data, 9 unhealthy (docs/errors.md).\n"
      "Behind PgBouncer in transaction mode set PREFSTORE_TRANSACTION_POOLING=1 "
      "(docs/operations.md, \"PgBouncer\").",
      "prefstore"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "prefstore 0.1.0");
  bool open_mode = false;
  app.add_flag("--open", open_mode, "Open mode: accept keys that have no definition (untyped)");

  bool status_only = false;
  auto* migrate = app.add_subcommand("migrate", "Apply pending schema migrations");
  migrate->add_flag("--status", status_only, "List every migration and its state; change nothing");
  bool distributed = false;
  migrate->add_flag("--distributed", distributed,
                    "Citus: also distribute the per-user tables by user and make the shared ones "
                    "reference tables (run it on the coordinator, after every upgrade too)");

  std::string local_action;
  auto* local = app.add_subcommand("local", "Manage prefstore's own local PostgreSQL server");
  local->add_option("action", local_action, "start | stop | status | url")
      ->required()
      ->check(CLI::IsMember({"start", "stop", "status", "url"}));

  std::string user, key, value_text, note;
  bool json = false;

  WriteFlags set_flags;
  auto* set = app.add_subcommand("set", "Set a user's preference (appends a PreferenceSet event)");
  set->add_option("user", user, "User id")->required();
  set->add_option("key", key, "Preference key, e.g. calendar.timezone")->required();
  set->add_option("value", value_text,
                  "Value, read with the key's type (string_list: JSON array or a,b,c)")
      ->required();
  set_flags.add_to(set);

  WriteFlags reset_flags;
  auto* reset = app.add_subcommand("reset", "Put a user's preference back to its default");
  reset->add_option("user", user, "User id")->required();
  reset->add_option("key", key, "Preference key")->required();
  reset_flags.add_to(reset);

  auto* get =
      app.add_subcommand("get", "Show a user's preferences (with defaults), or one of them");
  get->add_option("user", user, "User id")->required();
  get->add_option("key", key, "Only this key");
  get->add_flag("--json", json, "Print JSON");
  std::string as_of_text;
  get->add_option("--as-of", as_of_text,
                  "Show them as they were at a moment: ISO 8601 time, position:N or version:N");

  DefineFlags define_flags;
  WriteFlags define_write;
  auto* define = app.add_subcommand("define", "Create or replace a preference definition");
  define->add_option("key", key, "Preference key: dotted lowercase segments")->required();
  define->add_option("--type", define_flags.type, "bool | int | double | string | string_list")
      ->required();
  define->add_option("--default", define_flags.default_text, "Default value");
  define->add_option("--min", define_flags.min, "Smallest allowed number (int, double)");
  define->add_option("--max", define_flags.max, "Largest allowed number (int, double)");
  define->add_option("--max-length", define_flags.max_length, "Longest string (characters)");
  define->add_option("--pattern", define_flags.pattern, "Regular expression a string must match");
  define->add_option("--allowed", define_flags.allowed, "Allowed values (or list items)")
      ->delimiter(',');
  define->add_option("--max-items", define_flags.max_items, "Most items of a string_list");
  define->add_option("--description", define_flags.description, "What the preference means");
  define_write.add_to(define);

  WriteFlags deprecate_flags;
  auto* deprecate = app.add_subcommand("deprecate", "Mark a preference definition deprecated");
  deprecate->add_option("key", key, "Preference key")->required();
  deprecate->add_option("--note", note, "Why, and what to use instead")->required();
  deprecate_flags.add_to(deprecate);

  auto* definitions = app.add_subcommand("definitions", "List the preference definitions");
  definitions->add_flag("--json", json, "Print JSON lines");

  prefstore::cli::HistoryCommand history;
  history.add_to(app);

  auto* projections = app.add_subcommand("projections", "Asynchronous read models");
  projections->require_subcommand(1);
  std::size_t batch_size = 500;
  std::int64_t snapshot_every = prefstore::projections::SnapshotProjection::kDefaultEvery;
  bool restart = false;
  std::string projection;
  auto* p_status = projections->add_subcommand(
      "status", "Position, lag (events and seconds), state and last error of each projection");
  auto* p_run = projections->add_subcommand("run", "Run the projections until SIGINT or SIGTERM");
  p_run->add_option("--batch-size", batch_size, "Events per transaction")->capture_default_str();
  p_run
      ->add_option("--snapshot-every", snapshot_every,
                   "Snapshot policy: a snapshot every N events of a user")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* p_catch_up = projections->add_subcommand("catch-up", "Run the projections until caught up");
  p_catch_up->add_option("--batch-size", batch_size, "Events per transaction")
      ->capture_default_str();
  p_catch_up
      ->add_option("--snapshot-every", snapshot_every,
                   "Snapshot policy: a snapshot every N events of a user")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* p_rebuild = projections->add_subcommand(
      "rebuild", "Rebuild a projection from the start of the log into shadow tables, then swap");
  p_rebuild->add_option("name", projection, "Projection name")->required();
  p_rebuild->add_option("--batch-size", batch_size, "Events per transaction")
      ->capture_default_str();
  p_rebuild->add_flag("--restart", restart,
                      "Start over instead of resuming an interrupted rebuild");

  prefstore::cli::TimeTravelCommands time_travel;
  time_travel.add_to(app);
  prefstore::cli::BackupCommands backups;
  backups.add_to(app);
  prefstore::cli::VerifyCommand verify;
  verify.add_to(app);
  prefstore::cli::EraseCommand erase;
  erase.add_to(app);
  prefstore::cli::RetentionCommand compact;
  compact.add_to(app);
  prefstore::cli::ObserveCommands observe;
  observe.add_to(app);

  std::string log_level = "off";
  app.add_option("--log-level", log_level,
                 "Structured log lines (logfmt) on stderr at this level and above: trace, debug, "
                 "info, warn, error, off")
      ->envname("PREFSTORE_LOG_LEVEL")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kUsage;
  }

  prefstore::set_log_level(
      prefstore::parse_log_level(log_level).value_or(prefstore::LogLevel::off));

  try {
    if (auto code = time_travel.run(open_mode)) return *code;
    if (auto code = backups.run()) return *code;
    if (auto code = verify.run()) return *code;
    if (auto code = erase.run()) return *code;
    if (auto code = compact.run()) return *code;
    if (auto code = observe.run()) return *code;
    if (migrate->parsed()) return run_migrate(status_only, distributed);
    if (local->parsed()) return run_local(local_action);
    if (set->parsed()) return run_set(open_mode, user, key, value_text, set_flags);
    if (reset->parsed()) return run_reset(open_mode, user, key, reset_flags);
    if (get->parsed()) {
      return run_get(
          user, key, json,
          as_of_text.empty() ? prefstore::AsOf::latest() : parse_moment("--as-of", as_of_text));
    }
    if (define->parsed()) return run_define(key, define_flags, define_write);
    if (deprecate->parsed()) return run_deprecate(key, note, deprecate_flags);
    if (definitions->parsed()) return run_definitions(json);
    if (auto code = history.run(describe_event)) return *code;
    if (p_status->parsed()) return run_projections_status();
    if (p_run->parsed()) return run_projections_run(batch_size, snapshot_every);
    if (p_catch_up->parsed()) return run_projections_catch_up(batch_size, snapshot_every);
    if (p_rebuild->parsed()) return run_projections_rebuild(projection, batch_size, restart);
  } catch (const prefstore::Error& e) {
    std::cerr << "prefstore: " << e.what() << "\n";
    return exit_code_for(e);
  } catch (const std::exception& e) {
    std::cerr << "prefstore: unexpected error: " << e.what() << "\n";
    return kError;
  }
  return kUsage;
}
