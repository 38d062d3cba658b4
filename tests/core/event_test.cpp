// Events: persisted names and versions, their cereal JSON payloads, golden payloads of earlier
// builds, upcasting, and the refusal of corrupt payloads.
#include "prefstore/event.hpp"

#include <gtest/gtest.h>

#include <rapidcheck/gtest.h>
#include <cereal/archives/json.hpp>
#include "unicode.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <string>

#include "prefstore/errors.hpp"

namespace prefstore {
namespace {

// ---- generators ----

rc::Gen<std::string> key_gen() {
  const auto segment = rc::gen::apply(
      [](char first, const std::string& rest) { return first + rest; },
      rc::gen::elementOf(std::string("abcdefghijklmnopqrstuvwxyz")),
      rc::gen::resize(
          10, rc::gen::container<std::string>(rc::gen::elementOf(std::string("abcxyz0189_")))));
  return rc::gen::map(
      rc::gen::resize(4, rc::gen::nonEmpty(rc::gen::container<std::vector<std::string>>(segment))),
      [](const std::vector<std::string>& segments) {
        std::string key;
        for (const auto& s : segments) key += (key.empty() ? "" : ".") + s;
        return key;
      });
}

bool storable(const std::string& s) {
  try {
    check_storable("k", Value(s));
    return true;
  } catch (const ValidationError&) {
    return false;
  }
}

using prefstore::testing::utf8;

// Valid UTF-8 without NUL: arbitrary bytes that happen to be valid, or arbitrary code points.
rc::Gen<std::string> text_gen() {
  const auto code_point = rc::gen::oneOf(rc::gen::inRange<std::uint32_t>(1, 0x80),
                                         rc::gen::inRange<std::uint32_t>(0x80, 0xD800),
                                         rc::gen::inRange<std::uint32_t>(0xE000, 0x110000));
  return rc::gen::oneOf(
      rc::gen::suchThat(rc::gen::resize(16, rc::gen::string<std::string>()), storable),
      rc::gen::map(rc::gen::container<std::vector<std::uint32_t>>(code_point),
                   [](const std::vector<std::uint32_t>& cps) {
                     std::string out;
                     for (const auto cp : cps) out += utf8(cp);
                     return out;
                   }));
}

rc::Gen<double> double_gen() {
  return rc::gen::map(rc::gen::suchThat(rc::gen::map(rc::gen::arbitrary<std::uint64_t>(),
                                                     [](std::uint64_t bits) {
                                                       double d = 0;
                                                       std::memcpy(&d, &bits, sizeof d);
                                                       return d;
                                                     }),
                                        [](double d) { return std::isfinite(d); }),
                      [](double d) { return d == 0.0 ? 0.0 : d; });
}

rc::Gen<Value> value_gen(ValueType type) {
  switch (type) {
    case ValueType::boolean:
      return rc::gen::cast<Value>(rc::gen::arbitrary<bool>());
    case ValueType::integer:
      return rc::gen::cast<Value>(rc::gen::arbitrary<std::int64_t>());
    case ValueType::number:
      return rc::gen::cast<Value>(double_gen());
    case ValueType::string:
      return rc::gen::cast<Value>(text_gen());
    case ValueType::string_list:
      return rc::gen::cast<Value>(rc::gen::container<StringList>(text_gen()));
  }
  return rc::gen::just(Value(false));
}

rc::Gen<ValueType> type_gen() {
  return rc::gen::element(ValueType::boolean, ValueType::integer, ValueType::number,
                          ValueType::string, ValueType::string_list);
}

rc::Gen<Value> any_value_gen() {
  return rc::gen::mapcat(type_gen(), [](ValueType t) { return value_gen(t); });
}

// rapidcheck's maybe() as a std::optional.
template <class T>
rc::Gen<std::optional<T>> optional_of(rc::Gen<T> gen) {
  return rc::gen::map(rc::gen::maybe(std::move(gen)), [](const rc::Maybe<T>& m) {
    return m ? std::optional<T>(*m) : std::optional<T>();
  });
}

// Any definition whose values have the types its payload declares (not necessarily coherent:
// encoding does not judge the constraints).
rc::Gen<PreferenceDefinition> definition_gen() {
  return rc::gen::mapcat(type_gen(), [](ValueType type) {
    const ValueType element = type == ValueType::string_list ? ValueType::string : type;
    return rc::gen::build<PreferenceDefinition>(
        rc::gen::set(&PreferenceDefinition::key, key_gen()),
        rc::gen::set(&PreferenceDefinition::type, rc::gen::just(type)),
        rc::gen::set(&PreferenceDefinition::default_value, optional_of(value_gen(type))),
        rc::gen::set(&PreferenceDefinition::constraints,
                     rc::gen::build<Constraints>(
                         rc::gen::set(&Constraints::min, optional_of(double_gen())),
                         rc::gen::set(&Constraints::max, optional_of(double_gen())),
                         rc::gen::set(&Constraints::max_length,
                                      optional_of(rc::gen::arbitrary<std::int64_t>())),
                         rc::gen::set(&Constraints::pattern, optional_of(text_gen())),
                         rc::gen::set(&Constraints::allowed_values,
                                      optional_of(rc::gen::container<std::vector<Value>>(
                                          value_gen(element)))),
                         rc::gen::set(&Constraints::max_items,
                                      optional_of(rc::gen::arbitrary<std::int64_t>())))),
        rc::gen::set(&PreferenceDefinition::description, text_gen()),
        rc::gen::set(&PreferenceDefinition::deprecated, rc::gen::arbitrary<bool>()),
        rc::gen::set(&PreferenceDefinition::deprecation_note, text_gen()));
  });
}

rc::Gen<Metadata> metadata_gen() {
  return rc::gen::build<Metadata>(rc::gen::set(&Metadata::actor, text_gen()),
                                  rc::gen::set(&Metadata::source, text_gen()),
                                  rc::gen::set(&Metadata::reason, text_gen()),
                                  rc::gen::set(&Metadata::correlation_id, text_gen()),
                                  rc::gen::set(&Metadata::causation_id, text_gen()));
}

// What PostgreSQL's jsonb prints for a JSON number: numeric output, which never uses an
// exponent ("1e300" -> "1" and 300 zeros, "1e-7" -> "0.0000001").
std::string pg_jsonb_number(std::string text) {
  std::string sign;
  if (text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  int exponent = 0;
  if (const auto p = text.find_first_of("eE"); p != std::string::npos) {
    exponent = std::stoi(text.substr(p + 1));
    text.erase(p);
  }
  std::string whole = text;
  std::string fraction;
  if (const auto dot = text.find('.'); dot != std::string::npos) {
    whole = text.substr(0, dot);
    fraction = text.substr(dot + 1);
  }
  const std::string digits = whole + fraction;
  const long point = static_cast<long>(whole.size()) + exponent;  // digits left of the point
  if (point <= 0) return sign + "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  if (point >= static_cast<long>(digits.size())) {
    return sign + digits + std::string(static_cast<std::size_t>(point) - digits.size(), '0');
  }
  return sign + digits.substr(0, static_cast<std::size_t>(point)) + "." +
         digits.substr(static_cast<std::size_t>(point));
}

// The CorruptDataError message of decode, or "decoded".
std::string decode_refusal(const EncodedEvent& stored,
                           const UpcasterRegistry& upcasters = default_upcasters()) {
  try {
    (void)decode(stored, upcasters);
  } catch (const CorruptDataError& e) {
    return e.what();
  }
  return "decoded";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

PreferenceDefinition meeting_minutes() {
  PreferenceDefinition d;
  d.key = "calendar.default_meeting_minutes";
  d.type = ValueType::integer;
  d.default_value = std::int64_t{30};
  d.constraints.min = 5;
  d.constraints.max = 480;
  d.constraints.allowed_values =
      std::vector<Value>{std::int64_t{15}, std::int64_t{30}, std::int64_t{60}};
  d.description = "Length of a new meeting, in minutes";
  return d;
}

// ---- names and versions ----

TEST(Event, TypeNamesAndVersionsArePersisted) {
  EXPECT_STREQ(event_type_name(PreferenceSet{"calendar.timezone", std::string("UTC")}),
               "PreferenceSet");
  EXPECT_STREQ(event_type_name(PreferenceReset{"calendar.timezone"}), "PreferenceReset");
  EXPECT_STREQ(event_type_name(PreferenceDefined{}), "PreferenceDefined");
  EXPECT_STREQ(event_type_name(PreferenceDeprecated{}), "PreferenceDeprecated");
  for (const char* type :
       {"PreferenceSet", "PreferenceReset", "PreferenceDefined", "PreferenceDeprecated"}) {
    EXPECT_EQ(current_schema_version(type), 1) << type;
  }
  EXPECT_EQ(current_schema_version("PreferenceChanged"), 0);
  EXPECT_EQ(current_schema_version(""), 0);
}

// ---- what encode writes (the persisted format, pinned) ----

TEST(Event, EncodeWritesCompactNamedFields) {
  const EncodedEvent set = encode(PreferenceSet{"calendar.timezone", std::string("Europe/Berlin")});
  EXPECT_EQ(set.event_type, "PreferenceSet");
  EXPECT_EQ(set.schema_version, 1);
  EXPECT_EQ(set.payload_json,
            R"({"key":"calendar.timezone","type":"string","value":"Europe/Berlin"})");
  EXPECT_EQ(
      encode(PreferenceSet{"calendar.default_meeting_minutes", std::int64_t{30}}).payload_json,
      R"({"key":"calendar.default_meeting_minutes","type":"int","value":30})");
  EXPECT_EQ(encode(PreferenceSet{"calendar.reminders.lead_hours", 2.0}).payload_json,
            R"({"key":"calendar.reminders.lead_hours","type":"double","value":2.0})");
  EXPECT_EQ(
      encode(PreferenceSet{"calendar.notification_channels", StringList{"email", "push"}})
          .payload_json,
      R"({"key":"calendar.notification_channels","type":"string_list","value":["email","push"]})");
  EXPECT_EQ(encode(PreferenceReset{"calendar.timezone"}).payload_json,
            R"({"key":"calendar.timezone"})");
  EXPECT_EQ(encode(PreferenceDeprecated{"calendar.reminders.sms", "use channels"}).payload_json,
            R"({"key":"calendar.reminders.sms","note":"use channels"})");
  EXPECT_EQ(encode(PreferenceDefined{meeting_minutes()}).payload_json,
            R"({"key":"calendar.default_meeting_minutes","type":"int","default":30,"min":5.0,)"
            R"("max":480.0,"max_length":null,"pattern":null,"allowed_values":[15,30,60],)"
            R"("max_items":null,"description":"Length of a new meeting, in minutes",)"
            R"("deprecated":false,"deprecation_note":""})");
}

TEST(Event, EncodeEscapesStringsAndKeepsSpacesInsideThem) {
  const std::string tricky = "a \"b\"\\ \t\n\x01 \xF0\x9F\x93\x85 '; DROP TABLE x; --";
  const EncodedEvent e = encode(PreferenceSet{"calendar.note", tricky});
  EXPECT_EQ(e.payload_json,
            "{\"key\":\"calendar.note\",\"type\":\"string\",\"value\":\"a \\\"b\\\"\\\\ \\t\\n"
            "\\u0001 \xF0\x9F\x93\x85 '; DROP TABLE x; --\"}");
  EXPECT_EQ(decode(e), EventData(PreferenceSet{"calendar.note", tricky}));
}

TEST(Event, EncodeWritesNegativeZeroAsZero) {
  EXPECT_EQ(encode(PreferenceSet{"k", -0.0}).payload_json,
            R"({"key":"k","type":"double","value":0.0})");
}

// ---- golden payloads: version 1 as PostgreSQL's jsonb returns them (sorted keys, spaces) ----

TEST(EventGolden, PreferenceSetVersion1) {
  const auto decoded = [](const char* payload) { return decode({"PreferenceSet", 1, payload}); };
  EXPECT_EQ(decoded(R"({"key": "calendar.timezone", "type": "string", "value": "Europe/Berlin"})"),
            EventData(PreferenceSet{"calendar.timezone", std::string("Europe/Berlin")}));
  EXPECT_EQ(decoded(R"({"key": "calendar.default_meeting_minutes", "type": "int", "value": 30})"),
            EventData(PreferenceSet{"calendar.default_meeting_minutes", std::int64_t{30}}));
  EXPECT_EQ(decoded(R"({"key": "calendar.show_weekends", "type": "bool", "value": false})"),
            EventData(PreferenceSet{"calendar.show_weekends", false}));
  EXPECT_EQ(decoded(R"({"key": "calendar.reminders.lead_hours", "type": "double", "value": 0.25})"),
            EventData(PreferenceSet{"calendar.reminders.lead_hours", 0.25}));
  EXPECT_EQ(decoded(R"({"key": "calendar.tiny", "type": "double", "value": 0.0000001})"),
            EventData(PreferenceSet{"calendar.tiny", 1e-7}));
  EXPECT_EQ(decoded((R"({"key": "calendar.huge", "type": "double", "value": 1)" +
                     std::string(300, '0') + "}")
                        .c_str()),
            EventData(PreferenceSet{"calendar.huge", 1e300}));
  EXPECT_EQ(decoded(R"({"key": "calendar.quota", "type": "int", "value": -9223372036854775808})"),
            EventData(PreferenceSet{"calendar.quota", std::numeric_limits<std::int64_t>::min()}));
  EXPECT_EQ(
      decoded(
          R"({"key": "calendar.notification_channels", "type": "string_list", "value": ["email", "push"]})"),
      EventData(PreferenceSet{"calendar.notification_channels", StringList{"email", "push"}}));
  EXPECT_EQ(
      decoded(
          R"({"key": "calendar.note", "type": "string", "value": "tab\there \"q\" \u00e4 \ud83d\udcc5"})"),
      EventData(PreferenceSet{"calendar.note",
                              std::string("tab\there \"q\" \xC3\xA4 \xF0\x9F\x93\x85")}));
}

TEST(EventGolden, PreferenceResetVersion1) {
  EXPECT_EQ(decode({"PreferenceReset", 1, R"({"key": "calendar.timezone"})"}),
            EventData(PreferenceReset{"calendar.timezone"}));
}

TEST(EventGolden, PreferenceDefinedVersion1) {
  EXPECT_EQ(
      decode(
          {"PreferenceDefined", 1,
           R"({"key": "calendar.default_meeting_minutes", "max": 480.0, "min": 5, "type": "int", )"
           R"("default": 30, "pattern": null, "max_items": null, "deprecated": false, )"
           R"("max_length": null, "description": "Length of a new meeting, in minutes", )"
           R"("allowed_values": [15, 30, 60], "deprecation_note": ""})"}),
      EventData(PreferenceDefined{meeting_minutes()}));

  PreferenceDefinition channels;
  channels.key = "calendar.notification_channels";
  channels.type = ValueType::string_list;
  channels.default_value = StringList{"email"};
  channels.constraints.max_length = 16;
  channels.constraints.pattern = "[a-z]+";
  channels.constraints.allowed_values =
      std::vector<Value>{std::string("email"), std::string("push"), std::string("sms")};
  channels.constraints.max_items = 3;
  channels.description = "Where reminders go";
  channels.deprecated = true;
  channels.deprecation_note = "use calendar.reminders.channels";
  EXPECT_EQ(
      decode(
          {"PreferenceDefined", 1,
           R"({"key": "calendar.notification_channels", "max": null, "min": null, )"
           R"("type": "string_list", "default": ["email"], "pattern": "[a-z]+", "max_items": 3, )"
           R"("deprecated": true, "max_length": 16, "description": "Where reminders go", )"
           R"("allowed_values": ["email", "push", "sms"], )"
           R"("deprecation_note": "use calendar.reminders.channels"})"}),
      EventData(PreferenceDefined{channels}));

  PreferenceDefinition timezone;
  timezone.key = "calendar.timezone";
  EXPECT_EQ(decode({"PreferenceDefined", 1,
                    R"({"key": "calendar.timezone", "max": null, "min": null, "type": "string", )"
                    R"("default": null, "pattern": null, "max_items": null, "deprecated": false, )"
                    R"("max_length": null, "description": "", "allowed_values": null, )"
                    R"("deprecation_note": ""})"}),
            EventData(PreferenceDefined{timezone}));
}

TEST(EventGolden, PreferenceDeprecatedVersion1) {
  EXPECT_EQ(
      decode(
          {"PreferenceDeprecated", 1,
           R"({"key": "calendar.reminders.sms", "note": "use calendar.notification_channels"})"}),
      EventData(
          PreferenceDeprecated{"calendar.reminders.sms", "use calendar.notification_channels"}));
}

// ---- round trips ----

RC_GTEST_PROP(Event, PreferenceSetRoundTrips, ()) {
  const EventData event = PreferenceSet{*key_gen(), *any_value_gen()};
  RC_ASSERT(decode(encode(event)) == event);
}

RC_GTEST_PROP(Event, PreferenceSetDoubleRoundTripsThroughJsonbNumberText, ()) {
  const double d = *double_gen();
  EncodedEvent e = encode(PreferenceSet{"calendar.ratio", d});
  // "value" is the last field: its number runs up to the closing brace.
  const std::string marker = "\"value\":";
  const auto start = e.payload_json.find(marker) + marker.size();
  const std::size_t length = e.payload_json.size() - 1 - start;
  e.payload_json.replace(start, length, pg_jsonb_number(e.payload_json.substr(start, length)));
  RC_ASSERT(e.payload_json.find_first_of("eE", start) == std::string::npos);
  RC_ASSERT(decode(e) == EventData(PreferenceSet{"calendar.ratio", d}));
}

RC_GTEST_PROP(Event, PreferenceResetRoundTrips, ()) {
  const EventData event = PreferenceReset{*key_gen()};
  RC_ASSERT(decode(encode(event)) == event);
}

RC_GTEST_PROP(Event, PreferenceDefinedRoundTrips, ()) {
  const EventData event = PreferenceDefined{*definition_gen()};
  RC_ASSERT(decode(encode(event)) == event);
}

RC_GTEST_PROP(Event, PreferenceDeprecatedRoundTrips, ()) {
  const EventData event = PreferenceDeprecated{*key_gen(), *text_gen()};
  RC_ASSERT(decode(encode(event)) == event);
}

// ---- upcasting ----

// A legacy event of an earlier build: "PreferenceChanged" v1 {"name", "text"} (string values
// only), whose v2 renamed "name" to "key"; both become PreferenceSet v1.
struct LegacyChange {
  std::string key;
  std::string text;
};

LegacyChange read_legacy(const EncodedEvent& e, const char* key_field) {
  LegacyChange change;
  std::istringstream in(e.payload_json);
  cereal::JSONInputArchive ar(in);
  ar(cereal::make_nvp(key_field, change.key), cereal::make_nvp("text", change.text));
  return change;
}

template <class Write>
std::string write_json(Write&& write) {
  std::ostringstream out;
  {
    cereal::JSONOutputArchive ar(out, cereal::JSONOutputArchive::Options::NoIndent());
    write(ar);
  }
  return out.str();
}

UpcasterRegistry legacy_upcasters() {
  UpcasterRegistry registry;
  registry.add("PreferenceChanged", 1, [](const EncodedEvent& e) {
    const LegacyChange change = read_legacy(e, "name");
    return EncodedEvent{"PreferenceChanged", 2, write_json([&](cereal::JSONOutputArchive& ar) {
                          ar(cereal::make_nvp("key", change.key),
                             cereal::make_nvp("text", change.text));
                        })};
  });
  registry.add("PreferenceChanged", 2, [](const EncodedEvent& e) {
    const LegacyChange change = read_legacy(e, "key");
    return EncodedEvent{"PreferenceSet", 1, write_json([&](cereal::JSONOutputArchive& ar) {
                          ar(cereal::make_nvp("key", change.key),
                             cereal::make_nvp("type", std::string("string")),
                             cereal::make_nvp("value", change.text));
                        })};
  });
  return registry;
}

TEST(EventUpcasting, LegacyTypeIsUpcastStepByStepToPreferenceSet) {
  const UpcasterRegistry upcasters = legacy_upcasters();
  EXPECT_EQ(
      decode({"PreferenceChanged", 1, R"({"name": "calendar.timezone", "text": "Europe/Berlin"})"},
             upcasters),
      EventData(PreferenceSet{"calendar.timezone", std::string("Europe/Berlin")}));
  EXPECT_EQ(
      decode({"PreferenceChanged", 2, R"({"key": "calendar.timezone", "text": "UTC"})"}, upcasters),
      EventData(PreferenceSet{"calendar.timezone", std::string("UTC")}));
  // Without the upcasters the legacy type is unknown.
  EXPECT_TRUE(contains(decode_refusal({"PreferenceChanged", 1, R"({"name": "a", "text": "b"})"}),
                       "cannot decode event PreferenceChanged version 1: unknown event type"));
}

TEST(EventUpcasting, CurrentVersionsAreNotUpcast) {
  UpcasterRegistry registry;
  registry.add("PreferenceReset", 1, [](const EncodedEvent&) -> EncodedEvent {
    throw std::logic_error("must not be called");
  });
  EXPECT_EQ(decode({"PreferenceReset", 1, R"({"key": "calendar.timezone"})"}, registry),
            EventData(PreferenceReset{"calendar.timezone"}));
}

TEST(EventUpcasting, OldVersionOfAKnownTypeIsUpcast) {
  UpcasterRegistry registry;
  registry.add("PreferenceReset", 0, [](const EncodedEvent& e) {
    return EncodedEvent{"PreferenceReset", 1, e.payload_json};
  });
  EXPECT_EQ(decode({"PreferenceReset", 0, R"({"key": "calendar.timezone"})"}, registry),
            EventData(PreferenceReset{"calendar.timezone"}));
  EXPECT_TRUE(contains(decode_refusal({"PreferenceReset", 0, R"({"key": "calendar.timezone"})"}),
                       "PreferenceReset version 0: no upcaster leads from this version to the "
                       "current version 1"));
}

TEST(EventUpcasting, LoopingUpcastersAreStopped) {
  UpcasterRegistry registry;
  registry.add("Ping", 1, [](const EncodedEvent& e) {
    return EncodedEvent{"Pong", 1, e.payload_json};
  });
  registry.add("Pong", 1, [](const EncodedEvent& e) {
    return EncodedEvent{"Ping", 1, e.payload_json};
  });
  EXPECT_TRUE(contains(decode_refusal({"Ping", 1, "{}"}, registry), "the upcasters loop"));
}

TEST(EventUpcasting, ADeadEndNamesWhereItStopped) {
  UpcasterRegistry registry;
  registry.add("PreferenceChanged", 1, [](const EncodedEvent& e) {
    return EncodedEvent{"PreferenceChanged", 2, e.payload_json};
  });
  const std::string message = decode_refusal({"PreferenceChanged", 1, "{}"}, registry);
  EXPECT_TRUE(contains(message,
                       "cannot decode event PreferenceChanged version 2 (upcast from "
                       "PreferenceChanged version 1): unknown event type"))
      << message;
}

TEST(EventUpcasting, AFailingUpcasterIsReportedAsCorruptData) {
  const std::string message =
      decode_refusal({"PreferenceChanged", 1, R"({"text": "x"})"}, legacy_upcasters());
  EXPECT_TRUE(contains(message, "PreferenceChanged version 1: the upcaster failed")) << message;
}

TEST(EventUpcasting, RegistryRefusesASecondStepFromTheSamePlace) {
  UpcasterRegistry registry = legacy_upcasters();
  EXPECT_NE(registry.find("PreferenceChanged", 1), nullptr);
  EXPECT_EQ(registry.find("PreferenceChanged", 3), nullptr);
  EXPECT_THROW(registry.add("PreferenceChanged", 1, [](const EncodedEvent& e) { return e; }),
               UsageError);
  EXPECT_THROW(registry.add("PreferenceChanged", 5, Upcaster{}), UsageError);
}

// ---- corrupt payloads ----

TEST(EventDecode, RefusesMalformedJson) {
  for (const char* payload : {"", "{", R"({"key": "calendar.timezone")", R"({"key": "a"} x)",
                              "nonsense", R"({"key": 'a'})"}) {
    const std::string message = decode_refusal({"PreferenceReset", 1, payload});
    EXPECT_TRUE(contains(message, "cannot decode event PreferenceReset version 1: malformed JSON"))
        << payload << " -> " << message;
  }
}

TEST(EventDecode, RefusesAPayloadThatIsNotAnObject) {
  for (const char* payload : {R"(["calendar.timezone"])", R"("calendar.timezone")", "null", "7"}) {
    const std::string message = decode_refusal({"PreferenceReset", 1, payload});
    EXPECT_TRUE(contains(message, "PreferenceReset version 1: the JSON is not an object"))
        << payload << " -> " << message;
  }
}

TEST(EventDecode, RefusesAnUnknownType) {
  EXPECT_EQ(decode_refusal({"PreferenceExploded", 1, "{}"}),
            "cannot decode event PreferenceExploded version 1: unknown event type and no upcaster "
            "from it; payload \"{}\"");
}

TEST(EventDecode, RefusesAVersionNewerThanThisBuild) {
  const std::string message =
      decode_refusal({"PreferenceSet", 2, R"({"key": "k", "type": "int", "value": 1})"});
  EXPECT_TRUE(contains(message,
                       "cannot decode event PreferenceSet version 2: the version is "
                       "newer than this build's 1"))
      << message;
}

TEST(EventDecode, RefusesAMissingField) {
  EXPECT_TRUE(contains(decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "int"})"}),
                       "PreferenceSet version 1: missing field \"value\""));
  EXPECT_TRUE(contains(decode_refusal({"PreferenceReset", 1, "{}"}), "missing field \"key\""));
  EXPECT_TRUE(contains(decode_refusal({"PreferenceDeprecated", 1, R"({"key": "k"})"}),
                       "missing field \"note\""));
  EXPECT_TRUE(
      contains(decode_refusal(
                   {"PreferenceDefined", 1,
                    R"({"key": "k", "max": null, "min": null, "type": "string", "default": null, )"
                    R"("pattern": null, "max_items": null, "deprecated": false, )"
                    R"("max_length": null, "description": "", "deprecation_note": ""})"}),
               "PreferenceDefined version 1: missing field \"allowed_values\""));
}

