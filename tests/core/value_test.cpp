// Values: their types, what can be stored, and their exact JSON round trip (including the text
// PostgreSQL's jsonb gives back).
#include "prefstore/value.hpp"

#include <gtest/gtest.h>

#include <rapidcheck/gtest.h>
#include "unicode.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

// ---- helpers shared by the properties ----

using prefstore::testing::utf8;

// Any Unicode scalar value except NUL (surrogates excluded), across all UTF-8 lengths.
rc::Gen<std::uint32_t> code_point() {
  return rc::gen::oneOf(rc::gen::inRange<std::uint32_t>(1, 0x80),
                        rc::gen::inRange<std::uint32_t>(0x80, 0x800),
                        rc::gen::inRange<std::uint32_t>(0x800, 0xD800),
                        rc::gen::inRange<std::uint32_t>(0xE000, 0x10000),
                        rc::gen::inRange<std::uint32_t>(0x10000, 0x110000));
}

rc::Gen<std::string> unicode_string() {
  return rc::gen::map(rc::gen::container<std::vector<std::uint32_t>>(code_point()),
                      [](const std::vector<std::uint32_t>& cps) {
                        std::string out;
                        for (const auto cp : cps) out += utf8(cp);
                        return out;
                      });
}

bool storable_string(const std::string& s) {
  try {
    check_storable("k", Value(s));
    return true;
  } catch (const ValidationError&) {
    return false;
  }
}

