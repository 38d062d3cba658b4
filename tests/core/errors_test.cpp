// The error policy of docs/errors.md: which errors are retryable, and what they carry.
#include "prefstore/errors.hpp"

#include <gtest/gtest.h>

namespace prefstore {
namespace {

TEST(Errors, EveryKindIsAPrefstoreError) {
  EXPECT_THROW(throw ValidationError("v"), Error);
  EXPECT_THROW(throw ConflictError("c"), Error);
  EXPECT_THROW(throw UnavailableError("u"), Error);
  EXPECT_THROW(throw ContentionError("x"), Error);
  EXPECT_THROW(throw CommitInDoubtError("d"), Error);
  EXPECT_THROW(throw CorruptDataError("k"), Error);
  EXPECT_THROW(throw MigrationError("m"), Error);
  EXPECT_THROW(throw PermissionError("p"), Error);
  EXPECT_THROW(throw UsageError("u"), Error);
  EXPECT_THROW(throw DatabaseError("d"), Error);
}

TEST(Errors, OnlyTransientKindsAreRetryable) {
  EXPECT_TRUE(UnavailableError("u").retryable());
  EXPECT_TRUE(ContentionError("x").retryable());
  EXPECT_TRUE(CommitInDoubtError("d").retryable());
  EXPECT_FALSE(ValidationError("v").retryable());
  EXPECT_FALSE(ConflictError("c").retryable());
  EXPECT_FALSE(CorruptDataError("k").retryable());
  EXPECT_FALSE(MigrationError("m").retryable());
  EXPECT_FALSE(PermissionError("p").retryable());
  EXPECT_FALSE(UsageError("u").retryable());
  EXPECT_FALSE(DatabaseError("d").retryable());
}

TEST(Errors, RetryableKindsShareTheTransientBase) {
  EXPECT_THROW(throw UnavailableError("u"), TransientError);
  EXPECT_THROW(throw ContentionError("x"), TransientError);
  EXPECT_THROW(throw CommitInDoubtError("d"), TransientError);
}

TEST(Errors, CarryMessageAndSqlstate) {
  const ConflictError e("stream user-17 is at version 6, expected 4", "23505");
  EXPECT_STREQ(e.what(), "stream user-17 is at version 6, expected 4");
  EXPECT_EQ(e.sqlstate(), "23505");
  EXPECT_EQ(ValidationError("no state").sqlstate(), "");
}

}  // namespace
}  // namespace prefstore