TEST(EventDecode, RefusesAFieldOfTheWrongJsonType) {
  EXPECT_TRUE(contains(
      decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "int", "value": "30"})"}),
      "field \"value\" is not a 64-bit integer"));
  EXPECT_TRUE(
      contains(decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "int", "value": 2.5})"}),
               "field \"value\" is not a 64-bit integer"));
  EXPECT_TRUE(
      contains(decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "bool", "value": 1})"}),
               "field \"value\" is not a bool"));
  EXPECT_TRUE(contains(
      decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "string_list", "value": "a"})"}),
      "field \"value\" is not an array of strings"));
  EXPECT_TRUE(
      contains(decode_refusal({"PreferenceSet", 1,
                               R"({"key": "k", "type": "string_list", "value": ["a", 1]})"}),
               "field \"value\" is not an array of strings"));
  EXPECT_TRUE(contains(decode_refusal({"PreferenceReset", 1, R"({"key": 17})"}),
                       "field \"key\" is not a string"));
  EXPECT_TRUE(contains(
      decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "double", "value": NaN})"}),
      "field \"value\" is not a finite number"));
}

TEST(EventDecode, RefusesAnUnknownValueType) {
  EXPECT_TRUE(contains(
      decode_refusal({"PreferenceSet", 1, R"({"key": "k", "type": "decimal", "value": 1})"}),
      "field \"type\" names an unknown value type \"decimal\""));
}

