// Storage-internal access to the libpqxx connection behind a PooledConnection. Only storage
// code (and storage's own tests) include this: no pqxx type crosses into other layers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage::detail {

struct PoolSlot {
  std::unique_ptr<pqxx::connection> conn;
  std::chrono::steady_clock::time_point idle_since;
  std::set<std::string, std::less<>> prepared;  // statements registered on this connection
};

// Requires: handle holds a connection.
inline pqxx::connection& native(const PooledConnection& handle) {
  return *handle.slot()->conn;
}

struct BorrowedTransaction {
  pqxx::transaction_base& tx;
};

// Registers a prepared statement on the handle's connection once (libpqxx prepares it on the
// server at first use). Returns the name for exec_prepared.
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

}  // namespace prefstore::storage::detail
