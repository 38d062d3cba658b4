#include "prefstore/consistency_token.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

TEST(ConsistencyToken, PrintsAndParsesPostgresLsnText) {
  EXPECT_EQ(to_string(ConsistencyToken{0x16B374D848}), "16/B374D848");
  EXPECT_EQ(to_string(ConsistencyToken{0}), "0/0");
  EXPECT_EQ(parse_consistency_token("16/B374D848").lsn, 0x16B374D848u);
  EXPECT_EQ(parse_consistency_token("0/1a2b").lsn, 0x1A2Bu);
  EXPECT_EQ(parse_consistency_token("FFFFFFFF/FFFFFFFF").lsn, UINT64_MAX);
}

TEST(ConsistencyToken, OrdersByPosition) {
  EXPECT_LT(parse_consistency_token("0/FFFFFFFF"), parse_consistency_token("1/0"));
  EXPECT_EQ(parse_consistency_token("1/0"), ConsistencyToken{std::uint64_t{1} << 32});
}

TEST(ConsistencyToken, RefusesTextThatIsNotAPosition) {
  for (const char* bad : {"", "/", "16", "16/", "/B3", "16/B374D848/1", "x/1", "1/-2", "+1/2",
                          "0x1/2", "123456789/0", "1/ 2", "1/2 "}) {
    try {
      (void)parse_consistency_token(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find("is not a WAL position"), std::string::npos) << e.what();
    }
  }
}

RC_GTEST_PROP(ConsistencyToken, RoundTripsThroughText, (std::uint64_t lsn)) {
  RC_ASSERT(parse_consistency_token(to_string(ConsistencyToken{lsn})).lsn == lsn);
}

}  // namespace
}  // namespace prefstore