// ---- metadata ----

TEST(EventMetadata, EncodesNamedFieldsIncludingEmptyOnes) {
  EXPECT_EQ(encode_metadata(
                Metadata{"ada@example.com", "calendar-web", "moved to Berlin", "req-7f3a", ""}),
            R"({"actor":"ada@example.com","source":"calendar-web","reason":"moved to Berlin",)"
            R"("correlation_id":"req-7f3a","causation_id":""})");
}

TEST(EventMetadata, DecodesStoredMetadataAndToleratesMissingFields) {
  EXPECT_EQ(decode_metadata(
                R"({"actor": "ada@example.com", "reason": "moved", "source": "calendar-web", )"
                R"("causation_id": "cmd-12", "correlation_id": "req-7f3a"})"),
            (Metadata{"ada@example.com", "calendar-web", "moved", "req-7f3a", "cmd-12"}));
  EXPECT_EQ(decode_metadata(R"({"actor": "ada@example.com"})"),
            (Metadata{"ada@example.com", "", "", "", ""}));
  EXPECT_EQ(decode_metadata("{}"), Metadata{});
  EXPECT_EQ(decode_metadata(R"({"actor": null, "source": "calendar-web", "extra": 1})"),
            (Metadata{"", "calendar-web", "", "", ""}));
}

