// ConnectionPool: a bounded, thread-safe pool of PostgreSQL connections.
//
// acquire() hands out a PooledConnection whose destructor gives the connection back. Connections
// found broken (returned broken, or failing a liveness probe on acquire) are dropped and replaced
// by new ones on demand, so the pool recovers by itself when the server comes back.
// Thread-safety: every member function may be called from any thread at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace prefstore::storage {

// Settings of a ConnectionPool, fixed at construction.
struct PoolOptions {
  // libpq connection string (URI or key=value). May hold a password: it is never logged or put
  // in an error message (redact_conninfo). "" means libpq's defaults (the PG* variables).
  std::string conninfo;
  // Most connections open at once. More means more parallel statements and more server memory
  // (each PostgreSQL connection is a process). Default 8.
  std::size_t max_size = 8;
  // How long acquire() waits for a free connection before UnavailableError. Default 5 s.
  std::chrono::milliseconds acquire_timeout{5000};
  // libpq connect_timeout for new connections (whole seconds, at least 2). Default 5 s.
  std::chrono::seconds connect_timeout{5};
  // A connection idle longer than this is checked with a round trip (SELECT 1) before it is
  // handed out; younger ones get only a free, local check of their socket. Default 30 s.
  std::chrono::milliseconds validate_after_idle{30000};
  // Server setting idle_in_transaction_session_timeout for prefstore's sessions, so that a
  // forgotten transaction cannot hold back commit-safe readers for long (DESIGN pitfall 10).
  // 0 disables. Default 60 s.
  std::chrono::milliseconds idle_in_transaction_timeout{60000};
  // Server setting statement_timeout; 0 keeps the server's (none). Default 0.
  std::chrono::milliseconds statement_timeout{0};
  // application_name shown in pg_stat_activity. Default "prefstore".
  std::string application_name = "prefstore";
  // Role every connection switches to right after connecting (SET ROLE), so it holds only that
  // role's privileges: "prefstore_writer" for a service, "prefstore_reader" for read-only
  // tools, "prefstore_owner" for migrations, erasure and restores. The login role must be a
  // member of it; otherwise connecting fails with PermissionError naming both. "" (default)
  // keeps the login role's own privileges. Must stay "" with transaction_pooling (UsageError).
  std::string role;
  // The server is reached through a transaction-pooling proxy such as PgBouncer
  // (pool_mode=transaction), where consecutive transactions of one connection may run on
  // different server connections, so nothing session-level may be relied on. When true:
  // statements run unprepared (exec_params; PgBouncer 1.18 does not carry named prepared
  // statements across transactions), the session settings above (idle_in_transaction_timeout,
  // statement_timeout) are not SET at connect (set them per login role with ALTER ROLE ... SET,
  // or in PgBouncer: idle_transaction_timeout, query_timeout), `role` must be "" (UsageError:
  // log in through the proxy as a login role that is a member of the one prefstore role it
  // needs), migrations that are pending refuse to run (MigrationError: run `prefstore migrate`
  // against the server directly), and projection runners do not LISTEN (they poll). Costs a
  // parse and plan per statement. Default false (direct connections, prepared statements).
  bool transaction_pooling = false;
  // Called after every successful acquire() with how long the caller waited for a connection
  // (including opening a new one); for metrics. Must not throw. Default: none.
  std::function<void(std::chrono::nanoseconds waited)> on_acquired;
};

// Counters of a pool, for status output and tests. A consistent snapshot.
struct PoolStats {
  std::size_t open = 0;                // connections that exist now (idle + in use)
  std::size_t idle = 0;                // open and waiting in the pool
  std::size_t in_use = 0;              // handed out
  std::size_t waiting = 0;             // threads blocked in acquire()
  std::uint64_t created = 0;           // connections opened since construction
  std::uint64_t discarded = 0;         // connections dropped because they were found broken
  std::uint64_t acquired = 0;          // successful acquire() calls
  std::uint64_t timeouts = 0;          // acquire() calls that gave up after acquire_timeout
  std::uint64_t connect_failures = 0;  // attempts to open a connection that failed
};

class ConnectionPool;
namespace detail {
struct PoolSlot;
}

// A connection borrowed from a ConnectionPool; gives it back when destroyed. Move-only.
// Requires: destroyed before its pool, and no transaction left open on it.
class PooledConnection {
 public:
  PooledConnection() = default;
  PooledConnection(PooledConnection&& other) noexcept;
  PooledConnection& operator=(PooledConnection&& other) noexcept;
  PooledConnection(const PooledConnection&) = delete;
  PooledConnection& operator=(const PooledConnection&) = delete;
  ~PooledConnection();

  // True when this handle holds a connection.
  [[nodiscard]] explicit operator bool() const noexcept { return m_slot != nullptr; }

  // Gives the connection back now (the destructor does the same).
  void release() noexcept;

  // Storage-internal: the underlying connection (see storage/src/pq_access.hpp).
  [[nodiscard]] detail::PoolSlot* slot() const noexcept { return m_slot; }

 private:
  friend class ConnectionPool;
  PooledConnection(ConnectionPool* pool, detail::PoolSlot* slot) noexcept
      : m_pool(pool), m_slot(slot) {}
  ConnectionPool* m_pool = nullptr;
  detail::PoolSlot* m_slot = nullptr;
};

class ConnectionPool {
 public:
  // Opens no connection yet. Throws UsageError for invalid options (max_size 0, an unparsable
  // conninfo, the message redacted; a role or a statement_timeout with transaction_pooling).
  explicit ConnectionPool(PoolOptions options);
  // Requires: every PooledConnection has been given back.
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // A live connection: an idle one, or a new one while fewer than max_size are open, or the
  // first one given back within acquire_timeout. Throws UnavailableError when the pool stays
  // exhausted for acquire_timeout (saying so, with the counts) or when a new connection cannot
  // be opened (with libpq's reason, redacted). Safe to retry.
  [[nodiscard]] PooledConnection acquire();

  [[nodiscard]] PoolStats stats() const;
  [[nodiscard]] const PoolOptions& options() const noexcept;
  // The connection string with its password hidden, for messages.
  [[nodiscard]] std::string redacted_conninfo() const;

 private:
  friend class PooledConnection;
  void give_back(detail::PoolSlot* slot) noexcept;

  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore::storage
