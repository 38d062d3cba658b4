// Storage-internal access to the libpqxx connection behind a PooledConnection. Only storage
// code (and storage's own tests) include this: no pqxx type crosses into other layers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <utility>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage::detail {

struct PoolSlot {
  std::unique_ptr<pqxx::connection> conn;
  std::chrono::steady_clock::time_point idle_since;
  std::set<std::string, std::less<>> prepared;  // statements registered on this connection
  // False when the pool reaches the server through a transaction-pooling proxy
  // (PoolOptions::transaction_pooling): named prepared statements would not survive from one
  // transaction to the next there, so exec_statement runs the SQL unprepared.
  bool use_prepared = true;
};

// Requires: handle holds a connection.
inline pqxx::connection& native(const PooledConnection& handle) {
  return *handle.slot()->conn;
}

struct BorrowedTransaction {
  pqxx::transaction_base& tx;
};

// Registers a prepared statement on the handle's connection once (libpqxx prepares it on the
// server at first use). Returns the name for exec_prepared. Use exec_statement instead: it is the
// one place that decides between a prepared statement and exec_params.
inline const std::string& prepared(const PooledConnection& handle, const std::string& name,
                                   const std::string& sql) {
  PoolSlot& slot = *handle.slot();
  auto it = slot.prepared.find(name);
  if (it == slot.prepared.end()) {
    slot.conn->prepare(name, sql);
    it = slot.prepared.insert(name).first;
  }
  return *it;
}

// Runs one of storage's fixed, parameterised statements in tx, on the handle's connection. By
// default as the named prepared statement `name` (parsed and planned once per connection, the
// fast path); when the pool was opened with PoolOptions::transaction_pooling, as the same `sql`
// through exec_params (an unnamed statement, parsed every time), because a transaction-pooling
// proxy may run each transaction on another server connection, where the name is unknown (or
// taken by another client). Every named statement of storage goes through here.
// Requires: handle holds a connection and tx runs on it.
template <class... Args>
pqxx::result exec_statement(pqxx::transaction_base& tx, const PooledConnection& handle,
                            const std::string& name, const std::string& sql, Args&&... args) {
  if (!handle.slot()->use_prepared) return tx.exec_params(sql, std::forward<Args>(args)...);
  return tx.exec_prepared(prepared(handle, name, sql), std::forward<Args>(args)...);
}

}  // namespace prefstore::storage::detail
