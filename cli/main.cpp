// prefstore: the operator's command-line tool. See `prefstore --help` and docs/errors.md for the
// exit codes.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "prefstore/errors.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"

namespace {

// Exit codes, documented in docs/errors.md. Persisted in scripts: never renumber.
enum Exit : int {
  kOk = 0,
  kError = 1,        // any other error
  kUsage = 2,        // bad command line or configuration
  kValidation = 3,   // input refused
  kConflict = 4,     // stale version or duplicate
  kUnavailable = 5,  // database unreachable, server not running, timeouts, contention
  kSchema = 6,       // migrations changed, unknown or failed
  kPermission = 7,   // credentials refused or privilege missing
  kCorrupt = 8,      // stored data failed an integrity check
};

std::string format_duration(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << ms << " ms";
  return out.str();
}

void print_status_table(const std::vector<prefstore::storage::MigrationStatus>& rows) {
  std::cout << std::left << std::setw(9) << "VERSION" << std::setw(34) << "FILE" << std::setw(10)
            << "STATE" << std::setw(26) << "APPLIED AT"
            << "DURATION\n";
  for (const auto& r : rows) {
    std::ostringstream v;
    v << std::setw(4) << std::setfill('0') << std::right << r.version;
    std::cout << std::left << std::setw(9) << v.str() << std::setw(34) << r.file_name
              << std::setw(10) << prefstore::storage::to_string(r.state) << std::setw(26)
              << r.applied_at.value_or("-")
              << (r.duration_ms ? format_duration(*r.duration_ms) : "-") << "\n";
  }
}

prefstore::StoreOptions cli_store_options() {
  prefstore::StoreOptions options;
  options.migrate_on_open = false;
  options.pool.max_size = 2;
  return options;
}

int run_migrate(bool status_only) {
  prefstore::Store store(cli_store_options());
  std::cout << "database: " << store.redacted_database_url()
            << (store.uses_local_server() ? " (prefstore's local server)" : "") << "\n";
  if (!status_only) {
    const auto applied = store.migrate();
    if (applied.empty()) {
      std::cout << "schema is up to date; no migration applied\n";
    }
    for (const auto& m : applied) {
      std::cout << "applied " << m.file_name << " in " << format_duration(*m.duration_ms) << "\n";
    }
    return kOk;
  }
  const auto rows = store.migration_status();
  print_status_table(rows);
  int pending = 0;
  bool broken = false;
  for (const auto& r : rows) {
    pending += r.state == prefstore::storage::MigrationState::pending ? 1 : 0;
    broken = broken || r.state == prefstore::storage::MigrationState::changed ||
             r.state == prefstore::storage::MigrationState::unknown;
  }
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

int exit_code_for(const prefstore::Error& e) {
  if (dynamic_cast<const prefstore::UsageError*>(&e)) return kUsage;
  if (dynamic_cast<const prefstore::ValidationError*>(&e)) return kValidation;
  if (dynamic_cast<const prefstore::ConflictError*>(&e)) return kConflict;
  if (dynamic_cast<const prefstore::TransientError*>(&e)) return kUnavailable;
  if (dynamic_cast<const prefstore::MigrationError*>(&e)) return kSchema;
  if (dynamic_cast<const prefstore::PermissionError*>(&e)) return kPermission;
  if (dynamic_cast<const prefstore::CorruptDataError*>(&e)) return kCorrupt;
  return kError;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "prefstore: an event-sourced preference store on PostgreSQL.\n"
      "The database comes from PREFSTORE_DATABASE_URL, else libpq's PG* variables or service "
      "file,\nelse prefstore's own local server under ./.prefstore (or $PREFSTORE_HOME).",
      "prefstore"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "prefstore 0.1.0");

  bool status_only = false;
  auto* migrate = app.add_subcommand("migrate", "Apply pending schema migrations");
  migrate->add_flag("--status", status_only, "List every migration and its state; change nothing");

  std::string local_action;
  auto* local = app.add_subcommand("local", "Manage prefstore's own local PostgreSQL server");
  local->add_option("action", local_action, "start | stop | status | url")
      ->required()
      ->check(CLI::IsMember({"start", "stop", "status", "url"}));

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

  try {
    if (migrate->parsed()) return run_migrate(status_only);
    if (local->parsed()) return run_local(local_action);
  } catch (const prefstore::Error& e) {
    std::cerr << "prefstore: " << e.what() << "\n";
    return exit_code_for(e);
  } catch (const std::exception& e) {
    std::cerr << "prefstore: unexpected error: " << e.what() << "\n";
    return kError;
  }
  return kUsage;
}
