// Preference keys and user ids: which names are accepted, and why a name is refused.
#include "prefstore/preference_key.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

std::string key_refusal(std::string_view key) {
  try {
    validate_key(key);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "accepted";
}

std::string user_id_refusal(std::string_view user_id) {
  try {
    validate_user_id(user_id);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(PreferenceKey, AcceptsDottedLowercaseSegments) {
  for (const std::string& key : std::vector<std::string>{
           "calendar.timezone", "calendar.working_hours.start", "a", "a1_b.c2",
           "calendar.reminders.default_minutes", std::string(kMaxKeyLength, 'k')}) {
    EXPECT_TRUE(is_valid_key(key)) << key;
    EXPECT_NO_THROW(validate_key(key)) << key;
  }
}

TEST(PreferenceKey, RefusesOtherShapes) {
  for (const std::string& key : std::vector<std::string>{
           "", ".", "calendar.", ".calendar", "calendar..timezone", "Calendar.timezone",
           "calendar.timeZone", "calendar.1st", "calendar._x", "calendar-timezone",
           "calendar timezone", "calendar.zeitzone\xC3\xA4", std::string(kMaxKeyLength + 1, 'k'),
           "calendar/timezone"}) {
    EXPECT_FALSE(is_valid_key(key)) << key;
    EXPECT_THROW(validate_key(key), ValidationError) << key;
  }
}

TEST(PreferenceKey, RefusalNamesTheKeyAndTheRule) {
  EXPECT_EQ(key_refusal("Calendar.timezone"),
            "invalid preference key \"Calendar.timezone\": segment \"Calendar\" must start with a "
            "lowercase letter a-z; a key is dotted lowercase segments such as "
            "\"calendar.working_hours.start\"");
  EXPECT_NE(key_refusal("calendar..timezone").find("empty segment at position 10"),
            std::string::npos);
  EXPECT_NE(key_refusal("calendar.time-zone").find("segment \"time-zone\" contains \"-\""),
            std::string::npos);
  EXPECT_NE(key_refusal("").find("it is empty"), std::string::npos);
  EXPECT_NE(
      key_refusal(std::string(200, 'k')).find("200 characters long, more than the maximum 128"),
      std::string::npos);
}

TEST(UserId, AcceptsOrdinaryIds) {
  for (const std::string& id :
       std::vector<std::string>{"user-17", "ada@example.com", "42", "J\xC3\xBCrgen M\xC3\xBCller",
                                "a$b", std::string(kMaxUserIdLength, 'u')}) {
    EXPECT_EQ(user_id_refusal(id), "accepted") << id;
  }
  // The limit counts characters, not bytes: 200 two-byte characters are fine.
  std::string umlauts;
  for (std::size_t i = 0; i < kMaxUserIdLength; ++i) umlauts += "\xC3\xBC";
  EXPECT_EQ(user_id_refusal(umlauts), "accepted");
}

TEST(UserId, RefusesEmptyLongInvalidControlAndReservedIds) {
  EXPECT_EQ(user_id_refusal(""), "invalid user id \"\": it is empty");
  EXPECT_NE(user_id_refusal(std::string(kMaxUserIdLength + 1, 'u'))
                .find("201 characters long, more than the maximum 200"),
            std::string::npos);
  EXPECT_EQ(user_id_refusal("user\xFF"), "invalid user id \"user\\xff\": it is not valid UTF-8");
  EXPECT_EQ(user_id_refusal("user\n17"),
            "invalid user id \"user\\n17\": it contains a control character");
  EXPECT_NE(user_id_refusal(std::string("user\0", 5)).find("control character"), std::string::npos);
  EXPECT_NE(user_id_refusal("user\x7F").find("control character"), std::string::npos);
  EXPECT_NE(user_id_refusal("user\xC2\x85").find("control character"), std::string::npos);
  EXPECT_EQ(user_id_refusal("$def:calendar.timezone"),
            "invalid user id \"$def:calendar.timezone\": ids starting with '$' are reserved for "
            "prefstore's own streams");
}

TEST(PreferenceKey, DefinitionStreamIdIsReserved) {
  EXPECT_EQ(definition_stream_id("calendar.timezone"), "$def:calendar.timezone");
  EXPECT_THROW(validate_user_id(definition_stream_id("calendar.timezone")), ValidationError);
}

}  // namespace
}  // namespace prefstore
