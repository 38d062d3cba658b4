// The fold: state = apply(state, event), for a user's preferences and for the definitions.
#include "prefstore/preference_state.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace prefstore {
namespace {

Timestamp at(std::int64_t seconds) {
  return from_unix_micros(seconds * 1000000);
}

RecordedEvent recorded(std::int64_t version, EventData data, std::int64_t seconds,
                       std::string actor = "ada@example.com") {
  RecordedEvent e;
  e.stream_id = "user-17";
  e.stream_version = version;
  e.global_position = 100 + version;
  e.event_id = "00000000-0000-4000-8000-00000000000" + std::to_string(version % 10);
  e.data = std::move(data);
  e.metadata.actor = std::move(actor);
  e.metadata.source = "calendar-web";
  e.recorded_at = at(seconds);
  return e;
}

PreferenceDefinition timezone_definition(std::string description) {
  PreferenceDefinition d;
  d.key = "calendar.timezone";
  d.type = ValueType::string;
  d.default_value = std::string("UTC");
  d.description = std::move(description);
  return d;
}

TEST(PreferenceState, SetAddsTheKeyWithItsProvenance) {
  PreferenceState state;
  apply(state, recorded(1, PreferenceSet{"calendar.timezone", std::string("Europe/Berlin")}, 10));
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state.at("calendar.timezone"),
            (PreferenceEntry{std::string("Europe/Berlin"), 1, at(10), "ada@example.com", 101}));
}

TEST(PreferenceState, SetOverwritesTheKey) {
  PreferenceState state;
  apply(state,
        recorded(1, PreferenceSet{"calendar.default_meeting_minutes", std::int64_t{30}}, 10));
  apply(state, recorded(2, PreferenceSet{"calendar.timezone", std::string("UTC")}, 11));
  apply(state, recorded(3, PreferenceSet{"calendar.default_meeting_minutes", std::int64_t{45}}, 12,
                        "grace@example.com"));
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state.at("calendar.default_meeting_minutes"),
            (PreferenceEntry{std::int64_t{45}, 3, at(12), "grace@example.com", 103}));
  EXPECT_EQ(state.at("calendar.timezone").version, 2);
}

TEST(PreferenceState, ResetRemovesTheKey) {
  PreferenceState state;
  apply(state, recorded(1, PreferenceSet{"calendar.timezone", std::string("UTC")}, 10));
  apply(state, recorded(2, PreferenceSet{"calendar.show_weekends", false}, 11));
  apply(state, recorded(3, PreferenceReset{"calendar.timezone"}, 12));
  ASSERT_EQ(state.size(), 1u);
  EXPECT_TRUE(state.contains("calendar.show_weekends"));
}

TEST(PreferenceState, ResetOfAnAbsentKeyChangesNothing) {
  PreferenceState state;
  apply(state, recorded(1, PreferenceSet{"calendar.show_weekends", false}, 10));
  const PreferenceState before = state;
  apply(state, recorded(2, PreferenceReset{"calendar.timezone"}, 11));
  EXPECT_EQ(state, before);
}

TEST(PreferenceState, SetStoresTheNormalizedValue) {
  PreferenceState state;
  apply(state, recorded(1, PreferenceSet{"calendar.offset", -0.0}, 10));
  EXPECT_FALSE(std::signbit(std::get<double>(state.at("calendar.offset").value)));
}

TEST(PreferenceState, DefinitionEventsLeaveItUnchanged) {
  PreferenceState state;
  apply(state, recorded(1, PreferenceSet{"calendar.timezone", std::string("UTC")}, 10));
  const PreferenceState before = state;
  apply(state, recorded(2, PreferenceDefined{timezone_definition("")}, 11));
  apply(state, recorded(3, PreferenceDeprecated{"calendar.timezone", "gone"}, 12));
  EXPECT_EQ(state, before);
}

TEST(DefinitionCatalog, DefineAddsTheDefinition) {
  DefinitionCatalog catalog;
  apply(catalog, recorded(1, PreferenceDefined{timezone_definition("Time zone")}, 10));
  ASSERT_EQ(catalog.size(), 1u);
  EXPECT_EQ(catalog.at("calendar.timezone"),
            (DefinitionEntry{timezone_definition("Time zone"), 1, at(10), at(10), "ada@example.com",
                             101}));
}

TEST(DefinitionCatalog, RedefineReplacesTheDefinitionAndKeepsDefinedAt) {
  DefinitionCatalog catalog;
  apply(catalog, recorded(1, PreferenceDefined{timezone_definition("Time zone")}, 10));
  apply(catalog, recorded(2, PreferenceDefined{timezone_definition("IANA time zone")}, 20,
                          "grace@example.com"));
  EXPECT_EQ(catalog.at("calendar.timezone"),
            (DefinitionEntry{timezone_definition("IANA time zone"), 2, at(10), at(20),
                             "grace@example.com", 102}));
}

TEST(DefinitionCatalog, DeprecateMarksTheDefinitionWithItsNote) {
  DefinitionCatalog catalog;
  apply(catalog, recorded(1, PreferenceDefined{timezone_definition("Time zone")}, 10));
  apply(catalog, recorded(2, PreferenceDeprecated{"calendar.timezone", "use calendar.tz"}, 30));
  PreferenceDefinition expected = timezone_definition("Time zone");
  expected.deprecated = true;
  expected.deprecation_note = "use calendar.tz";
  EXPECT_EQ(catalog.at("calendar.timezone"),
            (DefinitionEntry{expected, 2, at(10), at(30), "ada@example.com", 102}));
}

TEST(DefinitionCatalog, DeprecatingAnUndefinedKeyChangesNothing) {
  DefinitionCatalog catalog;
  apply(catalog, recorded(1, PreferenceDeprecated{"calendar.timezone", "gone"}, 10));
  EXPECT_TRUE(catalog.empty());
}

TEST(DefinitionCatalog, PreferenceEventsLeaveItUnchanged) {
  DefinitionCatalog catalog;
  apply(catalog, recorded(1, PreferenceDefined{timezone_definition("Time zone")}, 10));
  const DefinitionCatalog before = catalog;
  apply(catalog, recorded(2, PreferenceSet{"calendar.timezone", std::string("UTC")}, 11));
  apply(catalog, recorded(3, PreferenceReset{"calendar.timezone"}, 12));
  EXPECT_EQ(catalog, before);
}

}  // namespace
}  // namespace prefstore
