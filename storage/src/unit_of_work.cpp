#include "prefstore/storage/unit_of_work.hpp"

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"

namespace prefstore::storage {

struct UnitOfWork::Impl {
  PooledConnection handle;
  std::unique_ptr<pqxx::work> owned;
  pqxx::transaction_base* tx = nullptr;  // owned.get(), or a borrowed transaction
  bool borrowed = false;
  bool done = false;
};

UnitOfWork::UnitOfWork(ConnectionPool& pool) : m_impl(std::make_unique<Impl>()) {
  m_impl->handle = pool.acquire();
  try {
    m_impl->owned = std::make_unique<pqxx::work>(detail::native(m_impl->handle));
    m_impl->tx = m_impl->owned.get();
  } catch (...) {
    detail::rethrow_translated("beginning a transaction");
  }
}

UnitOfWork::UnitOfWork(detail::BorrowedTransaction& borrowed) : m_impl(std::make_unique<Impl>()) {
  m_impl->tx = &borrowed.tx;
  m_impl->borrowed = true;
}

UnitOfWork::~UnitOfWork() {
  try {
    if (m_impl->owned && !m_impl->done) m_impl->owned->abort();
  } catch (...) {
    // The connection may be gone; the server rolls back on its own.
  }
  m_impl->owned.reset();
}

std::vector<SqlRow> UnitOfWork::exec(std::string_view sql, const std::vector<SqlValue>& params) {
  if (m_impl->done) throw UsageError("UnitOfWork::exec after commit");
  try {
    std::vector<const char*> raw;
    raw.reserve(params.size());
    for (const auto& p : params) raw.push_back(p ? p->c_str() : nullptr);
    const pqxx::result r =
        m_impl->tx->exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(raw));
    std::vector<SqlRow> rows;
    rows.reserve(r.size());
    for (const auto& row : r) {
      SqlRow out;
      out.reserve(row.size());
      for (const auto& field : row) {
        out.push_back(field.is_null() ? SqlValue() : SqlValue(field.c_str()));
      }
      rows.push_back(std::move(out));
    }
    return rows;
  } catch (...) {
    detail::rethrow_translated("running a statement in a unit of work");
  }
}

void UnitOfWork::commit() {
  if (m_impl->done) throw UsageError("UnitOfWork::commit called twice");
  if (m_impl->borrowed) {
    throw UsageError("UnitOfWork::commit on a borrowed transaction: its owner commits it");
  }
  try {
    m_impl->owned->commit();
    m_impl->done = true;
  } catch (...) {
    m_impl->done = true;
    detail::rethrow_translated("committing a unit of work");
  }
}

}  // namespace prefstore::storage
