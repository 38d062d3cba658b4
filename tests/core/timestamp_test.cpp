// Timestamps: ISO 8601 in, "YYYY-MM-DDTHH:MM:SS.ffffffZ" out, microseconds throughout.
#include "prefstore/timestamp.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace prefstore {
namespace {

using std::chrono::microseconds;

// 2026-11-30T05:53:47.957123Z
constexpr std::int64_t kSample = 1796018027957123;

TEST(Timestamp, FormatsUtcWithSixFractionalDigits) {
  EXPECT_EQ(format_timestamp(from_unix_micros(kSample)), "2026-11-30T05:53:47.957123Z");
  EXPECT_EQ(format_timestamp(from_unix_micros(0)), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(from_unix_micros(1)), "1970-01-01T00:00:00.000001Z");
  EXPECT_EQ(format_timestamp(from_unix_micros(-1)), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp(from_unix_micros(951782400000000)), "2000-02-29T00:00:00.000000Z");
}

TEST(Timestamp, ParsesUtcWithAndWithoutFraction) {
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53:47.957123Z"), from_unix_micros(kSample));
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53:47Z"), from_unix_micros(kSample - 957123));
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53:47.9Z"), from_unix_micros(kSample - 57123));
  EXPECT_EQ(parse_timestamp("2026-11-30 05:53:47.957123Z"), from_unix_micros(kSample));
  EXPECT_EQ(parse_timestamp("2026-11-30t05:53:47.957123z"), from_unix_micros(kSample));
  // Digits beyond microseconds are dropped.
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53:47.957123999Z"), from_unix_micros(kSample));
  // No zone means UTC; minutes without seconds are fine.
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53:47.957123"), from_unix_micros(kSample));
  EXPECT_EQ(parse_timestamp("2026-11-30T05:53Z"), from_unix_micros(kSample - 47957123));
}

TEST(Timestamp, ADateAloneIsItsMidnightUtc) {
  EXPECT_EQ(parse_timestamp("2026-11-30"), parse_timestamp("2026-11-30T00:00:00Z"));
  EXPECT_EQ(format_timestamp(*parse_timestamp("2026-11-30")), "2026-11-30T00:00:00.000000Z");
}

TEST(Timestamp, ParsesOffsets) {
  const auto utc = parse_timestamp("2026-11-30T05:53:47.957123Z");
  EXPECT_EQ(parse_timestamp("2026-11-30T06:53:47.957123+01:00"), utc);
  EXPECT_EQ(parse_timestamp("2026-11-30T00:23:47.957123-05:30"), utc);
  EXPECT_EQ(parse_timestamp("2026-11-30T06:53:47.957123+0100"), utc);
  EXPECT_EQ(parse_timestamp("2026-11-30 05:53:47.957123+00"), utc);  // PostgreSQL's output
  EXPECT_EQ(parse_timestamp("2026-12-01T04:53:47.957123+23:00"), utc);
  EXPECT_EQ(format_timestamp(*parse_timestamp("2026-01-01T00:30:00+01:00")),
            "2025-12-31T23:30:00.000000Z");
}

TEST(Timestamp, RefusesMalformedText) {
  for (const char* text : {"",
                           "2026",
                           "2026-11",
                           "2026-11-3",
                           "26-11-30",
                           "2026/11/30",
                           "2026-13-01",
                           "2026-02-29",
                           "2026-11-31",
                           "2026-11-30T",
                           "2026-11-30T24:00:00Z",
                           "2026-11-30T05:60:00Z",
                           "2026-11-30T05:53:60Z",
                           "2026-11-30T05:53:47.Z",
                           "2026-11-30T05:53:47ZZ",
                           "2026-11-30T05:53:47+1",
                           "2026-11-30T05:53:47+01:0",
                           "2026-11-30T05:53:47+24:00",
                           "2026-11-30T05:53:47+01:60",
                           "2026-11-30T05:53:47 UTC",
                           "2026-11-30X05:53:47Z",
                           " 2026-11-30",
                           "2026-11-30 ",
                           "2026-11-30T5:53:47Z",
                           "yesterday"}) {
    EXPECT_EQ(parse_timestamp(text), std::nullopt) << text;
  }
}

TEST(Timestamp, UnixMicrosRoundTrip) {
  EXPECT_EQ(to_unix_micros(from_unix_micros(kSample)), kSample);
  EXPECT_EQ(to_unix_micros(from_unix_micros(-kSample)), -kSample);
}

RC_GTEST_PROP(Timestamp, FormatThenParseIsIdentity, ()) {
  // Years 0001 to 9999.
  const auto micros = *rc::gen::inRange<std::int64_t>(-62135596800000000, 253402300800000000);
  const Timestamp t = from_unix_micros(micros);
  RC_ASSERT(parse_timestamp(format_timestamp(t)) == std::optional<Timestamp>(t));
}

}  // namespace
}  // namespace prefstore
