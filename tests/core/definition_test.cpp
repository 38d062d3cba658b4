// Preference definitions: which definitions are coherent, and how values are checked against
// them (each refusal names the key, the value and the broken constraint).
#include "prefstore/definition.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

PreferenceDefinition meeting_minutes() {
  PreferenceDefinition d;
  d.key = "calendar.default_meeting_minutes";
  d.type = ValueType::integer;
  d.default_value = std::int64_t{30};
  d.constraints.min = 5;
  d.constraints.max = 480;
  d.description = "Length of a new meeting, in minutes";
  return d;
}

PreferenceDefinition timezone() {
  PreferenceDefinition d;
  d.key = "calendar.timezone";
  d.type = ValueType::string;
  d.default_value = std::string("UTC");
  d.constraints.max_length = 32;
  d.constraints.pattern = "[A-Za-z_]+(/[A-Za-z_+-]+)*";
  return d;
}

PreferenceDefinition channels() {
  PreferenceDefinition d;
  d.key = "calendar.notification_channels";
  d.type = ValueType::string_list;
  d.default_value = StringList{"email"};
  d.constraints.allowed_values =
      std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
  d.constraints.max_items = 2;
  return d;
}

PreferenceDefinition reminder_hours() {
  PreferenceDefinition d;
  d.key = "calendar.reminders.lead_hours";
  d.type = ValueType::number;
  d.constraints.min = 0;
  d.constraints.max = 48;
  return d;
}

