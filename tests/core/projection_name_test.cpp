// Projection names follow the grammar of projection_checkpoints.projection_name.
#include "prefstore/projections/projection_name.hpp"

#include <gtest/gtest.h>

#include <string>

#include "prefstore/errors.hpp"

namespace prefstore::projections {
namespace {

TEST(ProjectionName, AcceptsLowercaseSnakeCase) {
  EXPECT_TRUE(is_valid_projection_name("preferences_current"));
  EXPECT_TRUE(is_valid_projection_name("preference_value_counts"));
  EXPECT_TRUE(is_valid_projection_name("a"));
  EXPECT_TRUE(is_valid_projection_name(std::string(63, 'a')));
}

TEST(ProjectionName, RejectsOtherShapes) {
  EXPECT_FALSE(is_valid_projection_name(""));
  EXPECT_FALSE(is_valid_projection_name(std::string(64, 'a')));
  EXPECT_FALSE(is_valid_projection_name("1counts"));
  EXPECT_FALSE(is_valid_projection_name("_counts"));
  EXPECT_FALSE(is_valid_projection_name("Counts"));
  EXPECT_FALSE(is_valid_projection_name("value-counts"));
  EXPECT_FALSE(is_valid_projection_name("counts; DROP TABLE x"));
}

TEST(ProjectionName, ValidationErrorNamesTheValueAndTheRule) {
  try {
    validate_projection_name("Value-Counts");
    FAIL() << "expected ValidationError";
  } catch (const ValidationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("\"Value-Counts\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("lowercase letter first"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace prefstore::projections
