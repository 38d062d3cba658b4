#include "prefstore/storage/connection_pool.hpp"

#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/storage/database_url.hpp"

namespace prefstore::storage {

using Clock = std::chrono::steady_clock;

struct ConnectionPool::Impl {
  PoolOptions options;
  std::string conninfo;  // options.conninfo with connect_timeout and application_name
  std::string redacted;

  mutable std::mutex mutex;
  std::condition_variable freed;
  std::deque<detail::PoolSlot*> idle;  // most recently used at the back
  std::size_t open = 0;                // slots that exist (idle + in use) or are being opened
  PoolStats counters;

  std::unique_ptr<detail::PoolSlot> connect() const {
    auto slot = std::make_unique<detail::PoolSlot>();
    try {
      slot->conn = std::make_unique<pqxx::connection>(conninfo);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      // The pool, not libpqxx, decides when to reconnect: a silent reconnect would lose the
      // session settings and hide an ambiguous commit.
      slot->conn->inhibit_reactivation(true);
#pragma GCC diagnostic pop
      // Behind a transaction-pooling proxy, session state would stick to whichever server
      // connection ran it: no SETs, no SET ROLE (the constructor refused a role), no names.
      if (options.transaction_pooling) {
        slot->use_prepared = false;
        return slot;
      }
      std::string setup = "SET idle_in_transaction_session_timeout = " +
                          std::to_string(options.idle_in_transaction_timeout.count());
      if (options.statement_timeout.count() > 0) {
        setup += "; SET statement_timeout = " + std::to_string(options.statement_timeout.count());
      }
      pqxx::nontransaction tx(*slot->conn);
      tx.exec(setup);
      if (!options.role.empty()) switch_role(tx);
    } catch (...) {
      detail::rethrow_translated("opening a connection to " + redacted);
    }
    return slot;
  }

  // SET ROLE options.role, with an error naming the login role and the role when it may not.
  void switch_role(pqxx::nontransaction& tx) const {
    const pqxx::row member = tx.exec_params1(
        "SELECT session_user::text, "
        "EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1), "
        "EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1) "
        "  AND pg_catalog.pg_has_role(session_user, $1, 'MEMBER')",
        options.role);
    const std::string login = member[0].as<std::string>();
    if (!member[1].as<bool>()) {
      throw PermissionError("cannot connect as role " + options.role + ": no such role (run " +
                            "`prefstore migrate` to create prefstore's roles)");
    }
    if (!member[2].as<bool>()) {
      throw PermissionError("cannot connect as role " + options.role + ": login role " + login +
                            " is not a member of it (GRANT " + options.role + " TO " + login +
                            ";)");
    }
    tx.exec("SET ROLE " + tx.quote_name(options.role));
  }

