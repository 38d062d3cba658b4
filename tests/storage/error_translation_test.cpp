// rethrow_translated against errors the real server raises: each SQLSTATE class lands on the
// prefstore error the table in docs/errors.md names, keeps its SQLSTATE, and starts with the
// caller's context. prefstore errors pass through; passwords never reach a message.
#include "error_translation.hpp"

#include <cxxabi.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <latch>
#include <memory>
#include <new>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <typeinfo>

#include "prefstore/errors.hpp"
#include "test_cluster.hpp"

namespace prefstore::storage {
namespace {

using prefstore::testing::TestCluster;

const std::string kContext = "appending to stream user-17";

std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? name.get() : type.name();
}

// Runs body and translates whatever it throws, the way storage code does.
template <class Body>
void translated(Body&& body) {
  try {
    body();
  } catch (...) {
    detail::rethrow_translated(kContext);
  }
}

// What body threw after translation, when it is exactly an Expected (not a subclass or a
// sibling); std::nullopt, with a failure saying what happened instead, otherwise.
template <class Expected, class Body>
std::optional<Expected> translated_error(Body&& body) {
  try {
    translated(body);
  } catch (const std::exception& e) {
    std::cout << type_name(typeid(e)) << ": " << e.what() << "\n";
    if (typeid(e) == typeid(Expected)) return dynamic_cast<const Expected&>(e);
    ADD_FAILURE() << "expected " << type_name(typeid(Expected)) << ", got " << type_name(typeid(e))
                  << ": " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "expected " << type_name(typeid(Expected)) << ", nothing was thrown";
  return std::nullopt;
}

bool starts_with_context(const std::string& message) {
  return message.rfind(kContext, 0) == 0;
}

// A fresh database holding table t (id primary key, v not null with a check) with rows 1 and 2.
std::string database_with_table() {
  const std::string conninfo = TestCluster::instance().fresh_database();
  pqxx::connection conn(conninfo);
  pqxx::nontransaction tx(conn);
  tx.exec("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0))");
  tx.exec("INSERT INTO t VALUES (1, 10), (2, 20)");
  return conninfo;
}

// ---------------------------------------------------------------------------------------------
// Constraint and data errors.

TEST(ErrorTranslation, UniqueViolationBecomesConflictError) {
  pqxx::connection conn(database_with_table());
  const auto e = translated_error<ConflictError>([&] {
    pqxx::work tx(conn);
    tx.exec("INSERT INTO t VALUES (1, 11)");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23505");
  EXPECT_FALSE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, CheckViolationBecomesValidationError) {
  pqxx::connection conn(database_with_table());
  const auto e = translated_error<ValidationError>([&] {
    pqxx::work tx(conn);
    tx.exec("UPDATE t SET v = -1 WHERE id = 1");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23514");
  EXPECT_FALSE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, NotNullViolationBecomesValidationError) {
  pqxx::connection conn(database_with_table());
  const auto e = translated_error<ValidationError>([&] {
    pqxx::work tx(conn);
    tx.exec("INSERT INTO t VALUES (3, NULL)");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23502");
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, InvalidTextRepresentationBecomesValidationError) {
  pqxx::connection conn(TestCluster::instance().fresh_database());
  const auto e = translated_error<ValidationError>([&] {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT 'x'::int");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "22P02");
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

// ---------------------------------------------------------------------------------------------
// Statement errors and privileges.

TEST(ErrorTranslation, SyntaxErrorBecomesDatabaseError) {
  pqxx::connection conn(TestCluster::instance().fresh_database());
  const auto e = translated_error<DatabaseError>([&] {
    pqxx::nontransaction tx(conn);
    tx.exec("SELEKT 1");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "42601");
  EXPECT_FALSE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, UndefinedTableBecomesDatabaseError) {
  pqxx::connection conn(TestCluster::instance().fresh_database());
  const auto e = translated_error<DatabaseError>([&] {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT * FROM no_such_table");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "42P01");
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, InsufficientPrivilegeBecomesPermissionError) {
  pqxx::connection conn(database_with_table());
  // Roles belong to the whole cluster: a name of its own per process.
  const std::string role = "no_privileges_" + std::to_string(::getpid());
  pqxx::nontransaction setup(conn);
  setup.exec("CREATE ROLE " + setup.quote_name(role) + " NOLOGIN");
  setup.exec("SET ROLE " + setup.quote_name(role));

  const auto e = translated_error<PermissionError>([&] { setup.exec("SELECT * FROM t"); });
  setup.exec("RESET ROLE");
  setup.exec("DROP ROLE " + setup.quote_name(role));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "42501");
  EXPECT_FALSE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

// ---------------------------------------------------------------------------------------------
// Concurrency: deadlock and serialization failure.

TEST(ErrorTranslation, DeadlockBecomesRetryableContentionError) {
  const std::string conninfo = database_with_table();
  std::latch both_hold_their_first_row(2);
  struct Outcome {
    std::exception_ptr error;
    bool committed = false;
  };
  Outcome outcomes[2];
  auto worker = [&](int index, int first, int second) {
    try {
      translated([&] {
        pqxx::connection conn(conninfo);
        pqxx::work tx(conn);
        tx.exec_params("UPDATE t SET v = v + 1 WHERE id = $1", first);
        both_hold_their_first_row.arrive_and_wait();
        tx.exec_params("UPDATE t SET v = v + 1 WHERE id = $1", second);
        tx.commit();
        outcomes[index].committed = true;
      });
    } catch (...) {
      outcomes[index].error = std::current_exception();
    }
  };
  std::thread a(worker, 0, 1, 2);
  std::thread b(worker, 1, 2, 1);
  a.join();
  b.join();

  int deadlocked = 0;
  for (const Outcome& outcome : outcomes) {
    if (!outcome.error) continue;
    ++deadlocked;
    try {
      std::rethrow_exception(outcome.error);
    } catch (const ContentionError& e) {
      std::cout << "deadlock: " << e.what() << "\n";
      EXPECT_EQ(e.sqlstate(), "40P01");
      EXPECT_TRUE(e.retryable());
      EXPECT_TRUE(starts_with_context(e.what())) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected ContentionError, got " << type_name(typeid(e)) << ": " << e.what();
    }
  }
  std::cout << "transactions aborted by the deadlock detector: " << deadlocked << " of 2\n";
  EXPECT_EQ(deadlocked, 1);
  EXPECT_NE(outcomes[0].committed, outcomes[1].committed) << "exactly one should commit";
}

TEST(ErrorTranslation, SerializationFailureBecomesContentionError) {
  const std::string conninfo = database_with_table();
  pqxx::connection first_conn(conninfo);
  pqxx::connection second_conn(conninfo);
  pqxx::transaction<pqxx::repeatable_read> first(first_conn);
  first.exec("SELECT v FROM t WHERE id = 1");  // takes the snapshot
  {
    pqxx::work second(second_conn);
    second.exec("UPDATE t SET v = v + 1 WHERE id = 1");
    second.commit();
  }
  const auto e = translated_error<ContentionError>(
      [&] { first.exec("UPDATE t SET v = v + 100 WHERE id = 1"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "40001");
  EXPECT_TRUE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

// ---------------------------------------------------------------------------------------------
// An unavailable database.

TEST(ErrorTranslation, StatementTimeoutBecomesUnavailableError) {
  pqxx::connection conn(TestCluster::instance().fresh_database());
  pqxx::nontransaction tx(conn);
  tx.exec("SET statement_timeout = 50");
  const auto e = translated_error<UnavailableError>([&] { tx.exec("SELECT pg_sleep(1)"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "57014");
  EXPECT_TRUE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

TEST(ErrorTranslation, TerminatedBackendBecomesRetryableUnavailableError) {
  const std::string conninfo = TestCluster::instance().fresh_database();
  pqxx::connection victim(conninfo);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  victim.inhibit_reactivation(true);  // as the pool does: no silent reconnect hiding the loss
#pragma GCC diagnostic pop
  const int pid = victim.backendpid();
  {
    pqxx::connection killer(conninfo);
    pqxx::nontransaction tx(killer);
    ASSERT_TRUE(tx.exec_params1("SELECT pg_terminate_backend($1, 5000)", pid)[0].as<bool>());
  }
  const auto e = translated_error<UnavailableError>([&] {
    pqxx::nontransaction tx(victim);
    tx.exec("SELECT 1");
  });
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->retryable());
  EXPECT_TRUE(starts_with_context(e->what())) << e->what();
}

// ---------------------------------------------------------------------------------------------
// What is not a database error, and secrets.

TEST(ErrorTranslation, PrefstoreErrorPassesThroughUnchanged) {
  const auto e = translated_error<ConflictError>(
      [] { throw ConflictError("stream user-17 is at version 6, expected 4", "23505"); });
  ASSERT_TRUE(e);
  EXPECT_STREQ(e->what(), "stream user-17 is at version 6, expected 4");
  EXPECT_EQ(e->sqlstate(), "23505");
}

TEST(ErrorTranslation, BadAllocPassesThroughUnchanged) {
  EXPECT_THROW(translated([] { throw std::bad_alloc(); }), std::bad_alloc);
}

TEST(ErrorTranslation, BrokenConnectionMessageHidesPassword) {
  const auto e = translated_error<UnavailableError>([] {
    throw pqxx::broken_connection(
        "could not connect with host=/tmp/nowhere password=hunter2 dbname=prefstore");
  });
  ASSERT_TRUE(e);
  const std::string message = e->what();
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
  EXPECT_NE(message.find("password=***"), std::string::npos) << message;
  EXPECT_TRUE(starts_with_context(message)) << message;
}

}  // namespace
}  // namespace prefstore::storage
