// Pieces shared by the prefstore tool's commands: exit codes, the flags of writing commands,
// how a command opens the store, and moments on the command line.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "prefstore/as_of.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/store.hpp"

namespace prefstore::cli {

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
  kUnhealthy = 9,    // `prefstore status`: the store is reachable but unhealthy
};

// Options shared by the writing commands.
struct WriteFlags {
  std::string actor;
  std::string source = "prefstore-cli";
  std::string reason;
  std::string correlation_id;
  std::string causation_id;
  std::int64_t expect_version = -1;  // -1: any
  std::string event_id;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--actor", actor,
                    "Who makes the change (default: $PREFSTORE_ACTOR, else $USER)");
    cmd->add_option("--source", source, "Service or tool making the change")->capture_default_str();
    cmd->add_option("--reason", reason, "Why the change is made");
    cmd->add_option("--correlation-id", correlation_id,
                    "Id tying the events of one request together");
    cmd->add_option("--causation-id", causation_id, "Id of the event or command that caused this");
    cmd->add_option("--expect-version", expect_version,
                    "Write only if the stream is at this version (0: no events yet)");
    cmd->add_option("--event-id", event_id,
                    "UUID for the event (a retry with the same id stores nothing twice)");
  }
  [[nodiscard]] prefstore::Metadata metadata() const {
    prefstore::Metadata m{actor, source, reason, correlation_id, causation_id};
    if (m.actor.empty()) {
      if (const char* a = std::getenv("PREFSTORE_ACTOR"))
        m.actor = a;
      else if (const char* u = std::getenv("USER"))
        m.actor = u;
    }
    return m;
  }
  [[nodiscard]] prefstore::AppendOptions options() const {
    prefstore::AppendOptions o;
    if (expect_version >= 0) o.expected = prefstore::ExpectedVersion::exactly(expect_version);
    if (!event_id.empty()) o.event_ids = {event_id};
    return o;
  }
};

// What a command does, which decides the database role it works as (least privilege):
// read -> prefstore_reader, write -> prefstore_writer, administer (backups, restores of backups,
// erasure, retention, rebuilds) -> prefstore_owner. migrate keeps the login role (it may have to
// create those roles first).
enum class Task { read, write, administer, migrate };

// True when PREFSTORE_TRANSACTION_POOLING is 1 (or true, yes, on): the database URL names a
// transaction-pooling proxy such as PgBouncer (pool_mode=transaction), and commands open the
// store with PoolOptions::transaction_pooling (no prepared statements, no session settings, no
// SET ROLE; `migrate` must then connect to the server directly). Unset, "", 0, false, no, off:
// false. Throws UsageError naming the variable for any other value.
[[nodiscard]] bool transaction_pooling_from_environment();

// The role a task works as: $PREFSTORE_ROLE when set ("none" keeps the login role's own
// privileges, for a login role that owns prefstore's objects without being a member of its
// roles), else the task's role above; with PREFSTORE_TRANSACTION_POOLING set, no role unless
// PREFSTORE_ROLE names one (which the pool then refuses with a UsageError saying why: the login
// role itself must be a member of the one role it needs). "" means no SET ROLE.
[[nodiscard]] std::string role_for(Task task);

// How a command opens the store: a small pool, the task's role; open mode accepts undefined
// keys. The login role must be a member of the task's role (PermissionError otherwise).
// PREFSTORE_TRANSACTION_POOLING sets PoolOptions::transaction_pooling.
prefstore::StoreOptions store_options(bool open_mode, Task task);

// Parses a moment given on the command line: an ISO 8601 time ("2026-11-30T08:00:00Z", a date
// alone is its midnight UTC), "position:N", "version:N" or "now". Throws UsageError naming the
// option and the text.
[[nodiscard]] AsOf parse_moment(const std::string& option, const std::string& text);

// The exit code for an error (docs/errors.md).
[[nodiscard]] int exit_code_for(const prefstore::Error& e);

}  // namespace prefstore::cli
