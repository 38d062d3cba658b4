// Time travel without a database: the snapshot codec (round trip over random states, a golden
// encoding, and the refusal of every kind of corrupt bytes), the PreferencesRestored event (round
// trip, golden payload, refusals), its fold, StateDiffBuilder and restore_changes.
//
// Oracles: hand-built bytes of format version 1 (written here byte by byte from the layout in
// snapshot_codec.hpp), exact JSON strings, and exact renderings of states (tests/support/
// render.hpp: doubles in hexadecimal, so -0.0 and 0.0 differ).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "prefstore/as_of.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/event.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/snapshot_codec.hpp"
#include "prefstore/state_diff.hpp"
#include "property.hpp"
#include "render.hpp"
#include "unicode.hpp"

namespace prefstore {
namespace {

using prefstore::testing::check_property;
using prefstore::testing::quoted;
using prefstore::testing::render;
using prefstore::testing::render_values;
using prefstore::testing::utf8;

// ------------------------------------------------------------------------------------------
// Generators.

// Every scalar value but the surrogates; NUL only when `first` is 0 (the codec stores bytes with
// a length; event payloads refuse NUL).
rc::Gen<std::uint32_t> code_point_gen(std::uint32_t first = 0) {
  return rc::gen::oneOf(rc::gen::inRange<std::uint32_t>(first, 0x80),
                        rc::gen::inRange<std::uint32_t>(0x80, 0x800),
                        rc::gen::inRange<std::uint32_t>(0x800, 0xD800),
                        rc::gen::inRange<std::uint32_t>(0xE000, 0x10000),
                        rc::gen::inRange<std::uint32_t>(0x10000, 0x110000));
}

rc::Gen<std::string> unicode_gen(std::uint32_t first = 0) {
  return rc::gen::map(rc::gen::container<std::vector<std::uint32_t>>(code_point_gen(first)),
                      [](const std::vector<std::uint32_t>& cps) {
                        std::string out;
                        for (const auto cp : cps) out += utf8(cp);
                        return out;
                      });
}

rc::Gen<double> finite_double_gen() {
  return rc::gen::oneOf(
      rc::gen::element(0.0, -0.0, 1.0, -2.5, 1e-300, std::numeric_limits<double>::max(),
                       std::numeric_limits<double>::lowest(),
                       std::numeric_limits<double>::denorm_min()),
      rc::gen::suchThat(
          rc::gen::map(rc::gen::arbitrary<std::uint64_t>(),
                       [](std::uint64_t bits) { return std::bit_cast<double>(bits); }),
          [](double d) { return std::isfinite(d); }));
}

// first: the smallest code point in strings (1: storable in an event payload).
rc::Gen<Value> value_gen(std::uint32_t first = 0) {
  return rc::gen::oneOf(
      rc::gen::map(rc::gen::arbitrary<bool>(), [](bool b) { return Value(b); }),
      rc::gen::map(rc::gen::arbitrary<std::int64_t>(), [](std::int64_t i) { return Value(i); }),
      rc::gen::map(finite_double_gen(), [](double d) { return Value(d); }),
      rc::gen::map(unicode_gen(first), [](std::string s) { return Value(std::move(s)); }),
      rc::gen::map(rc::gen::container<StringList>(unicode_gen(first)),
                   [](StringList l) { return Value(std::move(l)); }));
}

rc::Gen<PreferenceEntry> entry_gen() {
  return rc::gen::apply(
      [](Value v, std::int64_t version, std::int64_t micros, std::string by, std::int64_t pos) {
        return PreferenceEntry{std::move(v), version, from_unix_micros(micros), std::move(by), pos};
      },
      value_gen(), rc::gen::arbitrary<std::int64_t>(), rc::gen::arbitrary<std::int64_t>(),
      unicode_gen(), rc::gen::arbitrary<std::int64_t>());
}

rc::Gen<PreferenceState> state_gen() {
  return rc::gen::map(rc::gen::container<std::vector<std::pair<std::string, PreferenceEntry>>>(
                          rc::gen::pair(unicode_gen(), entry_gen())),
                      [](std::vector<std::pair<std::string, PreferenceEntry>> entries) {
                        PreferenceState state;
                        for (auto& [key, entry] : entries)
                          state.insert_or_assign(key, std::move(entry));
                        return state;
                      });
}

// A small key space, so that states and restores overlap.
const std::vector<std::string> kKeys = {"a.one", "a.two", "b.three", "c.four", "c.five"};

// A fold-like state: values as a store returns them (-0.0 stored as 0.0).
rc::Gen<PreferenceState> small_state_gen() {
  return rc::gen::map(
      rc::gen::container<std::vector<std::pair<std::string, Value>>>(
          rc::gen::pair(rc::gen::elementOf(kKeys), value_gen())),
      [](const std::vector<std::pair<std::string, Value>>& values) {
        PreferenceState state;
        std::int64_t version = 0;
        for (const auto& [key, value] : values) {
          ++version;
          state.insert_or_assign(
              key, PreferenceEntry{normalized(value), version, from_unix_micros(version * 1000),
                                   "gen", version * 10});
        }
        return state;
      });
}

// ------------------------------------------------------------------------------------------
// Hand-built bytes of snapshot format version 1 (little-endian, see snapshot_codec.hpp).

class Bytes {
 public:
  Bytes() { m_bytes += '\x01'; }  // cereal's portable archive: "written little-endian"
  Bytes& u8(std::uint8_t v) {
    m_bytes += static_cast<char>(v);
    return *this;
  }
  Bytes& u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) m_bytes += static_cast<char>((v >> (8 * i)) & 0xFF);
    return *this;
  }
  Bytes& i64(std::int64_t v) { return u64(static_cast<std::uint64_t>(v)); }
  Bytes& f64(double d) { return u64(std::bit_cast<std::uint64_t>(d)); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    m_bytes.append(s);
    return *this;
  }
  Bytes& raw(std::string_view s) {
    m_bytes.append(s);
    return *this;
  }
  // One entry: key, type, the value written by `value`, then version, time, actor, position.
  template <class WriteValue>
  Bytes& entry(std::string_view key, std::uint8_t type, WriteValue&& value, std::int64_t version,
               std::int64_t micros, std::string_view by, std::int64_t position) {
    str(key).u8(type);
    value(*this);
    return i64(version).i64(micros).str(by).i64(position);
  }
  [[nodiscard]] const std::string& str() const { return m_bytes; }

