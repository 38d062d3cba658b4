// Metadata limits: who, from where and why, each at most kMaxMetadataFieldLength bytes of UTF-8.
#include "prefstore/metadata.hpp"

#include <gtest/gtest.h>

#include <string>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

Metadata sample() {
  return Metadata{"ada@example.com", "calendar-web", "moved to Berlin", "req-7f3a", "cmd-12"};
}

TEST(Metadata, AcceptsOrdinaryAndEmptyFields) {
  EXPECT_NO_THROW(validate_metadata(sample()));
  EXPECT_NO_THROW(validate_metadata(Metadata{}));
  Metadata m = sample();
  m.reason = std::string(kMaxMetadataFieldLength, 'r');
  EXPECT_NO_THROW(validate_metadata(m));
}

TEST(Metadata, RefusesAFieldLongerThanTheLimitNamingIt) {
  Metadata m = sample();
  m.reason = std::string(kMaxMetadataFieldLength + 1, 'r');
  try {
    validate_metadata(m);
    FAIL();
  } catch (const ValidationError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("metadata field reason ", 0), 0u) << message;
    EXPECT_NE(message.find("1025 bytes long, more than the maximum 1024"), std::string::npos)
        << message;
  }
}

TEST(Metadata, RefusesInvalidUtf8AndNul) {
  Metadata m = sample();
  m.actor = "ada\xFF";
  try {
    validate_metadata(m);
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_STREQ(e.what(), "metadata field actor \"ada\\xff\" is not valid UTF-8");
  }
  m = sample();
  m.correlation_id = std::string("req\0", 4);
  try {
    validate_metadata(m);
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_NE(std::string(e.what()).find("correlation_id"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NUL"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace prefstore
