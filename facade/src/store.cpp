#include "prefstore/store.hpp"

#include "prefstore/storage/database_url.hpp"

namespace prefstore {

struct Store::Impl {
  bool local = false;
  std::unique_ptr<storage::ConnectionPool> pool;
};

Store::Store(StoreOptions options) : m_impl(std::make_unique<Impl>()) {
  std::optional<std::string> url = options.database_url;
  if (!url) url = storage::configured_database_url();
  if (!url) {
    storage::LocalServer server(options.local);
    server.start();
    url = server.url();
    m_impl->local = true;
  }
  options.pool.conninfo = *url;
  m_impl->pool = std::make_unique<storage::ConnectionPool>(options.pool);
  if (options.migrate_on_open) migrate();
}

Store::~Store() = default;

std::vector<storage::MigrationStatus> Store::migrate() {
  return storage::MigrationRunner(*m_impl->pool).migrate();
}

std::vector<storage::MigrationStatus> Store::migration_status() {
  return storage::MigrationRunner(*m_impl->pool).status();
}

bool Store::uses_local_server() const noexcept {
  return m_impl->local;
}

std::string Store::redacted_database_url() const {
  return m_impl->pool->redacted_conninfo();
}

storage::ConnectionPool& Store::pool() noexcept {
  return *m_impl->pool;
}

}  // namespace prefstore