 private:
  std::string m_bytes;
};

// Every value type once, keys in byte order (the order of the map).
PreferenceState sample_state() {
  PreferenceState s;
  s["a.bool"] = {Value(true), 1, from_unix_micros(1'700'000'000'000'001), "ada", 11};
  s["b.int"] = {Value(std::int64_t{-42}), 2, from_unix_micros(1'700'000'000'000'002), "", 12};
  s["c.double"] = {Value(2.5), 3, from_unix_micros(-5), "grace", 13};
  s["d.string"] = {Value(std::string("Zoë ✓")), 4, from_unix_micros(0), "ops", 14};
  s["e.list"] = {Value(StringList{"email", "", "push"}), 5, from_unix_micros(7), "x", 15};
  return s;
}

std::string sample_bytes() {
  return Bytes()
      .u64(5)
      .entry(
          "a.bool", 0, [](Bytes& b) { b.u8(1); }, 1, 1'700'000'000'000'001, "ada", 11)
      .entry(
          "b.int", 1, [](Bytes& b) { b.i64(-42); }, 2, 1'700'000'000'000'002, "", 12)
      .entry(
          "c.double", 2, [](Bytes& b) { b.f64(2.5); }, 3, -5, "grace", 13)
      .entry(
          "d.string", 3, [](Bytes& b) { b.str("Zoë ✓"); }, 4, 0, "ops", 14)
      .entry(
          "e.list", 4, [](Bytes& b) { b.u64(3).str("email").str("").str("push"); }, 5, 7, "x", 15)
      .str();
}

// decode_snapshot_state must refuse `bytes` with a CorruptDataError; returns its message.
std::string refusal(const std::string& bytes, int format = kSnapshotFormatVersion) {
  try {
    const PreferenceState state = decode_snapshot_state(bytes, format);
    ADD_FAILURE() << "decoded without error into:\n" << render(state);
  } catch (const CorruptDataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than CorruptDataError: " << e.what();
  }
  return {};
}

// ------------------------------------------------------------------------------------------
// Snapshot codec.

TEST(SnapshotCodec, RoundTripsRandomStatesExactly) {
  check_property(
      [] {
        const auto state = *state_gen();
        const std::string bytes = encode_snapshot_state(state);
        const PreferenceState back = decode_snapshot_state(bytes, kSnapshotFormatVersion);
        RC_ASSERT(render(back) == render(state));
        RC_ASSERT(back.size() == state.size());
        // The encoding is a function of the state: encoding the decoded state gives the bytes.
        RC_ASSERT(encode_snapshot_state(back) == bytes);
      },
      300, 30);
}

TEST(SnapshotCodec, EmptyStateRoundTrips) {
  const std::string bytes = encode_snapshot_state({});
  EXPECT_EQ(bytes, Bytes().u64(0).str());
  EXPECT_TRUE(decode_snapshot_state(bytes, kSnapshotFormatVersion).empty());
}

TEST(SnapshotCodec, FormatVersion1IsTheDocumentedLayout) {
  EXPECT_EQ(kSnapshotFormatVersion, 1);
  // Golden: bytes built from the documented layout decode to the sample, and the sample encodes
  // to exactly those bytes.
  EXPECT_EQ(render(decode_snapshot_state(sample_bytes(), 1)), render(sample_state()));
  EXPECT_EQ(encode_snapshot_state(sample_state()), sample_bytes());
}

TEST(SnapshotCodec, RefusesUnknownFormatVersions) {
  const std::string bytes = encode_snapshot_state(sample_state());
  for (const int version : {0, 2, 99, -1}) {
    const std::string message = refusal(bytes, version);
    EXPECT_NE(message.find(std::to_string(version)), std::string::npos)
        << "version " << version << ": " << message;
  }
}

TEST(SnapshotCodec, RefusesEveryTruncation) {
  const std::string bytes = sample_bytes();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE("truncated to " + std::to_string(n) + " of " + std::to_string(bytes.size()));
    (void)refusal(bytes.substr(0, n));
  }
  // The empty state too (its only bytes are the endianness flag and the count).
  const std::string empty = encode_snapshot_state({});
  for (std::size_t n = 0; n < empty.size(); ++n) (void)refusal(empty.substr(0, n));
}

TEST(SnapshotCodec, RefusesTrailingBytes) {
  for (const std::string& tail : {std::string(1, '\0'), std::string("x"), std::string(8, '\0')}) {
    const std::string message = refusal(sample_bytes() + tail);
    EXPECT_NE(message.find("left over"), std::string::npos) << message;
    (void)refusal(encode_snapshot_state({}) + tail);
  }
}

TEST(SnapshotCodec, RefusesLengthsLongerThanTheDataWithoutAllocatingThem) {
  // Each of these would ask for a terabyte (or more) if the length were trusted: a trusted
  // length ends in std::bad_alloc or std::length_error, not in CorruptDataError.
  const std::uint64_t huge[] = {std::numeric_limits<std::uint64_t>::max(), std::uint64_t{1} << 62,
                                std::uint64_t{1} << 40};
  for (const std::uint64_t n : huge) {
    SCOPED_TRACE("length " + std::to_string(n));
    // The entry count.
    (void)refusal(Bytes().u64(n).str());
    // A key length.
    (void)refusal(Bytes().u64(1).u64(n).raw("a.key").u8(0).u8(1).str());
    // A string value's length.
    (void)refusal(
        Bytes().u64(1).str("k").u8(3).u64(n).raw("abc").i64(1).i64(1).str("").i64(1).str());
    // A list's item count and a list item's length.
    (void)refusal(Bytes().u64(1).str("k").u8(4).u64(n).str("x").i64(1).i64(1).str("").i64(1).str());
    (void)refusal(
        Bytes().u64(1).str("k").u8(4).u64(1).u64(n).raw("x").i64(1).i64(1).str("").i64(1).str());
    // The actor's length.
    (void)refusal(Bytes().u64(1).str("k").u8(0).u8(1).i64(1).i64(1).u64(n).raw("ada").i64(1).str());
  }
  // One byte more than there is: the key "abc" claims 4 bytes at the very end.
  (void)refusal(Bytes().u64(1).u64(4).raw("abc").str());
}

TEST(SnapshotCodec, RefusesNonFiniteDoubles) {
  for (const double d :
       {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
        std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::signaling_NaN()}) {
    const std::string message = refusal(Bytes()
                                            .u64(1)
                                            .entry(
                                                "k.d", 2, [d](Bytes& b) { b.f64(d); }, 1, 1, "a", 1)
                                            .str());
    EXPECT_NE(message.find("finite"), std::string::npos) << message;
  }
  // The same layout with a finite double decodes (the refusal is about the value).
  const auto ok =
      decode_snapshot_state(Bytes()
                                .u64(1)
                                .entry(
                                    "k.d", 2, [](Bytes& b) { b.f64(-1.5); }, 1, 1, "a", 1)
                                .str(),
                            1);
  EXPECT_EQ(std::get<double>(ok.at("k.d").value), -1.5);
}

TEST(SnapshotCodec, RefusesInvalidUtf8) {
  const std::string bad[] = {"\xff", "\xc3", "\xed\xa0\x80" /* surrogate */, "\xc0\xaf", "ok\x80"};
  for (const std::string& b : bad) {
    SCOPED_TRACE("bytes " + quoted(b));
    // In a key, a string value, a list item and the actor.
    (void)refusal(Bytes()
                      .u64(1)
                      .entry(
                          b, 0, [](Bytes& x) { x.u8(1); }, 1, 1, "a", 1)
                      .str());
    (void)refusal(Bytes()
                      .u64(1)
                      .entry(
                          "k", 3, [&](Bytes& x) { x.str(b); }, 1, 1, "a", 1)
                      .str());
    (void)refusal(Bytes()
                      .u64(1)
                      .entry(
                          "k", 4, [&](Bytes& x) { x.u64(2).str("ok").str(b); }, 1, 1, "a", 1)
                      .str());
    (void)refusal(Bytes()
                      .u64(1)
                      .entry(
                          "k", 0, [](Bytes& x) { x.u8(0); }, 1, 1, b, 1)
                      .str());
  }
}

TEST(SnapshotCodec, RefusesKeysOutOfOrderOrRepeated) {
  const auto one = [](Bytes& b) { b.u8(1); };
  const std::string message =
      refusal(Bytes().u64(2).entry("b", 0, one, 1, 1, "", 1).entry("a", 0, one, 2, 2, "", 2).str());
  EXPECT_NE(message.find("order"), std::string::npos) << message;
  (void)refusal(
      Bytes().u64(2).entry("a", 0, one, 1, 1, "", 1).entry("a", 0, one, 2, 2, "", 2).str());
  // In order, the same bytes decode.
  EXPECT_EQ(
      decode_snapshot_state(
          Bytes().u64(2).entry("a", 0, one, 1, 1, "", 1).entry("b", 0, one, 2, 2, "", 2).str(), 1)
          .size(),
      2u);
}

TEST(SnapshotCodec, RefusesUnknownValueTypesAndBadBools) {
  for (const std::uint8_t type : {5, 6, 255}) {
    (void)refusal(Bytes()
                      .u64(1)
                      .entry(
                          "k", type, [](Bytes& b) { b.u8(1); }, 1, 1, "", 1)
                      .str());
  }
  (void)refusal(Bytes()
                    .u64(1)
                    .entry(
                        "k", 0, [](Bytes& b) { b.u8(2); }, 1, 1, "", 1)
                    .str());
}

TEST(SnapshotCodec, RefusesEveryCorruptionOfTheSampleOrDecodesItIntoAValidState) {
  // A single flipped bit anywhere either is refused with CorruptDataError or decodes (a flip in
  // a number is undetectable here: the checksum beside the bytes catches it). Nothing else.
  const std::string bytes = sample_bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      try {
        (void)decode_snapshot_state(flipped, 1);
      } catch (const CorruptDataError&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " bit " << bit << ": " << e.what();
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// PreferencesRestored: encoding.

Timestamp at(const char* text) {
  const auto t = parse_timestamp(text);
  if (!t) throw std::runtime_error(std::string("bad timestamp in test: ") + text);
  return *t;
}

PreferencesRestored sample_restore() {
  return PreferencesRestored{at("2026-11-30T08:00:00Z"),
                             {{"calendar.default_meeting_minutes", Value(std::int64_t{30})},
                              {"calendar.timezone", std::nullopt},
                              {"calendar.show_weekends", Value(false)},
                              {"calendar.reminders.lead_hours", Value(2.5)},
                              {"calendar.title", Value(std::string("Zoë \"focus\""))},
                              {"notifications.channels", Value(StringList{"email", "push"})}}};
}

TEST(PreferencesRestoredEvent, TypeNameAndSchemaVersionArePersisted) {
  EXPECT_STREQ(event_type_name(EventData(PreferencesRestored{})), "PreferencesRestored");
  EXPECT_EQ(current_schema_version("PreferencesRestored"), 1);
  EXPECT_EQ(encode(sample_restore()).event_type, "PreferencesRestored");
  EXPECT_EQ(encode(sample_restore()).schema_version, 1);
}

TEST(PreferencesRestoredEvent, EncodesTheDocumentedPayload) {
  EXPECT_EQ(encode(sample_restore()).payload_json,
            R"({"as_of":"2026-11-30T08:00:00.000000Z","changes":[)"
            R"({"key":"calendar.default_meeting_minutes","type":"int","value":30},)"
            R"({"key":"calendar.timezone","reset":true},)"
            R"({"key":"calendar.show_weekends","type":"bool","value":false},)"
            R"({"key":"calendar.reminders.lead_hours","type":"double","value":2.5},)"
            R"({"key":"calendar.title","type":"string","value":"Zoë \"focus\""},)"
            R"({"key":"notifications.channels","type":"string_list","value":["email","push"]}]})");
  EXPECT_EQ(encode(PreferencesRestored{at("2026-01-02T03:04:05.000006Z"), {}}).payload_json,
            R"({"as_of":"2026-01-02T03:04:05.000006Z","changes":[]})");
}

TEST(PreferencesRestoredGolden, Version1AsJsonbReturnsIt) {
  // PostgreSQL's jsonb output: keys sorted by length then bytes, a space after ':' and ','.
  const std::string stored =
      R"({"as_of": "2026-11-30T08:00:00.000000Z", "changes": [)"
      R"({"key": "calendar.default_meeting_minutes", "type": "int", "value": 30}, )"
      R"({"key": "calendar.timezone", "reset": true}, )"
      R"({"key": "calendar.show_weekends", "type": "bool", "value": false}, )"
      R"({"key": "calendar.reminders.lead_hours", "type": "double", "value": 2.5}, )"
      R"({"key": "calendar.title", "type": "string", "value": "Zoë \"focus\""}, )"
      R"({"key": "notifications.channels", "type": "string_list", "value": ["email", "push"]}]})";
  EXPECT_EQ(decode({"PreferencesRestored", 1, stored}), EventData(sample_restore()));
  // Field order does not matter.
  EXPECT_EQ(decode({"PreferencesRestored", 1,
                    R"({"changes": [{"reset": true, "key": "a.b"}], "as_of": "2026-11-30"})"}),
            EventData(PreferencesRestored{at("2026-11-30T00:00:00Z"), {{"a.b", std::nullopt}}}));
}

// A restored value, or a reset.
rc::Gen<std::optional<Value>> optional_value_gen() {
  return rc::gen::oneOf(
      rc::gen::just(std::optional<Value>()),
      rc::gen::map(value_gen(1), [](Value v) { return std::optional<Value>(v); }));
}

rc::Gen<PreferencesRestored> restored_gen() {
  return rc::gen::apply(
      [](std::int64_t micros, const std::vector<std::pair<std::string, std::optional<Value>>>& cs) {
        PreferencesRestored e;
        e.as_of = from_unix_micros(micros);
        std::set<std::string> seen;
        for (const auto& [key, value] : cs) {
          if (seen.insert(key).second) e.changes.push_back({key, value});
        }
        return e;
      },
      // Years 1970 to 9999: what the ISO 8601 text can hold.
      rc::gen::inRange<std::int64_t>(0, 253'402'300'799'999'999),
      rc::gen::container<std::vector<std::pair<std::string, std::optional<Value>>>>(
          rc::gen::pair(rc::gen::elementOf(kKeys), optional_value_gen())));
}

TEST(PreferencesRestoredEvent, RoundTripsRandomEvents) {
  check_property(
      [] {
        const auto event = *restored_gen();
        // What a store keeps: values normalized (-0.0 as 0.0), strings storable (no NUL).
        PreferencesRestored expected = event;
        for (auto& change : expected.changes) {
          if (change.value) change.value = normalized(*change.value);
        }
        const EncodedEvent encoded = encode(event);
        const EventData back = decode(encoded);
        RC_ASSERT(std::holds_alternative<PreferencesRestored>(back));
        const auto& restored = std::get<PreferencesRestored>(back);
        RC_ASSERT(to_unix_micros(restored.as_of) == to_unix_micros(expected.as_of));
        RC_ASSERT(render(restored.changes) == render(expected.changes));
      },
      200, 20);
}

// decode must refuse the payload with CorruptDataError; returns its message.
std::string restored_refusal(const std::string& payload) {
  try {
    (void)decode({"PreferencesRestored", 1, payload});
    ADD_FAILURE() << "decoded without error: " << payload;
  } catch (const CorruptDataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than CorruptDataError for " << payload << ": "
                  << e.what();
  }
  return {};
}

TEST(PreferencesRestoredDecode, RefusesAMissingOrBadAsOf) {
  EXPECT_NE(restored_refusal(R"({"changes": []})").find("as_of"), std::string::npos);
  EXPECT_NE(restored_refusal(R"({"as_of": "yesterday", "changes": []})").find("yesterday"),
            std::string::npos);
  EXPECT_NE(restored_refusal(R"({"as_of": 1700000000, "changes": []})").find("as_of"),
            std::string::npos);
  EXPECT_NE(restored_refusal(R"({"as_of": null, "changes": []})").find("as_of"), std::string::npos);
  EXPECT_NE(restored_refusal(R"({"as_of": "2026-13-01T00:00:00Z", "changes": []})").find("as_of"),
            std::string::npos);
}

TEST(PreferencesRestoredDecode, RefusesAChangeWithNeitherValueNorReset) {
  const std::string message =
      restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"key": "a.b"}]})");
  EXPECT_NE(message.find("a.b"), std::string::npos) << message;
  const std::string reset_false = restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"key": "a.b", "reset": false}]})");
  EXPECT_NE(reset_false.find("neither value nor reset"), std::string::npos) << reset_false;
}