// Any finite double, from its bit pattern (so every exponent and subnormals appear).
rc::Gen<double> finite_double() {
  return rc::gen::suchThat(rc::gen::map(rc::gen::arbitrary<std::uint64_t>(),
                                        [](std::uint64_t bits) {
                                          double d = 0;
                                          std::memcpy(&d, &bits, sizeof d);
                                          return d;
                                        }),
                           [](double d) { return std::isfinite(d); });
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// What PostgreSQL's jsonb prints for a JSON number: numeric output, which never uses an
// exponent ("1e+300" -> "1" and 300 zeros, "1e-07" -> "0.0000001", "2.50" stays "2.50").
std::string pg_jsonb_number(const std::string& json) {
  std::string text = json;
  std::string sign;
  if (!text.empty() && text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  int exponent = 0;
  if (const auto e = text.find_first_of("eE"); e != std::string::npos) {
    exponent = std::stoi(text.substr(e + 1));
    text.erase(e);
  }
  std::string int_part = text;
  std::string frac_part;
  if (const auto dot = text.find('.'); dot != std::string::npos) {
    int_part = text.substr(0, dot);
    frac_part = text.substr(dot + 1);
  }
  const std::string digits = int_part + frac_part;
  const long point = static_cast<long>(int_part.size()) + exponent;  // digits left of the point
  std::string whole;
  std::string fraction;
  if (point <= 0) {
    whole = "0";
    fraction = std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else if (point >= static_cast<long>(digits.size())) {
    whole = digits + std::string(static_cast<std::size_t>(point) - digits.size(), '0');
  } else {
    whole = digits.substr(0, static_cast<std::size_t>(point));
    fraction = digits.substr(static_cast<std::size_t>(point));
  }
  whole.erase(0, std::min(whole.find_first_not_of('0'), whole.size() - 1));
  const bool zero = whole == "0" && fraction.find_first_not_of('0') == std::string::npos;
  return (zero ? "" : sign) + whole + (fraction.empty() ? "" : "." + fraction);
}

// ---- types ----

TEST(Value, TypeNamesArePersistedNames) {
  EXPECT_STREQ(to_string(ValueType::boolean), "bool");
  EXPECT_STREQ(to_string(ValueType::integer), "int");
  EXPECT_STREQ(to_string(ValueType::number), "double");
  EXPECT_STREQ(to_string(ValueType::string), "string");
  EXPECT_STREQ(to_string(ValueType::string_list), "string_list");
  for (const auto type : {ValueType::boolean, ValueType::integer, ValueType::number,
                          ValueType::string, ValueType::string_list}) {
    EXPECT_EQ(parse_value_type(to_string(type)), type);
  }
  EXPECT_EQ(parse_value_type("integer"), std::nullopt);
  EXPECT_EQ(parse_value_type("Bool"), std::nullopt);
  EXPECT_EQ(parse_value_type(""), std::nullopt);
}

TEST(Value, TypeOfFollowsTheAlternative) {
  EXPECT_EQ(type_of(Value(true)), ValueType::boolean);
  EXPECT_EQ(type_of(Value(std::int64_t{30})), ValueType::integer);
  EXPECT_EQ(type_of(Value(2.5)), ValueType::number);
  EXPECT_EQ(type_of(Value(std::string("Europe/Berlin"))), ValueType::string);
  EXPECT_EQ(type_of(Value(StringList{"email", "push"})), ValueType::string_list);
}

// ---- what can be stored ----

TEST(Value, CheckStorableAcceptsOrdinaryValues) {
  EXPECT_NO_THROW(check_storable("calendar.timezone", std::string("Europe/Berlin")));
  EXPECT_NO_THROW(check_storable("calendar.note", std::string("tab\there \xF0\x9F\x93\x85")));
  EXPECT_NO_THROW(check_storable("calendar.default_meeting_minutes", std::int64_t{30}));
  EXPECT_NO_THROW(check_storable("calendar.ratio", std::numeric_limits<double>::max()));
  EXPECT_NO_THROW(check_storable("calendar.channels", StringList{"email", "push"}));
}

TEST(Value, CheckStorableRefusesNanAndInfinity) {
  for (const double d : {std::nan(""), std::numeric_limits<double>::infinity(),
                         -std::numeric_limits<double>::infinity()}) {
    try {
      check_storable("calendar.ratio", d);
      FAIL() << "accepted " << d;
    } catch (const ValidationError& e) {
      EXPECT_NE(std::string(e.what()).find("calendar.ratio"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("finite"), std::string::npos) << e.what();
    }
  }
}

TEST(Value, CheckStorableRefusesInvalidUtf8NamingKeyAndValue) {
  try {
    check_storable("calendar.timezone", std::string("Berlin\xFF"));
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_STREQ(e.what(), "calendar.timezone: the string \"Berlin\\xff\" is not valid UTF-8");
  }
  // Overlong forms and surrogates are not valid UTF-8 either.
  EXPECT_THROW(check_storable("k", std::string("\xC0\xAF")), ValidationError);
  EXPECT_THROW(check_storable("k", std::string("\xED\xA0\x80")), ValidationError);
  EXPECT_THROW(check_storable("k", std::string("\xF4\x90\x80\x80")), ValidationError);
}

TEST(Value, CheckStorableRefusesNulInStringsAndListItems) {
  EXPECT_THROW(check_storable("k", std::string("a\0b", 3)), ValidationError);
  try {
    check_storable("calendar.channels", StringList{"email", std::string("pu\0sh", 5)});
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_STREQ(e.what(), "calendar.channels: item 2 \"pu\\u0000sh\" contains a NUL character");
  }
}

TEST(Value, NormalizedTurnsNegativeZeroIntoZero) {
  const Value v = normalized(-0.0);
  EXPECT_FALSE(std::signbit(std::get<double>(v)));
  EXPECT_EQ(normalized(Value(-2.5)), Value(-2.5));
  EXPECT_EQ(normalized(Value(std::string("x"))), Value(std::string("x")));
}

// ---- JSON ----

TEST(Value, ToJsonWritesPlainCompactJson) {
  EXPECT_EQ(to_json(true), "true");
  EXPECT_EQ(to_json(false), "false");
  EXPECT_EQ(to_json(std::int64_t{30}), "30");
  EXPECT_EQ(to_json(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(to_json(2.5), "2.5");
  EXPECT_EQ(to_json(std::string("Europe/Berlin")), "\"Europe/Berlin\"");
  EXPECT_EQ(to_json(StringList{"email", "push"}), "[\"email\",\"push\"]");
  EXPECT_EQ(to_json(StringList{}), "[]");
}

TEST(Value, DoublesAlwaysCarryAPointOrExponent) {
  EXPECT_EQ(to_json(2.0), "2.0");
  EXPECT_EQ(to_json(0.0), "0.0");
  EXPECT_EQ(to_json(-0.0), "0.0");
  EXPECT_EQ(to_json(1e300), "1e+300");
  EXPECT_EQ(to_json(1e-7), "1e-07");
  EXPECT_EQ(to_json(0.1), "0.1");
  EXPECT_EQ(to_json(123456789012345683968.0), "123456789012345683968.0");
}

TEST(Value, StringsAreJsonEscaped) {
  EXPECT_EQ(to_json(std::string("say \"hi\"\\ \t\n\x01")), "\"say \\\"hi\\\"\\\\ \\t\\n\\u0001\"");
  EXPECT_EQ(to_json(std::string("\xF0\x9F\x98\x80")), "\"\xF0\x9F\x98\x80\"");  // emoji raw
}

TEST(Value, FromJsonReadsEachType) {
  EXPECT_EQ(value_from_json(ValueType::boolean, "true"), Value(true));
  EXPECT_EQ(value_from_json(ValueType::integer, "30"), Value(std::int64_t{30}));
  EXPECT_EQ(value_from_json(ValueType::integer, "9223372036854775807"),
            Value(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(value_from_json(ValueType::number, "2.5"), Value(2.5));
  EXPECT_EQ(value_from_json(ValueType::number, "3"), Value(3.0));
  EXPECT_EQ(value_from_json(ValueType::string, "\"Europe/Berlin\""),
            Value(std::string("Europe/Berlin")));
  EXPECT_EQ(value_from_json(ValueType::string, "\"\\ud83d\\ude00\""),
            Value(std::string("\xF0\x9F\x98\x80")));
  // jsonb prints arrays with a space after each comma.
  EXPECT_EQ(value_from_json(ValueType::string_list, "[\"email\", \"push\"]"),
            Value(StringList{"email", "push"}));
  EXPECT_EQ(value_from_json(ValueType::string_list, "[]"), Value(StringList{}));
}

TEST(Value, FromJsonReadsJsonbNumbersWithoutExponent) {
  const std::string big = "1" + std::string(300, '0');  // jsonb's text of 1e300
  EXPECT_EQ(value_from_json(ValueType::number, big), Value(1e300));
  EXPECT_EQ(value_from_json(ValueType::number, "0.0000001"), Value(1e-7));
  EXPECT_EQ(value_from_json(ValueType::number, "-0.0"), Value(0.0));
  EXPECT_FALSE(std::signbit(std::get<double>(value_from_json(ValueType::number, "-0.0"))));
  EXPECT_EQ(pg_jsonb_number("1e+300"), big);
  EXPECT_EQ(pg_jsonb_number("1e-07"), "0.0000001");
  EXPECT_EQ(pg_jsonb_number("2.5"), "2.5");
  EXPECT_EQ(pg_jsonb_number("1.25e+2"), "125");
  EXPECT_EQ(pg_jsonb_number("-1.5e-3"), "-0.0015");
}

TEST(Value, FromJsonRefusesOtherTypesAndMalformedText) {
  EXPECT_THROW((void)value_from_json(ValueType::boolean, "1"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "2.5"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "9223372036854775808"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "\"30\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::number, "NaN"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::number, "1e400"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "null"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"a\\u0000b\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"open"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"a\" \"b\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string_list, "[\"a\", 1]"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string_list, "[[\"a\"]]"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string_list, "{}"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string_list, ""), CorruptDataError);
}

// value_from_json reads the commonest forms (plain ASCII strings, true/false, integers) without
// the JSON parser; these are the edges between that shortcut and the parser.
TEST(Value, FromJsonShortcutAgreesWithTheParserAtItsEdges) {
  EXPECT_EQ(value_from_json(ValueType::string, "\"\""), Value(std::string()));
  EXPECT_EQ(value_from_json(ValueType::string, "\"say \\\"hi\\\"\""),
            Value(std::string("say \"hi\"")));
  EXPECT_EQ(value_from_json(ValueType::string, "\"caf\xC3\xA9\""),
            Value(std::string("caf\xC3\xA9")));
  EXPECT_EQ(value_from_json(ValueType::boolean, "false"), Value(false));
  EXPECT_EQ(value_from_json(ValueType::integer, "-0"), Value(std::int64_t{0}));
  EXPECT_EQ(value_from_json(ValueType::integer, "-9223372036854775808"),
            Value(std::numeric_limits<std::int64_t>::min()));
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"tab\there\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"a\"b\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::string, "\"\xFF\""), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::boolean, "True"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "01"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "-"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "+1"), CorruptDataError);
  EXPECT_THROW((void)value_from_json(ValueType::integer, "-9223372036854775809"), CorruptDataError);
}

TEST(Value, FromJsonErrorNamesTheTextAndType) {
  try {
    (void)value_from_json(ValueType::integer, "\"thirty\"");
    FAIL();
  } catch (const CorruptDataError& e) {
    EXPECT_STREQ(e.what(), "stored JSON \"\\\"thirty\\\"\" is not an int value: got a string");
  }
}

RC_GTEST_PROP(Value, DoubleRoundTripsThroughJson, ()) {
  const double d = *finite_double();
  const Value back = value_from_json(ValueType::number, to_json(d));
  RC_ASSERT(same_bits(std::get<double>(back), d == 0.0 ? 0.0 : d));
}

RC_GTEST_PROP(Value, DoubleRoundTripsThroughJsonbNumberText, ()) {
  const double d = *finite_double();
  const std::string stored = pg_jsonb_number(to_json(d));
  RC_ASSERT(stored.find_first_of("eE") == std::string::npos);
  const Value back = value_from_json(ValueType::number, stored);
  RC_ASSERT(same_bits(std::get<double>(back), d == 0.0 ? 0.0 : d));
}

RC_GTEST_PROP(Value, DoubleJsonIsDistinguishableFromInt, ()) {
  const double d = *finite_double();
  RC_ASSERT(to_json(d).find_first_of(".e") != std::string::npos);
}

RC_GTEST_PROP(Value, Int64RoundTripsThroughJson, (std::int64_t i)) {
  RC_ASSERT(value_from_json(ValueType::integer, to_json(i)) == Value(i));
}

TEST(Value, Int64ExtremesRoundTrip) {
  for (const auto i : {std::numeric_limits<std::int64_t>::min(),
                       std::numeric_limits<std::int64_t>::max(), std::int64_t{0}}) {
    EXPECT_EQ(value_from_json(ValueType::integer, to_json(i)), Value(i));
  }
}

RC_GTEST_PROP(Value, ArbitraryStorableStringRoundTripsThroughJson, ()) {
  const std::string s = *rc::gen::suchThat(rc::gen::string<std::string>(), storable_string);
  RC_ASSERT(value_from_json(ValueType::string, to_json(s)) == Value(s));
}

RC_GTEST_PROP(Value, UnicodeStringRoundTripsThroughJson, ()) {
  const std::string s = *unicode_string();
  RC_ASSERT(storable_string(s));
  RC_ASSERT(value_from_json(ValueType::string, to_json(s)) == Value(s));
}

RC_GTEST_PROP(Value, StringListRoundTripsThroughJson, ()) {
  const StringList items = *rc::gen::container<StringList>(rc::gen::oneOf(
      unicode_string(),
      rc::gen::suchThat(rc::gen::resize(16, rc::gen::string<std::string>()), storable_string)));
  RC_ASSERT(value_from_json(ValueType::string_list, to_json(items)) == Value(items));
}

TEST(Value, TrickyStringsRoundTrip) {
  for (const std::string& s : std::vector<std::string>{
           std::string("'; DROP TABLE prefstore.events; --"), std::string("\"quoted\" \\back\\"),
           std::string("\t\n\r\b\f\x01\x1F\x7F"), std::string("\xE2\x80\xA8 \xEF\xBB\xBF"),
           std::string("\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB"), std::string()}) {
    EXPECT_EQ(value_from_json(ValueType::string, to_json(s)), Value(s)) << s;
  }
}

// ---- operator text ----

TEST(Value, ParseValueReadsBoolWords) {
  for (const char* yes : {"true", "on", "yes", "1", "TRUE", "Yes"}) {
    EXPECT_EQ(parse_value("calendar.reminders.enabled", ValueType::boolean, yes), Value(true));
  }
  for (const char* no : {"false", "off", "no", "0"}) {
    EXPECT_EQ(parse_value("calendar.reminders.enabled", ValueType::boolean, no), Value(false));
  }
}

TEST(Value, ParseValueReadsNumbers) {
  EXPECT_EQ(parse_value("k", ValueType::integer, "30"), Value(std::int64_t{30}));
  EXPECT_EQ(parse_value("k", ValueType::integer, "-9223372036854775808"),
            Value(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(parse_value("k", ValueType::number, "2.5"), Value(2.5));
  EXPECT_EQ(parse_value("k", ValueType::number, "1e-3"), Value(0.001));
  EXPECT_EQ(parse_value("k", ValueType::number, "7"), Value(7.0));
  EXPECT_FALSE(std::signbit(std::get<double>(parse_value("k", ValueType::number, "-0"))));
}

TEST(Value, ParseValueTakesStringsVerbatim) {
  EXPECT_EQ(parse_value("calendar.timezone", ValueType::string, " Europe/Berlin "),
            Value(std::string(" Europe/Berlin ")));
  EXPECT_EQ(parse_value("k", ValueType::string, ""), Value(std::string()));
}

TEST(Value, ParseValueReadsStringListsAsJsonOrCommaSeparated) {
  EXPECT_EQ(parse_value("calendar.channels", ValueType::string_list, "email, push"),
            Value(StringList{"email", "push"}));
  EXPECT_EQ(parse_value("calendar.channels", ValueType::string_list, "[\"a,b\", \"c\"]"),
            Value(StringList{"a,b", "c"}));
  EXPECT_EQ(parse_value("calendar.channels", ValueType::string_list, "email"),
            Value(StringList{"email"}));
  EXPECT_EQ(parse_value("calendar.channels", ValueType::string_list, ""), Value(StringList{}));
}

TEST(Value, ParseValueRefusalNamesKeyTextAndType) {
  try {
    (void)parse_value("calendar.default_meeting_minutes", ValueType::integer, "thirty");
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_STREQ(e.what(),
                 "calendar.default_meeting_minutes: expected an int (a decimal integer within "
                 "64 bits), got \"thirty\"");
  }
  try {
    (void)parse_value("calendar.reminders.enabled", ValueType::boolean, "maybe");
    FAIL();
  } catch (const ValidationError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("calendar.reminders.enabled"), std::string::npos) << message;
    EXPECT_NE(message.find("a bool"), std::string::npos) << message;
    EXPECT_NE(message.find("\"maybe\""), std::string::npos) << message;
  }
}

TEST(Value, ParseValueRefusesMalformedText) {
  for (const char* text : {"", "3.0", "1e3", "+3", " 3", "99999999999999999999", "0x10"}) {
    EXPECT_THROW((void)parse_value("k", ValueType::integer, text), ValidationError) << text;
  }
  for (const char* text : {"", "nan", "inf", "-inf", "1e400", "1,5", "abc", "1e", "."}) {
    EXPECT_THROW((void)parse_value("k", ValueType::number, text), ValidationError) << text;
  }
  EXPECT_THROW((void)parse_value("k", ValueType::boolean, ""), ValidationError);
  EXPECT_THROW((void)parse_value("k", ValueType::string_list, "[\"a\", 1]"), ValidationError);
  EXPECT_THROW((void)parse_value("k", ValueType::string, "bad \xFF"), ValidationError);
}

TEST(Value, InferValueGuessesTheType) {
  EXPECT_EQ(infer_value("true"), Value(true));
  EXPECT_EQ(infer_value("false"), Value(false));
  EXPECT_EQ(infer_value("30"), Value(std::int64_t{30}));
  EXPECT_EQ(infer_value("-7"), Value(std::int64_t{-7}));
  EXPECT_EQ(infer_value("2.5"), Value(2.5));
  EXPECT_EQ(infer_value("1e3"), Value(1000.0));
  EXPECT_EQ(infer_value("[\"email\", \"push\"]"), Value(StringList{"email", "push"}));
  EXPECT_EQ(infer_value("Europe/Berlin"), Value(std::string("Europe/Berlin")));
  EXPECT_EQ(infer_value("yes"), Value(std::string("yes")));
  EXPECT_EQ(infer_value("nan"), Value(std::string("nan")));
  EXPECT_EQ(infer_value("[1, 2]"), Value(std::string("[1, 2]")));
  EXPECT_EQ(infer_value(""), Value(std::string()));
}

TEST(Value, FormatValueIsReadable) {
  EXPECT_EQ(format_value(true), "true");
  EXPECT_EQ(format_value(std::int64_t{30}), "30");
  EXPECT_EQ(format_value(2.5), "2.5");
  EXPECT_EQ(format_value(std::string("Europe/Berlin")), "Europe/Berlin");
  EXPECT_EQ(format_value(StringList{"email", "push"}), "[email, push]");
}

}  // namespace
}  // namespace prefstore

namespace prefstore {
namespace {

// Issue 6 (bad input): the size limits of a value, at and just over each limit, with errors
// that name the key, the size found and the limit.
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "(no ValidationError)";
}

TEST(ValueLimits, AStringMayHoldUpToTheLimitInBytes) {
  EXPECT_NO_THROW(check_storable("profile.bio", Value(std::string(kMaxValueBytes, 'a'))));
  // Multi-byte characters count by bytes: 21,846 three-byte characters are over 64 KiB.
  std::string euro;
  for (std::size_t i = 0; i < kMaxValueBytes / 3 + 1; ++i) euro += "\xE2\x82\xAC";
  const std::string m = message_of([&] { check_storable("profile.bio", Value(euro)); });
  EXPECT_NE(m.find("profile.bio"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(euro.size()) + " bytes"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(kMaxValueBytes)), std::string::npos) << m;
  EXPECT_LT(m.size(), 400u) << "the message must not repeat the whole value";
  EXPECT_THROW(check_storable("k", Value(std::string(kMaxValueBytes + 1, 'a'))), ValidationError);
}

TEST(ValueLimits, AListIsLimitedInItemsAndInTotalBytes) {
  EXPECT_NO_THROW(check_storable("k", Value(StringList(kMaxListItems, "email"))));
  const std::string items = message_of(
      [&] { check_storable("notifications.channels", Value(StringList(kMaxListItems + 1, "x"))); });
  EXPECT_NE(items.find("notifications.channels"), std::string::npos) << items;
  EXPECT_NE(items.find(std::to_string(kMaxListItems + 1) + " items"), std::string::npos) << items;
  // Few items, too many bytes together.
  const StringList big(3, std::string(kMaxValueBytes / 3 + 1, 'b'));
  const std::string bytes = message_of([&] { check_storable("k", Value(big)); });
  EXPECT_NE(bytes.find(std::to_string(3 * (kMaxValueBytes / 3 + 1)) + " bytes"), std::string::npos)
      << bytes;
  EXPECT_NO_THROW(check_storable("k", Value(StringList(2, std::string(kMaxValueBytes / 2, 'c')))));
}

}  // namespace
}  // namespace prefstore
