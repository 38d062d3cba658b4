// Storage-internal: whether the database is a distributed prefstore (distribute() ran, so the
// single-shard append function exists), asked on a connection the caller already holds.
#pragma once

#include <pqxx/pqxx>

namespace prefstore::storage::detail {

// Requires: no transaction open on c. Throws what libpqxx throws.
inline bool distributed_on(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  return tx
      .exec(
          "SELECT pg_catalog.to_regprocedure("
          "'prefstore.append_to_stream(text, jsonb, jsonb, bigint)') IS NOT NULL")
      .at(0)
      .at(0)
      .as<bool>();
}

}  // namespace prefstore::storage::detail