TEST(PreferencesRestoredDecode, RefusesADuplicateKey) {
  const std::string message = restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": [)"
      R"({"key": "a.b", "type": "int", "value": 1}, {"key": "a.b", "reset": true}]})");
  EXPECT_NE(message.find("a.b"), std::string::npos) << message;
  EXPECT_NE(message.find("twice"), std::string::npos) << message;
}

TEST(PreferencesRestoredDecode, RefusesBadChanges) {
  // Missing, or not an array of objects.
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z"})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": 5})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": "a.b"})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [5]})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": ["a.b"]})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [null]})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": null})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [[]]})");
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [["a.b"]]})");
  (void)restored_refusal(R"({"as_of": ["2026-11-30T08:00:00Z"], "changes": []})");
  (void)restored_refusal(R"({"as_of": {}, "changes": []})");
  // A change without a key, a value of the wrong type, an unknown type, a value without type.
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"reset": true}]})");
  (void)restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"key": "a.b", "type": "int", "value": "x"}]})");
  (void)restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"key": "a.b", "type": "color", "value": 1}]})");
  (void)restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": [{"key": "a.b", "value": 1}]})");
}

TEST(PreferencesRestoredDecode, RefusesChangesThatAreAnObject) {
  // An object where the array belongs: must be CorruptDataError like every other malformed
  // payload, not an exception of the JSON library.
  (void)restored_refusal(R"({"as_of": "2026-11-30T08:00:00Z", "changes": {}})");
  (void)restored_refusal(
      R"({"as_of": "2026-11-30T08:00:00Z", "changes": {"key": "a.b", "reset": true}})");
}