  // Cheap check of an idle connection; a round trip only when it idled long or its socket holds
  // something. An idle pooled session expects nothing from the server, so readable data means a
  // notice such as "terminating connection" or the end of the stream: then SELECT 1 decides.
  bool alive(detail::PoolSlot& slot) const {
    pqxx::connection& c = *slot.conn;
    if (!c.is_open()) return false;
    bool check = Clock::now() - slot.idle_since > options.validate_after_idle;
    if (!check) {
      pollfd p{c.sock(), POLLIN, 0};
      check = ::poll(&p, 1, 0) != 0;
    }
    if (!check) return true;
    try {
      pqxx::nontransaction tx(c);
      tx.exec("SELECT 1");
      return c.is_open();
    } catch (...) {
      return false;
    }
  }
};

ConnectionPool::ConnectionPool(PoolOptions options) : m_impl(std::make_unique<Impl>()) {
  if (options.max_size == 0) throw UsageError("PoolOptions::max_size must be at least 1, got 0");
  if (options.acquire_timeout.count() < 0) {
    throw UsageError("PoolOptions::acquire_timeout must not be negative, got " +
                     std::to_string(options.acquire_timeout.count()) + " ms");
  }
  const auto connect_timeout = std::max<long long>(2, options.connect_timeout.count());
  try {
    m_impl->conninfo =
        conninfo_with(options.conninfo, {{"connect_timeout", std::to_string(connect_timeout)},
                                         {"application_name", options.application_name}});
  } catch (const ValidationError& e) {
    throw UsageError(e.what());
  }
  if (options.transaction_pooling && !options.role.empty()) {
    throw UsageError(
        "PoolOptions::role \"" + options.role +
        "\" cannot be used with transaction_pooling: SET ROLE is session state, and through a "
        "transaction-pooling proxy (PgBouncer pool_mode=transaction) each transaction may run "
        "on another server connection, one that never switched to the role or that another "
        "client switched; log in through the proxy as a login role that is a member of " +
        options.role + " only (GRANT " + options.role +
        " TO <login>; roles nest prefstore_reader < prefstore_writer < prefstore_owner) and "
        "keep role empty (the CLI: leave PREFSTORE_ROLE unset)");
  }
  if (options.transaction_pooling && options.statement_timeout.count() > 0) {
    throw UsageError(
        "PoolOptions::statement_timeout (" + std::to_string(options.statement_timeout.count()) +
        " ms) cannot be set at connect with transaction_pooling: a session setting would stick "
        "to one server connection of the proxy; set it per login role instead (ALTER ROLE "
        "<login> SET statement_timeout = ...) or use PgBouncer's query_timeout, and keep "
        "statement_timeout 0");
  }
  m_impl->redacted =
      redact_conninfo(options.conninfo.empty() ? "(libpq defaults)" : options.conninfo);
  m_impl->options = std::move(options);
}

ConnectionPool::~ConnectionPool() {
  for (detail::PoolSlot* slot : m_impl->idle) delete slot;
}

const PoolOptions& ConnectionPool::options() const noexcept {
  return m_impl->options;
}

std::string ConnectionPool::redacted_conninfo() const {
  return m_impl->redacted;
}

PoolStats ConnectionPool::stats() const {
  std::lock_guard lock(m_impl->mutex);
  PoolStats s = m_impl->counters;
  s.open = m_impl->open;
  s.idle = m_impl->idle.size();
  s.in_use = m_impl->open - m_impl->idle.size();
  return s;
}

PooledConnection ConnectionPool::acquire() {
  Impl& im = *m_impl;
  const auto started = Clock::now();
  const auto deadline = started + im.options.acquire_timeout;
  // Reports the wait to on_acquired (outside the lock) and hands the slot out.
  const auto handed_out = [&](std::unique_lock<std::mutex>& held, detail::PoolSlot* slot) {
    held.unlock();
    if (im.options.on_acquired) {
      try {
        im.options.on_acquired(Clock::now() - started);
      } catch (...) {
        // Must not throw; a metrics hook never costs the caller its connection.
      }
    }
    return PooledConnection(this, slot);
  };
  std::unique_lock lock(im.mutex);
  for (;;) {
    if (!im.idle.empty()) {
      detail::PoolSlot* slot = im.idle.back();
      im.idle.pop_back();
      lock.unlock();
      if (im.alive(*slot)) {
        lock.lock();
        ++im.counters.acquired;
        return handed_out(lock, slot);
      }
      delete slot;
      log(LogLevel::warn, "connection_discarded",
          {{"database", im.redacted}, {"reason", "failed the liveness check on acquire"}});
      lock.lock();
      --im.open;
      ++im.counters.discarded;
      // Its siblings probably died with the same server: check them all on their next use.
      for (detail::PoolSlot* s : im.idle) s->idle_since = Clock::time_point{};
      continue;
    }
    if (im.open < im.options.max_size) {
      ++im.open;
      lock.unlock();
      std::unique_ptr<detail::PoolSlot> slot;
      try {
        slot = im.connect();
      } catch (...) {
        try {
          throw;
        } catch (const std::exception& e) {  // connect() throws prefstore errors only
          log(LogLevel::warn, "connection_failed",
              {{"database", im.redacted}, {"error", e.what()}});
        }
        lock.lock();
        --im.open;
        ++im.counters.connect_failures;
        lock.unlock();
        im.freed.notify_one();
        throw;
      }
      lock.lock();
      ++im.counters.created;
      ++im.counters.acquired;
      log(LogLevel::debug, "connection_opened",
          {{"database", im.redacted}, {"open", std::to_string(im.open)}});
      return handed_out(lock, slot.release());
    }
    ++im.counters.waiting;
    const bool signalled = im.freed.wait_until(
        lock, deadline, [&] { return !im.idle.empty() || im.open < im.options.max_size; });
    --im.counters.waiting;
    if (!signalled) {
      ++im.counters.timeouts;
      log(LogLevel::warn, "pool_exhausted",
          {{"database", im.redacted},
           {"max_size", std::to_string(im.options.max_size)},
           {"waited_ms", std::to_string(im.options.acquire_timeout.count())}});
      throw UnavailableError(
          "connection pool exhausted: all " + std::to_string(im.options.max_size) +
          " connections to " + im.redacted + " stayed in use for " +
          std::to_string(im.options.acquire_timeout.count()) +
          " ms (PoolOptions::acquire_timeout); raise max_size or release connections sooner");
    }
  }
}

void ConnectionPool::give_back(detail::PoolSlot* slot) noexcept {
  Impl& im = *m_impl;
  const bool healthy = slot->conn && slot->conn->is_open();
  {
    std::lock_guard lock(im.mutex);
    if (healthy) {
      slot->idle_since = Clock::now();
      im.idle.push_back(slot);
    } else {
      --im.open;
      ++im.counters.discarded;
      for (detail::PoolSlot* s : im.idle) s->idle_since = Clock::time_point{};
    }
  }
  if (!healthy) {
    delete slot;
    log(LogLevel::info, "connection_discarded",
        {{"database", im.redacted}, {"reason", "returned broken"}});
  }
  im.freed.notify_one();
}

PooledConnection::PooledConnection(PooledConnection&& other) noexcept
    : m_pool(other.m_pool), m_slot(other.m_slot) {
  other.m_pool = nullptr;
  other.m_slot = nullptr;
}

PooledConnection& PooledConnection::operator=(PooledConnection&& other) noexcept {
  if (this != &other) {
    release();
    m_pool = other.m_pool;
    m_slot = other.m_slot;
    other.m_pool = nullptr;
    other.m_slot = nullptr;
  }
  return *this;
}

PooledConnection::~PooledConnection() {
  release();
}

void PooledConnection::release() noexcept {
  if (m_pool != nullptr && m_slot != nullptr) m_pool->give_back(m_slot);
  m_pool = nullptr;
  m_slot = nullptr;
}

}  // namespace prefstore::storage