// The message validate_value throws, or "accepted".
std::string refusal(const PreferenceDefinition& d, const Value& v) {
  try {
    validate_value(d, v);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "accepted";
}

std::string definition_refusal(const PreferenceDefinition& d) {
  try {
    validate_definition(d);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "accepted";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- values against a definition ----

TEST(Definition, AcceptsValuesWithinTheConstraints) {
  EXPECT_EQ(refusal(meeting_minutes(), std::int64_t{30}), "accepted");
  EXPECT_EQ(refusal(meeting_minutes(), std::int64_t{5}), "accepted");
  EXPECT_EQ(refusal(meeting_minutes(), std::int64_t{480}), "accepted");
  EXPECT_EQ(refusal(timezone(), std::string("Europe/Berlin")), "accepted");
  EXPECT_EQ(refusal(timezone(), std::string("America/Argentina/Buenos_Aires")), "accepted");
  EXPECT_EQ(refusal(channels(), StringList{"email", "push"}), "accepted");
  EXPECT_EQ(refusal(channels(), StringList{}), "accepted");
  EXPECT_EQ(refusal(reminder_hours(), 0.5), "accepted");
}

TEST(Definition, RefusesAValueOfAnotherType) {
  EXPECT_EQ(refusal(timezone(), std::int64_t{5}),
            "calendar.timezone: expected a string, got int 5");
  EXPECT_EQ(refusal(meeting_minutes(), 30.0),
            "calendar.default_meeting_minutes: expected an int, got double 30");
  EXPECT_EQ(refusal(channels(), std::string("email")),
            "calendar.notification_channels: expected a string_list, got string \"email\"");
}

TEST(Definition, RefusesAValueAboveTheMaximum) {
  EXPECT_EQ(refusal(meeting_minutes(), std::int64_t{500}),
            "calendar.default_meeting_minutes: 500 is above the maximum 480");
  EXPECT_EQ(refusal(reminder_hours(), 48.5),
            "calendar.reminders.lead_hours: 48.5 is above the maximum 48");
}

TEST(Definition, RefusesAValueBelowTheMinimum) {
  EXPECT_EQ(refusal(meeting_minutes(), std::int64_t{4}),
            "calendar.default_meeting_minutes: 4 is below the minimum 5");
  EXPECT_EQ(refusal(reminder_hours(), -0.25),
            "calendar.reminders.lead_hours: -0.25 is below the minimum 0");
}

TEST(Definition, ComparesLargeIntegersExactly) {
  PreferenceDefinition d = meeting_minutes();
  d.default_value.reset();
  d.constraints.min.reset();
  d.constraints.max = 9007199254740992.0;  // 2^53
  EXPECT_EQ(refusal(d, std::int64_t{9007199254740992}), "accepted");
  EXPECT_NE(refusal(d, std::int64_t{9007199254740993}),
            "accepted");  // 2^53 + 1 as a double is 2^53
  d.constraints.max = 0.5;
  EXPECT_EQ(refusal(d, std::int64_t{0}), "accepted");
  EXPECT_NE(refusal(d, std::int64_t{1}), "accepted");
  d.constraints.max.reset();
  d.constraints.min = -0.5;
  EXPECT_EQ(refusal(d, std::int64_t{0}), "accepted");
  EXPECT_NE(refusal(d, std::int64_t{-1}), "accepted");
  EXPECT_EQ(refusal(d, std::numeric_limits<std::int64_t>::max()), "accepted");
}

TEST(Definition, RefusesAStringLongerThanTheMaximumLengthInCodePoints) {
  PreferenceDefinition d = timezone();
  d.constraints.pattern.reset();
  d.constraints.max_length = 3;
  EXPECT_EQ(refusal(d, std::string("\xC3\xA4\xC3\xB6\xC3\xBC")), "accepted");  // 3 code points
  EXPECT_EQ(refusal(d, std::string("abcd")),
            "calendar.timezone: \"abcd\" is 4 characters long, longer than the maximum length 3");
}

TEST(Definition, RefusesAStringThatDoesNotFullyMatchThePattern) {
  EXPECT_EQ(refusal(timezone(), std::string("Europe/Berlin!")),
            "calendar.timezone: \"Europe/Berlin!\" does not match the pattern "
            "\"[A-Za-z_]+(/[A-Za-z_+-]+)*\"");
  // The whole value must match, not a part of it.
  EXPECT_NE(refusal(timezone(), std::string("Europe/Berlin 1")), "accepted");
}

TEST(Definition, RefusesAStringTooLongToMatchAgainstThePatternSafely) {
  PreferenceDefinition d = timezone();
  d.constraints.max_length.reset();
  EXPECT_EQ(refusal(d, std::string(1024, 'a')), "accepted");
  const std::string message = refusal(d, std::string(2000, 'a'));
  EXPECT_TRUE(contains(message, "is 2000 bytes long, too long to check against the pattern"))
      << message;
  PreferenceDefinition unpatterned = timezone();
  unpatterned.constraints = {};
  EXPECT_EQ(refusal(unpatterned, std::string(60000, 'a')), "accepted");
  // Any value, patterned or not, is limited to kMaxValueBytes.
  EXPECT_TRUE(contains(refusal(unpatterned, std::string(100000, 'a')),
                       "a value may hold at most 65536 bytes"));
}

TEST(Definition, RefusesAValueThatIsNotAllowed) {
  PreferenceDefinition d;
  d.key = "calendar.week_start";
  d.type = ValueType::string;
  d.constraints.allowed_values = std::vector<Value>{std::string("monday"), std::string("sunday")};
  EXPECT_EQ(refusal(d, std::string("monday")), "accepted");
  EXPECT_EQ(refusal(d, std::string("friday")),
            "calendar.week_start: \"friday\" is not one of the allowed values [\"monday\", "
            "\"sunday\"]");
  PreferenceDefinition slots = meeting_minutes();
  slots.constraints.allowed_values =
      std::vector<Value>{std::int64_t{15}, std::int64_t{30}, std::int64_t{60}};
  EXPECT_EQ(refusal(slots, std::int64_t{45}),
            "calendar.default_meeting_minutes: 45 is not one of the allowed values [15, 30, 60]");
}

TEST(Definition, RefusesAListItemThatIsNotAllowedNamingTheItem) {
  EXPECT_EQ(refusal(channels(), StringList{"email", "pigeon"}),
            "calendar.notification_channels: item 2 \"pigeon\" is not one of the allowed values "
            "[\"email\", \"push\", \"sms\"]");
}

TEST(Definition, RefusesAListWithMoreItemsThanTheMaximum) {
  EXPECT_EQ(refusal(channels(), StringList{"email", "push", "sms"}),
            "calendar.notification_channels: [\"email\", \"push\", \"sms\"] has 3 items, more "
            "than the maximum 2");
}

TEST(Definition, AppliesPatternAndLengthToEachListItem) {
  PreferenceDefinition d;
  d.key = "calendar.working_days";
  d.type = ValueType::string_list;
  d.constraints.pattern = "[a-z]+";
  d.constraints.max_length = 9;
  EXPECT_EQ(refusal(d, StringList{"monday", "tuesday"}), "accepted");
  EXPECT_EQ(refusal(d, StringList{"monday", "Tuesday"}),
            "calendar.working_days: item 2 \"Tuesday\" does not match the pattern \"[a-z]+\"");
  EXPECT_TRUE(
      contains(refusal(d, StringList{"wednesdays"}), "item 1 \"wednesdays\" is 10 characters"));
}

TEST(Definition, ValidateValueAppliesCheckStorable) {
  PreferenceDefinition d = timezone();
  d.constraints = {};
  EXPECT_TRUE(contains(refusal(d, std::string("bad\xFF")), "not valid UTF-8"));
  EXPECT_TRUE(contains(refusal(reminder_hours(), std::nan("")), "not a finite number"));
}

// ---- coherence of definitions ----

TEST(Definition, AcceptsCoherentDefinitions) {
  EXPECT_EQ(definition_refusal(meeting_minutes()), "accepted");
  EXPECT_EQ(definition_refusal(timezone()), "accepted");
  EXPECT_EQ(definition_refusal(channels()), "accepted");
  EXPECT_EQ(definition_refusal(reminder_hours()), "accepted");
  PreferenceDefinition bare;
  bare.key = "calendar.show_weekends";
  bare.type = ValueType::boolean;
  EXPECT_EQ(definition_refusal(bare), "accepted");
}

TEST(Definition, RefusesAnInvalidKey) {
  PreferenceDefinition d = meeting_minutes();
  d.key = "Calendar.Minutes";
  EXPECT_TRUE(contains(definition_refusal(d), "invalid preference key \"Calendar.Minutes\""));
}

TEST(Definition, RefusesMinAboveMax) {
  PreferenceDefinition d = meeting_minutes();
  d.constraints.min = 500;
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.default_meeting_minutes: min 500 is greater than max 480");
}

TEST(Definition, RefusesNegativeLengthsAndCounts) {
  PreferenceDefinition d = timezone();
  d.constraints.max_length = -1;
  EXPECT_EQ(definition_refusal(d), "definition of calendar.timezone: max_length -1 is negative");
  PreferenceDefinition c = channels();
  c.constraints.max_items = -2;
  EXPECT_EQ(definition_refusal(c),
            "definition of calendar.notification_channels: max_items -2 is negative");
}

TEST(Definition, RefusesAPatternThatDoesNotCompile) {
  PreferenceDefinition d = timezone();
  d.constraints.pattern = "([A-Z";
  const std::string message = definition_refusal(d);
  EXPECT_TRUE(contains(message,
                       "calendar.timezone: the pattern \"([A-Z\" is not a valid "
                       "ECMAScript regular expression"))
      << message;
  // validate_value refuses it the same way.
  EXPECT_THROW(validate_value(d, std::string("UTC")), ValidationError);
}

TEST(Definition, RefusesConstraintsThatDoNotApplyToTheType) {
  PreferenceDefinition d = meeting_minutes();
  d.constraints.max_items = 3;
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.default_meeting_minutes: max_items does not apply to type int");
  d = meeting_minutes();
  d.constraints.pattern = "[0-9]+";
  EXPECT_TRUE(contains(definition_refusal(d), "pattern does not apply to type int"));
  d = meeting_minutes();
  d.constraints.max_length = 3;
  EXPECT_TRUE(contains(definition_refusal(d), "max_length does not apply to type int"));
  PreferenceDefinition t = timezone();
  t.constraints.min = 1;
  EXPECT_TRUE(contains(definition_refusal(t), "min does not apply to type string"));
  t = timezone();
  t.constraints.max_items = 1;
  EXPECT_TRUE(contains(definition_refusal(t), "max_items does not apply to type string"));
  PreferenceDefinition b;
  b.key = "calendar.show_weekends";
  b.type = ValueType::boolean;
  b.constraints.max = 1;
  EXPECT_TRUE(contains(definition_refusal(b), "max does not apply to type bool"));
}

TEST(Definition, RefusesNonFiniteBounds) {
  PreferenceDefinition d = reminder_hours();
  d.constraints.max = std::numeric_limits<double>::infinity();
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.reminders.lead_hours: max inf is not finite");
}

TEST(Definition, RefusesADefaultOfAnotherType) {
  PreferenceDefinition d = meeting_minutes();
  d.default_value = std::string("30");
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.default_meeting_minutes: the default string \"30\" is not an "
            "int");
}

TEST(Definition, RefusesADefaultThatBreaksTheConstraints) {
  PreferenceDefinition d = meeting_minutes();
  d.default_value = std::int64_t{600};
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.default_meeting_minutes: the default 600 breaks the "
            "constraints (calendar.default_meeting_minutes: 600 is above the maximum 480)");
}

TEST(Definition, RefusesAllowedValuesOfAnotherType) {
  PreferenceDefinition d = channels();
  d.constraints.allowed_values = std::vector<Value>{std::string("email"), std::int64_t{1}};
  EXPECT_EQ(definition_refusal(d),
            "definition of calendar.notification_channels: the allowed value int 1 is not a "
            "string");
  PreferenceDefinition m = meeting_minutes();
  m.constraints.allowed_values = std::vector<Value>{15.0};
  EXPECT_TRUE(contains(definition_refusal(m), "the allowed value double 15 is not an int"));
}

TEST(Definition, RefusesAllowedValuesThatBreakTheOtherConstraints) {
  PreferenceDefinition d = meeting_minutes();
  d.constraints.allowed_values = std::vector<Value>{std::int64_t{30}, std::int64_t{600}};
  EXPECT_TRUE(
      contains(definition_refusal(d), "the allowed value 600 breaks the other constraints"));
}

TEST(Definition, RefusesAnEmptyAllowedValuesList) {
  PreferenceDefinition d = channels();
  d.default_value.reset();
  d.constraints.allowed_values = std::vector<Value>{};
  EXPECT_TRUE(contains(definition_refusal(d), "allowed_values is empty"));
}

TEST(Definition, RefusesADefaultListItemThatIsNotAllowed) {
  PreferenceDefinition d = channels();
  d.default_value = StringList{"fax"};
  EXPECT_TRUE(contains(definition_refusal(d), "the default [\"fax\"] breaks the constraints"));
}

// Compiled patterns are cached per thread (performance issue): the cache is keyed by the
// pattern's text, so a key redefined with another pattern is checked against the new one, and
// an invalid pattern is refused every time, never cached.
TEST(Definition, ThePatternCacheFollowsARedefinedPattern) {
  PreferenceDefinition d;
  d.key = "calendar.working_hours.start";
  d.type = ValueType::string;
  d.constraints.pattern = "([01][0-9]|2[0-3]):[0-5][0-9]";
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(validate_value(d, std::string("09:30")));
  EXPECT_THROW(validate_value(d, std::string("9.30")), ValidationError);
  d.constraints.pattern = "[0-9]{1,2}[.][0-9]{2}";
  EXPECT_NO_THROW(validate_value(d, std::string("9.30")));
  EXPECT_THROW(validate_value(d, std::string("09:30")), ValidationError);
  d.constraints.pattern = "([0-9]";
  for (int i = 0; i < 2; ++i) {
    try {
      validate_value(d, std::string("09:30"));
      ADD_FAILURE() << "an invalid pattern was accepted";
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find("is not a valid ECMAScript regular expression"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace prefstore
