// prefstore's error policy: one exception hierarchy, named after what the caller can do.
//
// Every layer throws only these types (libpqxx exceptions are translated inside storage and never
// cross into projections, the facade or the CLI). Messages name every value involved and never
// contain a password. "Not found" is std::optional, never an exception. See docs/errors.md.
// Thread-safety: exception objects are immutable after construction.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace prefstore {

// The base of every prefstore error. Catch it to handle "anything prefstore threw".
class Error : public std::runtime_error {
 public:
  // Requires: message says what failed, with the values involved and no secrets.
  explicit Error(const std::string& message, std::string sqlstate = {});

  // True when the same call may succeed if repeated unchanged (after a backoff).
  [[nodiscard]] virtual bool retryable() const noexcept { return false; }

  // The five-character PostgreSQL SQLSTATE behind this error, or "" when none.
  [[nodiscard]] const std::string& sqlstate() const noexcept { return m_sqlstate; }

 private:
  std::string m_sqlstate;
};

// The input was refused: a key, value, option or argument broke a rule. Fix the input; a retry
// of the same call fails the same way. Nothing was written.
class ValidationError : public Error {
 public:
  using Error::Error;
};

// The write collides with what is stored (a stale expected version, a unique key already taken).
// Re-read the current state and decide again. Nothing was written.
class ConflictError : public Error {
 public:
  using Error::Error;
};

// An append's expected version did not match the stream's actual version (optimistic
// concurrency). Carries both, so the caller can re-read from the right place.
class VersionConflictError : public ConflictError {
 public:
  // expected: the version the caller expected (0 for "no stream"); actual: the stream's version.
  VersionConflictError(const std::string& message, std::string stream_id, std::int64_t expected,
                       std::int64_t actual)
      : ConflictError(message),
        m_stream_id(std::move(stream_id)),
        m_expected(expected),
        m_actual(actual) {}
  [[nodiscard]] const std::string& stream_id() const noexcept { return m_stream_id; }
  [[nodiscard]] std::int64_t expected_version() const noexcept { return m_expected; }
  [[nodiscard]] std::int64_t actual_version() const noexcept { return m_actual; }

 private:
  std::string m_stream_id;
  std::int64_t m_expected;
  std::int64_t m_actual;
};

// A passing condition: the server or a connection is unavailable, the pool is exhausted, a
// serialization failure or deadlock aborted the transaction. Nothing was written; the same call
// may succeed later (retry with backoff).
class TransientError : public Error {
 public:
  using Error::Error;
  [[nodiscard]] bool retryable() const noexcept override { return true; }
};

// The database cannot be reached or refuses work for now (connection lost or refused, server
// shutting down or read-only, pool exhausted, statement timeout).
class UnavailableError : public TransientError {
 public:
  using TransientError::TransientError;
};

// Concurrent transactions collided (SQLSTATE 40001 serialization failure, 40P01 deadlock,
// 55P03 lock not available). Retrying the whole unit of work is the remedy.
class ContentionError : public TransientError {
 public:
  using TransientError::TransientError;
};

// The connection was lost after COMMIT was sent: the write may or may not have landed.
// Retrying with the same event ids is safe (appends are idempotent by event id); retrying a
// non-idempotent statement is not.
class CommitInDoubtError : public TransientError {
 public:
  using TransientError::TransientError;
};

// Stored data failed an integrity check (a checksum, a hash chain, a file format).
// Nothing was used from the corrupt part; restore it from a backup or rebuild it from the log.
class CorruptDataError : public Error {
 public:
  using Error::Error;
};

// The database schema does not match this build: an applied migration file was changed, the
// database has migrations this build does not know, or a migration failed (and was rolled back).
// An operator must reconcile the migrations; retrying does not help.
class MigrationError : public Error {
 public:
  using Error::Error;
};

// The database refused the credentials or the role lacks a privilege (SQLSTATE class 28,
// 42501). Connect with the role the task needs.
class PermissionError : public Error {
 public:
  using Error::Error;
};

// The caller broke a documented precondition or gave an invalid configuration (a programmer or
// operator mistake, not bad user data). Fix the calling code or the settings.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Any other error the database reported. Not retryable; sqlstate() says what it was.
class DatabaseError : public Error {
 public:
  using Error::Error;
};

}  // namespace prefstore
