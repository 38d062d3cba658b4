// Test support: migrated databases of their own, cheaply. A template database is migrated once
// per test program (by opening a Store on it); each ScratchDatabase is a copy of it, dropped at
// the end of its scope. Header-only; for test programs that link the facade (prefstore) and the
// test support library. Thread-safety: migrated_template() and the constructor are thread-safe.
#pragma once

#include <atomic>
#include <exception>
#include <iostream>
#include <pqxx/pqxx>
#include <regex>
#include <stdexcept>
#include <string>

#include "prefstore/store.hpp"
#include "test_cluster.hpp"

namespace prefstore::testing {

// The name of the database in a libpq connection string made by the test cluster.
inline std::string database_name(const std::string& url) {
  std::smatch name;
  if (!std::regex_search(url, name, std::regex("dbname='?([A-Za-z0-9_]+)"))) {
    throw std::runtime_error("no database name in the test cluster's URL " + url);
  }
  return name[1].str();
}

// Runs a statement in the cluster's "postgres" database (CREATE / DROP DATABASE and the like).
inline void admin(const std::string& sql) {
  pqxx::connection conn(TestCluster::instance().url("postgres"));
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

// How many events the stream holds, over a direct connection.
inline std::int64_t events_of(const std::string& url, const std::string& stream) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  return tx.exec1("SELECT count(*) FROM prefstore.events WHERE stream_id = " + tx.quote(stream))[0]
      .as<std::int64_t>();
}

// Makes the database read-only for new sessions and ends its current ones (on), or undoes
// that (off): a transient fault (SQLSTATE 25006, then lost sessions) that ends when asked.
inline void set_read_only(const std::string& url, bool on) {
  const std::string db = database_name(url);
  admin("ALTER DATABASE " + db +
        (on ? " SET default_transaction_read_only = on" : " RESET default_transaction_read_only"));
  admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + db +
        "' AND pid <> pg_backend_pid()");
}

// An empty database with prefstore's schema: made once by fresh_database() and a Store that
// migrates it on open, then the template of every ScratchDatabase (a copy costs ~0.15 s, a new
// database plus migrations ~0.6 s, and a failing property shrinks through hundreds of runs).
inline const std::string& migrated_template() {
  static const std::string name = [] {
    StoreOptions o;
    o.database_url = TestCluster::instance().fresh_database();
    { const Store store(o); }
    return database_name(*o.database_url);
  }();
  return name;
}

// A migrated database of its own (for one test or one property run): a copy of
// migrated_template(), dropped when it goes out of scope (so the cluster's teardown has no
// hundreds of databases to delete).
class ScratchDatabase {
 public:
  ScratchDatabase() {
    static std::atomic<int> counter{0};
    const std::string& source = migrated_template();
    m_name = "scratch_" + std::to_string(counter.fetch_add(1));
    admin("DROP DATABASE IF EXISTS " + m_name + " WITH (FORCE)");
    admin("CREATE DATABASE " + m_name + " TEMPLATE " + source + " STRATEGY FILE_COPY");
    m_url = TestCluster::instance().url(m_name);
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;
  ~ScratchDatabase() {
    try {
      admin("DROP DATABASE IF EXISTS " + m_name + " WITH (FORCE)");
    } catch (const std::exception& e) {
      std::cerr << "could not drop the scratch database " << m_name << ": " << e.what()
                << std::endl;
    }
  }
  [[nodiscard]] const std::string& url() const noexcept { return m_url; }

 private:
  std::string m_name;
  std::string m_url;
};

}  // namespace prefstore::testing