// ------------------------------------------------------------------------------------------
// The fold of PreferencesRestored.

RecordedEvent recorded(EventData data, std::int64_t version, std::int64_t position,
                       std::int64_t micros, std::string actor) {
  RecordedEvent e;
  e.stream_id = "ada";
  e.stream_version = version;
  e.global_position = position;
  e.event_id = "id-" + std::to_string(version);
  e.data = std::move(data);
  e.metadata.actor = std::move(actor);
  e.metadata.reason = "reason " + std::to_string(version);
  e.recorded_at = from_unix_micros(micros);
  return e;
}

TEST(PreferencesRestoredFold, SetsAndResetsEachKeyWithTheEventsVersionPositionAndActor) {
  PreferenceState state;
  apply(state, recorded(PreferenceSet{"a.one", Value(std::int64_t{1})}, 1, 10, 1000, "ada"));
  apply(state, recorded(PreferenceSet{"a.two", Value(std::string("x"))}, 2, 11, 2000, "ada"));
  apply(state, recorded(PreferenceSet{"a.keep", Value(true)}, 3, 12, 3000, "ada"));
  apply(state, recorded(PreferencesRestored{from_unix_micros(1500),
                                            {{"a.one", Value(-0.0)},
                                             {"a.two", std::nullopt},
                                             {"a.new", Value(StringList{"p"})},
                                             {"a.never", std::nullopt}}},
                        4, 40, 4000, "ops@example.com"));
  PreferenceState expected;
  expected["a.one"] = {Value(0.0), 4, from_unix_micros(4000), "ops@example.com", 40};
  expected["a.keep"] = {Value(true), 3, from_unix_micros(3000), "ada", 12};
  expected["a.new"] = {Value(StringList{"p"}), 4, from_unix_micros(4000), "ops@example.com", 40};
  EXPECT_EQ(render(state), render(expected));

  // preference_changes lists each change, in order, values pointing into the event.
  const EventData event = PreferencesRestored{{}, {{"k.a", Value(true)}, {"k.b", std::nullopt}}};
  const auto changes = preference_changes(event);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "k.a");
  ASSERT_NE(changes[0].value, nullptr);
  EXPECT_EQ(*changes[0].value, Value(true));
  EXPECT_EQ(changes[1].key, "k.b");
  EXPECT_EQ(changes[1].value, nullptr);
  EXPECT_TRUE(preference_changes(PreferenceDeprecated{"k.a", "n"}).empty());
}

