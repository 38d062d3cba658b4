#include "error_translation.hpp"

#include <exception>
#include <new>
#include <pqxx/pqxx>

#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"

namespace prefstore::storage::detail {
namespace {

std::string clean(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return redact_conninfo(s);
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

[[noreturn]] void throw_for_sqlstate(const std::string& state, const std::string& msg) {
  if (state == "25006") {
    // Transient: a standby being promoted takes writes a moment later.
    throw UnavailableError(
        msg +
            " (the server is a read-only standby, or the session is read-only: writes, "
            "projectors and migrations need the primary; give the primary as the database URL "
            "and standbys as StoreOptions::standbys.urls / PREFSTORE_STANDBY_URLS)",
        state);
  }
  if (state == "40001" || state == "40P01" || state == "55P03") throw ContentionError(msg, state);
  if (starts_with(state, "08") || state == "57P01" || state == "57P02" || state == "57P03" ||
      state == "53300" || state == "53100" || state == "53200" || state == "57014") {
    throw UnavailableError(msg, state);
  }
  if (state == "23505") throw ConflictError(msg, state);
  if (starts_with(state, "23") || starts_with(state, "22")) throw ValidationError(msg, state);
  if (state == "42501" || starts_with(state, "28")) throw PermissionError(msg, state);
  throw DatabaseError(msg, state);
}

// libpqxx 6.4 throws some sql_error subclasses without their SQLSTATE (insufficient_privilege,
// for one); recover it from the class when the field is empty.
std::string sqlstate_of(const pqxx::sql_error& e) {
  if (!e.sqlstate().empty()) return e.sqlstate();
  if (dynamic_cast<const pqxx::insufficient_privilege*>(&e)) return "42501";
  if (dynamic_cast<const pqxx::unique_violation*>(&e)) return "23505";
  if (dynamic_cast<const pqxx::check_violation*>(&e)) return "23514";
  if (dynamic_cast<const pqxx::not_null_violation*>(&e)) return "23502";
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e)) return "23503";
  if (dynamic_cast<const pqxx::restrict_violation*>(&e)) return "23001";
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e)) return "23000";
  if (dynamic_cast<const pqxx::data_exception*>(&e)) return "22000";
  if (dynamic_cast<const pqxx::undefined_table*>(&e)) return "42P01";
  if (dynamic_cast<const pqxx::undefined_column*>(&e)) return "42703";
  if (dynamic_cast<const pqxx::undefined_function*>(&e)) return "42883";
  if (dynamic_cast<const pqxx::syntax_error*>(&e)) return "42601";
  if (dynamic_cast<const pqxx::disk_full*>(&e)) return "53100";
  if (dynamic_cast<const pqxx::out_of_memory*>(&e)) return "53200";
  if (dynamic_cast<const pqxx::insufficient_resources*>(&e)) return "53000";
  if (dynamic_cast<const pqxx::plpgsql_raise*>(&e)) return "P0001";
  if (dynamic_cast<const pqxx::feature_not_supported*>(&e)) return "0A000";
  return "";
}

}  // namespace

void rethrow_translated(const std::string& context) {
  try {
    throw;
  } catch (const prefstore::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    throw CommitInDoubtError(
        context + ": connection lost during COMMIT, the outcome is unknown: " + clean(e.what()));
  } catch (const pqxx::statement_completion_unknown& e) {
    throw CommitInDoubtError(context +
                             ": the outcome of the statement is unknown: " + clean(e.what()));
  } catch (const pqxx::serialization_failure& e) {
    // libpqxx 6.4 puts 40xxx errors outside sql_error, without a SQLSTATE field.
    throw ContentionError(context + ": serialization failure, retry the transaction: " +
                              clean(e.what()) + " (SQLSTATE 40001)",
                          "40001");
  } catch (const pqxx::deadlock_detected& e) {
    throw ContentionError(context + ": deadlock detected, retry the transaction: " +
                              clean(e.what()) + " (SQLSTATE 40P01)",
                          "40P01");
  } catch (const pqxx::transaction_rollback& e) {
    throw ContentionError(context + ": transaction rolled back by the server, retry it: " +
                              clean(e.what()) + " (SQLSTATE 40000)",
                          "40000");
  } catch (const pqxx::broken_connection& e) {
    const std::string what = clean(e.what());
    // Credentials refused or missing: a retry cannot help (SQLSTATE class 28 on the server; no
    // SQLSTATE reaches a failed connect).
    if (what.find("authentication failed") != std::string::npos ||
        what.find("no pg_hba.conf entry") != std::string::npos ||
        what.find("pg_hba.conf rejects connection") != std::string::npos ||
        what.find("no password supplied") != std::string::npos ||
        what.find("requires a valid client certificate") != std::string::npos) {
      throw PermissionError(context + ": the server refused the credentials: " + what, "28000");
    }
    // libpqxx 6.4 says only this (libpq's reason is dropped) when a statement finds its session
    // closed, e.g. ended by the server while idle in the pool.
    if (what.find("Could not obtain client encoding") != std::string::npos ||
        what.find("reactivation is inhibited") != std::string::npos) {
      throw UnavailableError(
          context +
          ": database connection lost: the session was closed (ended by the "
          "server: terminated, restarted or timed out; or cut by the network): " +
          what);
    }
    throw UnavailableError(context + ": database connection unavailable: " + what);
  } catch (const pqxx::sql_error& e) {
    const std::string state = sqlstate_of(e);
    throw_for_sqlstate(state, context + ": " + clean(e.what()) +
                                  (state.empty() ? "" : " (SQLSTATE " + state + ")"));
  } catch (const pqxx::usage_error& e) {
    throw UsageError(context + ": " + clean(e.what()));
  } catch (const pqxx::conversion_error& e) {
    throw DatabaseError(context + ": unexpected data from the database: " + clean(e.what()));
  } catch (const std::exception& e) {
    throw DatabaseError(context + ": " + clean(e.what()));
  }
}

}  // namespace prefstore::storage::detail
