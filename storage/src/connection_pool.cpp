#include "prefstore/storage/connection_pool.hpp"

#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
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
  const auto deadline = Clock::now() + im.options.acquire_timeout;
  std::unique_lock lock(im.mutex);
  for (;;) {
    if (!im.idle.empty()) {
      detail::PoolSlot* slot = im.idle.back();
      im.idle.pop_back();
      lock.unlock();
      if (im.alive(*slot)) {
        lock.lock();
        ++im.counters.acquired;
        return PooledConnection(this, slot);
      }
      delete slot;
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
      return PooledConnection(this, slot.release());
    }
    ++im.counters.waiting;
    const bool signalled = im.freed.wait_until(
        lock, deadline, [&] { return !im.idle.empty() || im.open < im.options.max_size; });
    --im.counters.waiting;
    if (!signalled) {
      ++im.counters.timeouts;
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
  if (!healthy) delete slot;
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