TEST(AsOfIncludes, EachKindComparesItsOwnField) {
  const RecordedEvent e = recorded(PreferenceReset{"a.b"}, 5, 50, 5000, "x");
  EXPECT_TRUE(AsOf::latest().includes(e));
  EXPECT_TRUE(AsOf::at_time(from_unix_micros(5000)).includes(e));
  EXPECT_FALSE(AsOf::at_time(from_unix_micros(4999)).includes(e));
  EXPECT_TRUE(AsOf::at_position(50).includes(e));
  EXPECT_FALSE(AsOf::at_position(49).includes(e));
  EXPECT_TRUE(AsOf::at_version(5).includes(e));
  EXPECT_FALSE(AsOf::at_version(4).includes(e));
  EXPECT_EQ(AsOf::at_version(7).describe(), "version 7");
  EXPECT_EQ(AsOf::at_position(42).describe(), "position 42");
  EXPECT_EQ(AsOf::latest().describe(), "now");
  EXPECT_EQ(AsOf::at_time(at("2026-11-30T08:00:00Z")).describe(), "2026-11-30T08:00:00.000000Z");
}

// ------------------------------------------------------------------------------------------
// StateDiffBuilder.

TEST(StateDiffBuilder, RecordsBeforeAfterCountAndTheLastChange) {
  PreferenceState from;
  apply(from, recorded(PreferenceSet{"a.min", Value(std::int64_t{30})}, 1, 10, 1000, "ada"));
  apply(from, recorded(PreferenceSet{"a.tz", Value(std::string("UTC"))}, 2, 11, 1100, "ada"));
  apply(from, recorded(PreferenceSet{"a.back", Value(true)}, 3, 12, 1200, "ada"));

  StateDiffBuilder builder(from);
  builder.apply(recorded(PreferenceSet{"a.min", Value(std::int64_t{45})}, 4, 20, 2000, "grace"));
  builder.apply(recorded(PreferenceSet{"a.back", Value(false)}, 5, 21, 2100, "grace"));
  builder.apply(recorded(PreferenceReset{"a.tz"}, 6, 22, 2200, "grace"));
  builder.apply(recorded(PreferenceSet{"a.back", Value(true)}, 7, 23, 2300, "linus"));
  builder.apply(recorded(PreferenceDeprecated{"a.min", "note"}, 8, 24, 2400, "nobody"));
  builder.apply(recorded(
      PreferencesRestored{from_unix_micros(1000),
                          {{"a.min", Value(std::int64_t{60})}, {"a.new", Value(std::string("n"))}}},
      9, 25, 2500, "ops"));

  const auto diffs = builder.result();
  ASSERT_EQ(diffs.size(), 3u);  // a.back came back: hidden

  EXPECT_EQ(diffs[0].key, "a.min");
  ASSERT_TRUE(diffs[0].before.has_value());
  ASSERT_TRUE(diffs[0].after.has_value());
  EXPECT_EQ(diffs[0].before->value, Value(std::int64_t{30}));
  EXPECT_EQ(diffs[0].before->version, 1);
  EXPECT_EQ(diffs[0].after->value, Value(std::int64_t{60}));
  EXPECT_EQ(diffs[0].after->version, 9);
  EXPECT_EQ(diffs[0].after->updated_by, "ops");
  EXPECT_EQ(diffs[0].changes, 2);  // the deprecation is not a change of the user's value
  EXPECT_EQ(diffs[0].last_version, 9);
  EXPECT_EQ(diffs[0].last_position, 25);
  EXPECT_EQ(to_unix_micros(diffs[0].last_changed_at), 2500);
  EXPECT_EQ(diffs[0].last_metadata.actor, "ops");
  EXPECT_EQ(diffs[0].last_metadata.reason, "reason 9");
  EXPECT_EQ(diffs[0].last_event_type, "PreferencesRestored");
  EXPECT_FALSE(diffs[0].net_unchanged());

  EXPECT_EQ(diffs[1].key, "a.new");
  EXPECT_FALSE(diffs[1].before.has_value());
  ASSERT_TRUE(diffs[1].after.has_value());
  EXPECT_EQ(diffs[1].after->value, Value(std::string("n")));
  EXPECT_EQ(diffs[1].changes, 1);

  EXPECT_EQ(diffs[2].key, "a.tz");
  ASSERT_TRUE(diffs[2].before.has_value());
  EXPECT_EQ(diffs[2].before->value, Value(std::string("UTC")));
  EXPECT_FALSE(diffs[2].after.has_value());
  EXPECT_EQ(diffs[2].changes, 1);
  EXPECT_EQ(diffs[2].last_metadata.actor, "grace");
  EXPECT_EQ(diffs[2].last_event_type, "PreferenceReset");

  const auto all = builder.result(true);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].key, "a.back");
  EXPECT_TRUE(all[0].net_unchanged());
  EXPECT_EQ(all[0].changes, 2);
  EXPECT_EQ(all[0].last_metadata.actor, "linus");
  ASSERT_TRUE(all[0].before && all[0].after);
  EXPECT_EQ(all[0].before->value, Value(true));
  EXPECT_EQ(all[0].after->value, Value(true));
  EXPECT_EQ(all[0].after->version, 7);

  // The builder's state is the fold of the same events.
  EXPECT_EQ(builder.state().size(), 3u);  // a.min, a.back, a.new
  EXPECT_EQ(builder.state().at("a.min").value, Value(std::int64_t{60}));
  EXPECT_EQ(builder.state().count("a.tz"), 0u);
}

