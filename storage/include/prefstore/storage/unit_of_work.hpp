// UnitOfWork: one database transaction for code above storage (projections), with parameterised
// SQL and plain-text results, so that no libpqxx type leaves storage.
//
// It begins on construction and rolls back in its destructor unless commit() ran; commit is the
// last call. Values cross as text (PostgreSQL's text format), NULL as std::nullopt.
// Thread-safety: one UnitOfWork belongs to one thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

namespace detail {
struct BorrowedTransaction;  // storage-internal: a transaction owned by someone else
}

using SqlValue = std::optional<std::string>;  // std::nullopt is NULL
using SqlRow = std::vector<SqlValue>;

class UnitOfWork {
 public:
  // Takes a connection from the pool and begins a READ COMMITTED transaction.
  // Throws UnavailableError when no connection can be had.
  explicit UnitOfWork(ConnectionPool& pool);
  // Storage-internal: a view of a transaction that storage owns (an append's), for inline
  // projections. commit() is refused; the owner commits or rolls back.
  explicit UnitOfWork(detail::BorrowedTransaction& borrowed);
  // Rolls back unless committed (or borrowed). Never throws.
  ~UnitOfWork();
  UnitOfWork(const UnitOfWork&) = delete;
  UnitOfWork& operator=(const UnitOfWork&) = delete;

  // Runs one statement with $1.. parameters and returns its rows. Requires: sql is a constant
  // of the calling code (values go in params, never into sql). Throws the translated error
  // (docs/errors.md); after an error the unit of work can only be destroyed.
  std::vector<SqlRow> exec(std::string_view sql, const std::vector<SqlValue>& params = {});

  // Commits. Throws CommitInDoubtError when the connection is lost during COMMIT.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore::storage
