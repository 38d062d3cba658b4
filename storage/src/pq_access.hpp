// Storage-internal access to the libpqxx connection behind a PooledConnection. Only storage
// code (and storage's own tests) include this: no pqxx type crosses into other layers.
#pragma once

#include <chrono>
#include <memory>
#include <pqxx/pqxx>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage::detail {

struct PoolSlot {
  std::unique_ptr<pqxx::connection> conn;
  std::chrono::steady_clock::time_point idle_since;
};

// Requires: handle holds a connection.
inline pqxx::connection& native(const PooledConnection& handle) {
  return *handle.slot()->conn;
}

}  // namespace prefstore::storage::detail