TEST(EventMetadata, RefusesMalformedMetadata) {
  for (const char* json : {"", "{", "[]", R"({"actor": 5})", R"({"actor": "a"} {})"}) {
    EXPECT_THROW((void)decode_metadata(json), CorruptDataError) << json;
  }
  try {
    (void)decode_metadata(R"({"actor": 5})");
  } catch (const CorruptDataError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot decode event metadata: field \"actor\" is not a string"))
        << e.what();
  }
}

RC_GTEST_PROP(EventMetadata, RoundTrips, ()) {
  const Metadata metadata = *metadata_gen();
  RC_ASSERT(decode_metadata(encode_metadata(metadata)) == metadata);
}

// ---- event ids ----

TEST(Event, NewEventIdIsALowercaseVersion4Uuid) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_event_id();
    ASSERT_EQ(id.size(), 36u) << id;
    for (std::size_t k = 0; k < id.size(); ++k) {
      if (k == 8 || k == 13 || k == 18 || k == 23) {
        ASSERT_EQ(id[k], '-') << id;
      } else {
        ASSERT_TRUE((id[k] >= '0' && id[k] <= '9') || (id[k] >= 'a' && id[k] <= 'f')) << id;
      }
    }
    EXPECT_EQ(id[14], '4') << id;
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace prefstore