TEST(StateDiffBuilder, NoEventsNoKeys) {
  PreferenceState from;
  from["a.b"] = {Value(true), 1, {}, "", 1};
  StateDiffBuilder builder(from);
  EXPECT_TRUE(builder.result(true).empty());
  EXPECT_EQ(render(builder.state()), render(from));
}

// ------------------------------------------------------------------------------------------
// restore_changes.

PreferenceState values(std::initializer_list<std::pair<const char*, Value>> items) {
  PreferenceState s;
  std::int64_t v = 0;
  for (const auto& [key, value] : items) s[key] = {value, ++v, from_unix_micros(v), "x", v};
  return s;
}

TEST(RestoreChanges, SetsWhatDiffersAndResetsWhatWasAtItsDefault) {
  const auto current = values({{"a.same", Value(std::int64_t{1})},
                               {"a.changed", Value(std::string("now"))},
                               {"a.added_since", Value(true)},
                               {"a.type_changed", Value(std::int64_t{2})}});
  const auto target = values({{"a.same", Value(std::int64_t{1})},
                              {"a.changed", Value(std::string("then"))},
                              {"a.removed_since", Value(StringList{"x"})},
                              {"a.type_changed", Value(2.0)}});
  const std::vector<RestoredPreference> expected = {
      {"a.added_since", std::nullopt},
      {"a.changed", Value(std::string("then"))},
      {"a.removed_since", Value(StringList{"x"})},
      {"a.type_changed", Value(2.0)},
  };
  EXPECT_EQ(render(restore_changes(current, target)), render(expected));
  EXPECT_TRUE(restore_changes(current, current).empty());
  EXPECT_TRUE(restore_changes({}, {}).empty());
}

TEST(RestoreChanges, OnlyTheGivenKeys) {
  const auto current = values({{"a.one", Value(std::int64_t{1})}, {"a.two", Value(true)}});
  const auto target = values({{"a.one", Value(std::int64_t{9})}, {"a.three", Value(false)}});
  EXPECT_EQ(render(restore_changes(current, target, std::set<std::string>{"a.one"})),
            render(std::vector<RestoredPreference>{{"a.one", Value(std::int64_t{9})}}));
  EXPECT_EQ(render(restore_changes(current, target, std::set<std::string>{"a.two", "a.zzz"})),
            render(std::vector<RestoredPreference>{{"a.two", std::nullopt}}));
  EXPECT_TRUE(restore_changes(current, target, std::set<std::string>{}).empty());
  EXPECT_TRUE(restore_changes(current, target, std::set<std::string>{"a.unknown"}).empty());
}

TEST(RestoreChanges, NegativeZeroEqualsZero) {
  EXPECT_TRUE(
      restore_changes(values({{"a.d", Value(0.0)}}), values({{"a.d", Value(-0.0)}})).empty());
  EXPECT_TRUE(
      restore_changes(values({{"a.d", Value(-0.0)}}), values({{"a.d", Value(0.0)}})).empty());
  // A restored -0.0 is written as 0.0.
  const auto changes =
      restore_changes(values({{"a.d", Value(1.0)}}), values({{"a.d", Value(-0.0)}}));
  ASSERT_EQ(changes.size(), 1u);
  ASSERT_TRUE(changes[0].value.has_value());
  EXPECT_FALSE(std::signbit(std::get<double>(*changes[0].value)));
}

TEST(RestoreChanges, ApplyingThemGivesTheTargetsValues) {
  check_property(
      [] {
        const auto current = *small_state_gen();
        const auto target = *small_state_gen();
        const auto changes = restore_changes(current, target);
        // Sorted by key, keys unique, never a change that changes nothing.
        for (std::size_t i = 1; i < changes.size(); ++i) {
          RC_ASSERT(changes[i - 1].key < changes[i].key);
        }
        PreferenceState restored = current;
        apply(restored, recorded(PreferencesRestored{{}, changes}, 100, 1000, 1, "restore"));
        RC_ASSERT(render_values(restored) == render_values(target));
        RC_ASSERT(changes.empty() == (render_values(current) == render_values(target)));
        // Restoring again changes nothing.
        RC_ASSERT(restore_changes(restored, target).empty());

        // With a key filter, exactly those keys come back; the others stay as they are.
        const auto keys = *rc::gen::container<std::set<std::string>>(rc::gen::elementOf(kKeys));
        PreferenceState partial = current;
        apply(partial, recorded(PreferencesRestored{{}, restore_changes(current, target, keys)},
                                100, 1000, 1, "restore"));
        for (const std::string& key : kKeys) {
          const auto& source = keys.count(key) ? target : current;
          const auto want = source.find(key);
          const auto got = partial.find(key);
          RC_ASSERT((want == source.end()) == (got == partial.end()));
          if (got != partial.end())
            RC_ASSERT(render(got->second.value) == render(want->second.value));
        }
      },
      300, 20);
}

}  // namespace
}  // namespace prefstore
