// Store: a service's handle on prefstore. Opening it chooses the database, starts the local
// server when none is configured, builds the connection pool and (by default) migrates the schema.
// Thread-safety: every member function may be called from any thread at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/migrations.hpp"
#include "prefstore/store_options.hpp"

namespace prefstore {

class Store {
 public:
  // Opens the store. Throws UnavailableError when the database cannot be reached or the local
  // server cannot start, MigrationError when migrate_on_open is set and the schema cannot be
  // brought to this build's version, UsageError for invalid options.
  explicit Store(StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies pending migrations; returns those applied. See MigrationRunner::migrate().
  std::vector<storage::MigrationStatus> migrate();

  // Every migration with its state. See MigrationRunner::status().
  [[nodiscard]] std::vector<storage::MigrationStatus> migration_status();

  // True when the store runs on prefstore's own local server.
  [[nodiscard]] bool uses_local_server() const noexcept;

  // The connection string in use, password hidden.
  [[nodiscard]] std::string redacted_database_url() const;

  // The pool the store uses (for status output and advanced use).
  [[nodiscard]] storage::ConnectionPool& pool() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore
