// Model-based properties of the Store facade (TESTING.md #11), in rapidcheck's state pattern
// (STYLE.md point 10): a plain model, one command struct per store operation, preconditions in
// checkPreconditions, apply changing only the model, run calling the store with RC_ASSERT.
//
// StoreModel: random command sequences (define, set, set_many, reset, writes with a stale or a
// correct expected version) over three users and a small calendar key space, in strict mode,
// each run on a fresh database. Oracle: an in-memory model of definitions, values and stream
// versions, with its own validation of the constraints. After every command, for every user:
// get_all equals the model's view, version equals the model's, the history's stream versions are
// exactly 1..n, and the fold of the history (prefstore::apply) equals the projected state.
//
// StoreValues: values round-trip exactly in open mode (any valid UTF-8 string without NUL, any
// finite double with -0.0 stored as 0.0, any int64, bools, string lists), and values that
// cannot be stored exactly (invalid UTF-8, NUL, NaN, infinities) are refused with nothing
// stored. One database for all runs; each run uses its own user.
//
// Run counts: StoreModel 50 runs of up to 61 commands (each run copies a migrated template
// database and opens a store, ~0.25 s); StoreValues 20 to 300 runs per property. RC_PARAMS
// (max_success, max_size, seed, reproduce) overrides them as usual.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "prefstore/errors.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "render.hpp"
#include "scratch_database.hpp"
#include "test_cluster.hpp"
#include "unicode.hpp"

namespace {

using prefstore::AppendOptions;
using prefstore::Constraints;
using prefstore::ExpectedVersion;
using prefstore::PreferenceDefinition;
using prefstore::StringList;
using prefstore::Value;
using prefstore::ValueType;
using prefstore::testing::TestCluster;

constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using prefstore::testing::check_property;
using prefstore::testing::ScratchDatabase;

// ------------------------------------------------------------------------------------------
// Exact, readable renderings (tests/support/render.hpp): two values render the same exactly
// when they are identical (doubles in hexadecimal, so -0.0 and 0.0 differ, as do any two
// distinct doubles).

using prefstore::testing::quoted;
using prefstore::testing::render;
using prefstore::testing::render_double;

std::string render(const PreferenceDefinition& d) {
  const Constraints& c = d.constraints;
  std::string out = d.key + ": " + prefstore::to_string(d.type);
  out += ", default " + render(d.default_value);
  if (c.min) out += ", min " + render_double(*c.min);
  if (c.max) out += ", max " + render_double(*c.max);
  if (c.max_length) out += ", max_length " + std::to_string(*c.max_length);
  if (c.pattern) out += ", pattern " + quoted(*c.pattern);
  if (c.allowed_values) {
    out += ", allowed [";
    for (std::size_t i = 0; i < c.allowed_values->size(); ++i) {
      out += (i > 0 ? ", " : "") + render((*c.allowed_values)[i]);
    }
    out += "]";
  }
  if (c.max_items) out += ", max_items " + std::to_string(*c.max_items);
  out += ", description " + quoted(d.description);
  if (d.deprecated) out += ", deprecated " + quoted(d.deprecation_note);
  return out;
}

// What a store returns for a stored value: -0.0 becomes 0.0 (jsonb has no negative zero).
Value stored_form(Value value) {
  if (auto* d = std::get_if<double>(&value); d != nullptr && *d == 0.0) *d = 0.0;
  return value;
}

// ------------------------------------------------------------------------------------------
// StoreModel: the key space and its definitions.

const std::vector<std::string> kUsers = {"ada", "grace", "zoë@example.com"};

const std::string kMinutes = "calendar.default_meeting_minutes";
const std::string kTimezone = "calendar.timezone";
const std::string kWeekends = "calendar.show_weekends";
const std::string kDayStart = "calendar.day_start_hour";
const std::string kChannels = "calendar.reminder_channels";
const std::string kWeekStart = "calendar.week_start";
const std::string kNeverDefined = "calendar.color_theme";  // no definition ever: strict refuses

const std::vector<std::string> kAllKeys = {kMinutes,  kTimezone,  kWeekends,    kDayStart,
                                           kChannels, kWeekStart, kNeverDefined};

// One way to define a key; `coherent` is the oracle for validate_definition.
struct DefinitionVariant {
  std::string label;
  PreferenceDefinition definition;
  bool coherent = true;
};

PreferenceDefinition make_definition(const std::string& key, ValueType type,
                                     std::optional<Value> default_value, Constraints constraints,
                                     std::string description) {
  PreferenceDefinition d;
  d.key = key;
  d.type = type;
  d.default_value = std::move(default_value);
  d.constraints = std::move(constraints);
  d.description = std::move(description);
  return d;
}

Constraints range(std::optional<double> min, std::optional<double> max) {
  Constraints c;
  c.min = min;
  c.max = max;
  return c;
}

Constraints allowed(std::vector<Value> values, std::optional<std::int64_t> max_items = {}) {
  Constraints c;
  c.allowed_values = std::move(values);
  c.max_items = max_items;
  return c;
}

std::vector<Value> strings(std::initializer_list<const char*> items) {
  std::vector<Value> out;
  for (const char* item : items) out.emplace_back(std::string(item));
  return out;
}

const std::map<std::string, std::vector<DefinitionVariant>>& definition_variants() {
  static const auto variants = [] {
    std::map<std::string, std::vector<DefinitionVariant>> v;
    const auto I = ValueType::integer;
    const auto S = ValueType::string;
    const auto B = ValueType::boolean;
    const auto D = ValueType::number;
    const auto L = ValueType::string_list;
    const std::string minutes = "Length of a new meeting, in minutes";
    v[kMinutes] = {
        {"5..480 default 30",
         make_definition(kMinutes, I, Value(std::int64_t{30}), range(5, 480), minutes)},
        {"15..120 in steps default 60",
         [&] {
           Constraints c = allowed({Value(std::int64_t{15}), Value(std::int64_t{30}),
                                    Value(std::int64_t{45}), Value(std::int64_t{60}),
                                    Value(std::int64_t{90}), Value(std::int64_t{120})});
           c.min = 15;
           c.max = 120;
           return make_definition(kMinutes, I, Value(std::int64_t{60}), c, minutes);
         }(),
         true},
        {"unconstrained, no default", make_definition(kMinutes, I, std::nullopt, {}, minutes)},
        {"min 60 > max 30 (incoherent)",
         make_definition(kMinutes, I, std::nullopt, range(60, 30), minutes), false},
    };
    const std::string timezone = "IANA time zone of the calendar";
    v[kTimezone] = {
        {"three zones default UTC",
         make_definition(kTimezone, S, Value(std::string("UTC")),
                         allowed(strings({"UTC", "Europe/Berlin", "America/New_York"})), timezone)},
        {"pattern, max_length 32, default Europe/Berlin",
         [&] {
           Constraints c;
           c.pattern = "[A-Z][A-Za-z_]*(/[A-Z][A-Za-z_]*)?";
           c.max_length = 32;
           return make_definition(kTimezone, S, Value(std::string("Europe/Berlin")), c, timezone);
         }(),
         true},
        {"pattern that does not compile (incoherent)",
         [&] {
           Constraints c;
           c.pattern = "([";
           return make_definition(kTimezone, S, std::nullopt, c, timezone);
         }(),
         false},
    };
    const std::string weekends = "Show Saturday and Sunday in the week view";
    v[kWeekends] = {
        {"default true", make_definition(kWeekends, B, Value(true), {}, weekends)},
        {"default false", make_definition(kWeekends, B, Value(false), {}, weekends)},
        {"no default", make_definition(kWeekends, B, std::nullopt, {}, weekends)},
        {"min on a bool (incoherent)",
         make_definition(kWeekends, B, Value(true), range(0, {}), weekends), false},
    };
    const std::string day_start = "First hour shown in the day view";
    v[kDayStart] = {
        {"0..23.5 default 8", make_definition(kDayStart, D, Value(8.0), range(0, 23.5), day_start)},
        {"-1..1 default -0.0 (stored as 0.0)",
         make_definition(kDayStart, D, Value(-0.0), range(-1, 1), day_start)},
        {"6..12 default 9.25", make_definition(kDayStart, D, Value(9.25), range(6, 12), day_start)},
        {"default 30 above max 23.5 (incoherent)",
         make_definition(kDayStart, D, Value(30.0), range(0, 23.5), day_start), false},
    };
    const std::string channels = "Where reminders are sent";
    v[kChannels] = {
        {"at most 2 of email/push/sms, default [email]",
         make_definition(kChannels, L, Value(StringList{"email"}),
                         allowed(strings({"email", "push", "sms"}), 2), channels)},
        {"at most 3 of email/push/sms/slack, default []",
         make_definition(kChannels, L, Value(StringList{}),
                         allowed(strings({"email", "push", "sms", "slack"}), 3), channels)},
        {"items [a-z]+ of at most 5, no default",
         [&] {
           Constraints c;
           c.pattern = "[a-z]+";
           c.max_length = 5;
           return make_definition(kChannels, L, std::nullopt, c, channels);
         }(),
         true},
        {"default [fax] not allowed (incoherent)",
         make_definition(kChannels, L, Value(StringList{"fax"}),
                         allowed(strings({"email", "push"}), 2), channels),
         false},
    };
    const std::string week_start = "First day of the week";
    v[kWeekStart] = {
        {"monday/sunday/saturday, no default",
         make_definition(kWeekStart, S, std::nullopt,
                         allowed(strings({"monday", "sunday", "saturday"})), week_start)},
        {"monday/sunday, default monday",
         make_definition(kWeekStart, S, Value(std::string("monday")),
                         allowed(strings({"monday", "sunday"})), week_start)},
    };
    return v;
  }();
  return variants;
}

std::vector<std::string> definable_keys() {
  std::vector<std::string> keys;
  for (const auto& [key, variants] : definition_variants()) keys.push_back(key);
  return keys;
}

// Values tried for each key: valid and invalid ones, and some of another type.
const std::vector<Value>& candidate_values(const std::string& key) {
  static const auto candidates = [] {
    std::map<std::string, std::vector<Value>> c;
    for (const std::int64_t i :
         {std::int64_t{4}, std::int64_t{5}, std::int64_t{14}, std::int64_t{15}, std::int64_t{30},
          std::int64_t{45}, std::int64_t{60}, std::int64_t{90}, std::int64_t{119},
          std::int64_t{120}, std::int64_t{121}, std::int64_t{480}, std::int64_t{481},
          std::int64_t{0}, std::int64_t{-1}, kInt64Min, kInt64Max}) {
      c[kMinutes].emplace_back(i);
    }
    c[kMinutes].insert(c[kMinutes].end(), {Value(30.0), Value(std::string("30")), Value(true),
                                           Value(StringList{"30"})});
    c[kTimezone] = strings({"UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo",
                            "Mars/Olympus_Mons", "utc", "Europe/berlin", "", "Europe/Berlin/Extra",
                            "America/Argentina_Buenos_Aires_Long", "UTC\n"});
    c[kTimezone].insert(c[kTimezone].end(), {Value(std::int64_t{5}), Value(StringList{"UTC"})});
    c[kWeekends] = {Value(true), Value(false), Value(std::int64_t{1}), Value(std::string("true")),
                    Value(1.0)};
    for (const double d : {0.0, -0.0, 8.0, 9.25, 6.0, 12.0, 12.5, 23.5, std::nextafter(23.5, kInf),
                           -1.0, 1.0, -1e-300, 5e-324, 1e300, kNaN, kInf, -kInf}) {
      c[kDayStart].emplace_back(d);
    }
    c[kDayStart].insert(c[kDayStart].end(), {Value(std::int64_t{8}), Value(std::string("8"))});
    for (const StringList& items : std::vector<StringList>{{},
                                                           {"email"},
                                                           {"push"},
                                                           {"email", "push"},
                                                           {"email", "sms"},
                                                           {"email", "push", "sms"},
                                                           {"slack"},
                                                           {"email", "slack"},
                                                           {"email", "push", "sms", "slack"},
                                                           {"fax"},
                                                           {"email", "email"},
                                                           {""},
                                                           {"toolong"}}) {
      c[kChannels].emplace_back(items);
    }
    c[kChannels].insert(c[kChannels].end(), {Value(std::string("email")), Value(false)});
    c[kWeekStart] = strings({"monday", "sunday", "saturday", "friday", "Monday", "", "monday "});
    c[kWeekStart].emplace_back(std::int64_t{1});
    c[kNeverDefined] = {Value(std::string("dark")), Value(std::string("light")),
                        Value(std::int64_t{3})};
    return c;
  }();
  return candidates.at(key);
}

// ------------------------------------------------------------------------------------------
// The model's own validation (independent of prefstore::validate_value).

std::size_t code_points(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char ch) {
    return (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  }));
}

bool text_allowed(const PreferenceDefinition& d, const std::string& text) {
  const Constraints& c = d.constraints;
  if (text.find('\0') != std::string::npos) return false;
  if (c.max_length && static_cast<std::int64_t>(code_points(text)) > *c.max_length) return false;
  if (c.pattern && !std::regex_match(text, std::regex(*c.pattern, std::regex::ECMAScript))) {
    return false;
  }
  if (c.allowed_values) {
    const auto& a = *c.allowed_values;
    if (std::find(a.begin(), a.end(), Value(text)) == a.end()) return false;
  }
  return true;
}

bool number_allowed(const PreferenceDefinition& d, double x, const Value& value) {
  const Constraints& c = d.constraints;
  if (c.min && x < *c.min) return false;
  if (c.max && x > *c.max) return false;
  if (c.allowed_values) {
    const auto& a = *c.allowed_values;
    if (std::find(a.begin(), a.end(), value) == a.end()) return false;
  }
  return true;
}

// Does the definition accept the value? (The bounds used here are small, so comparing an int64
// with them as doubles is exact enough.)
bool model_accepts(const PreferenceDefinition& d, const Value& value) {
  switch (d.type) {
    case ValueType::boolean:
      return std::holds_alternative<bool>(value) &&
             (!d.constraints.allowed_values ||
              std::find(d.constraints.allowed_values->begin(), d.constraints.allowed_values->end(),
                        value) != d.constraints.allowed_values->end());
    case ValueType::integer:
      return std::holds_alternative<std::int64_t>(value) &&
             number_allowed(d, static_cast<double>(std::get<std::int64_t>(value)), value);
    case ValueType::number:
      return std::holds_alternative<double>(value) && std::isfinite(std::get<double>(value)) &&
             number_allowed(d, std::get<double>(value), value);
    case ValueType::string:
      return std::holds_alternative<std::string>(value) &&
             text_allowed(d, std::get<std::string>(value));
    case ValueType::string_list: {
      if (!std::holds_alternative<StringList>(value)) return false;
      const auto& items = std::get<StringList>(value);
      if (d.constraints.max_items &&
          static_cast<std::int64_t>(items.size()) > *d.constraints.max_items) {
        return false;
      }
      return std::all_of(items.begin(), items.end(),
                         [&](const std::string& item) { return text_allowed(d, item); });
    }
  }
  return false;
}

// ------------------------------------------------------------------------------------------
// The model.

struct ModelValue {
  Value value;               // as stored (-0.0 already 0.0)
  std::int64_t version = 0;  // stream version of the event that set it
};

struct UserModel {
  std::int64_t version = 0;
  std::map<std::string, ModelValue> values;
};

struct ModelDefinition {
  PreferenceDefinition definition;  // as stored (default normalised)
  std::int64_t version = 0;         // version of the "$def:<key>" stream
};

struct StoreModel {
  std::map<std::string, ModelDefinition> definitions;
  std::map<std::string, UserModel> users;

  [[nodiscard]] const PreferenceDefinition* definition(const std::string& key) const {
    const auto it = definitions.find(key);
    return it == definitions.end() ? nullptr : &it->second.definition;
  }
  // Strict mode: the key must be defined and the value valid for it.
  [[nodiscard]] bool accepts(const std::string& key, const Value& value) const {
    const auto* d = definition(key);
    return d != nullptr && model_accepts(*d, value);
  }
  [[nodiscard]] std::int64_t version(const std::string& user) const {
    return users.at(user).version;
  }
  void set(const std::string& user, const std::string& key, const Value& value) {
    UserModel& u = users.at(user);
    u.version += 1;
    u.values[key] = ModelValue{stored_form(value), u.version};
  }
  void reset(const std::string& user, const std::string& key) {
    UserModel& u = users.at(user);
    u.version += 1;
    u.values.erase(key);
  }
  [[nodiscard]] std::vector<std::string> defined_keys() const {
    std::vector<std::string> keys;
    for (const auto& [key, d] : definitions) keys.push_back(key);
    return keys;
  }
};

StoreModel initial_model() {
  StoreModel m;
  for (const auto& user : kUsers) m.users[user];
  return m;
}

// What get_all(user) must return, rendered.
std::string expected_view(const StoreModel& m, const std::string& user) {
  std::map<std::string, std::string> lines;
  for (const auto& [key, v] : m.users.at(user).values) {
    lines[key] = render(v.value) + " set v" + std::to_string(v.version);
  }
  for (const auto& [key, d] : m.definitions) {
    if (lines.count(key) == 0 && d.definition.default_value) {
      lines[key] = render(stored_form(*d.definition.default_value)) + " (default)";
    }
  }
  std::string out;
  for (const auto& [key, line] : lines) out += key + " = " + line + "\n";
  return out;
}

std::string actual_view(const std::map<std::string, prefstore::ResolvedPreference>& all) {
  std::string out;
  for (const auto& [key, p] : all) {
    out += key + " = " + render(p.value);
    if (p.is_default) {
      out += " (default)";
      if (p.entry) out += " [but carries an entry]";
    } else if (!p.entry) {
      out += " set [without an entry]";
    } else {
      out += " set v" + std::to_string(p.entry->version);
      if (render(p.entry->value) != render(p.value)) {
        out += " [entry value " + render(p.entry->value) + "]";
      }
    }
    out += "\n";
  }
  return out;
}

std::string expected_catalog(const StoreModel& m) {
  std::string out;
  for (const auto& [key, d] : m.definitions) {
    out += "v" + std::to_string(d.version) + " " + render(d.definition) + "\n";
  }
  return out;
}

std::string actual_catalog(const prefstore::DefinitionCatalog& catalog) {
  std::string out;
  for (const auto& [key, d] : catalog) {
    out += "v" + std::to_string(d.version) + " " + render(d.definition) + "\n";
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// The system under test.

struct StoreSut {
  explicit StoreSut(prefstore::StoreOptions options)
      : store(std::move(options)), projected(store.pool()) {}
  prefstore::Store store;
  prefstore::storage::CurrentState projected;
};

prefstore::StoreOptions strict_options(const ScratchDatabase& database) {
  prefstore::StoreOptions o;
  o.database_url = database.url();
  o.definitions_refresh = std::chrono::milliseconds(0);
  return o;
}

// Everything the store says agrees with the model `m` (the state after the command).
// `user`: the user the command touched ("" for none): its get() of every key is checked too.
void check_store_matches(const StoreModel& m, StoreSut& sut, const std::string& user) {
  RC_ASSERT(actual_catalog(sut.store.definitions()) == expected_catalog(m));
  for (const auto& u : kUsers) {
    RC_ASSERT(actual_view(sut.store.get_all(u)) == expected_view(m, u));
    RC_ASSERT(sut.store.version(u) == m.version(u));

    const auto history = sut.store.history(u);
    std::vector<std::int64_t> versions;
    std::vector<std::int64_t> expected_versions;
    prefstore::PreferenceState folded;
    for (const auto& event : history) {
      RC_ASSERT(event.stream_id == u);
      versions.push_back(event.stream_version);
      prefstore::apply(folded, event);
    }
    for (std::int64_t v = 1; v <= m.version(u); ++v) expected_versions.push_back(v);
    RC_ASSERT(versions == expected_versions);
    RC_ASSERT(render(sut.projected.get_all(u)) == render(folded));
  }
  if (!user.empty()) {
    const UserModel& um = m.users.at(user);
    for (const auto& key : kAllKeys) {
      std::optional<Value> expected;
      if (const auto it = um.values.find(key); it != um.values.end()) {
        expected = it->second.value;
      } else if (const auto* d = m.definition(key); d != nullptr && d->default_value) {
        expected = stored_form(*d->default_value);
      }
      RC_ASSERT(key + ": " + render(sut.store.get(user, key)) == key + ": " + render(expected));
    }
  }
}

// ------------------------------------------------------------------------------------------
// Commands.

// rc::gen::inRange scales with the size (small sizes pick near the minimum); these do not, and
// still shrink towards the minimum.
template <class T>
rc::Gen<T> any_in(T min, T max) {
  return rc::gen::resize(rc::kNominalSize, rc::gen::inRange<T>(min, max));
}
template <class T>
T uniform(T min, T max) {
  return *any_in<T>(min, max);
}

using ModelCommand = rc::state::Command<StoreModel, StoreSut>;

// A key: mostly one that is defined now, sometimes any key of the key space.
std::string gen_key(const StoreModel& m) {
  const auto defined = m.defined_keys();
  if (defined.empty() || uniform(0, 8) == 0) return *rc::gen::elementOf(kAllKeys);
  return *rc::gen::elementOf(defined);
}

// A value for key: mostly one the current definition accepts, sometimes any candidate
// (valid or not, maybe of another type), sometimes a random one of the key's type.
Value gen_value(const StoreModel& m, const std::string& key) {
  const auto& all = candidate_values(key);
  std::vector<Value> valid;
  if (const auto* d = m.definition(key)) {
    for (const auto& v : all) {
      if (model_accepts(*d, v)) valid.push_back(v);
    }
  }
  const int pick = uniform(0, 10);
  if (!valid.empty() && pick < 7) return *rc::gen::elementOf(valid);
  if (pick == 9) {
    if (key == kMinutes) return Value(uniform<std::int64_t>(-10, 500));
    if (key == kDayStart) return Value(uniform(-8, 100) / 4.0);
    if (key == kChannels) {
      return Value(*rc::gen::container<StringList>(
          uniform<std::size_t>(0, 5),
          rc::gen::elementOf(std::vector<std::string>{"email", "push", "sms", "slack", "fax"})));
    }
  }
  return *rc::gen::elementOf(all);
}

std::string gen_user() {
  return *rc::gen::elementOf(kUsers);
}

// define(definition): creates or replaces a definition; an incoherent one is refused.
struct Define : ModelCommand {
  std::string key;
  std::size_t variant = 0;

  Define()
      : key(*rc::gen::elementOf(definable_keys())),
        variant(uniform<std::size_t>(0, definition_variants().at(key).size())) {}

  [[nodiscard]] const DefinitionVariant& chosen() const {
    return definition_variants().at(key).at(variant);
  }

  void apply(StoreModel& m) const override {
    if (!chosen().coherent) return;
    ModelDefinition& d = m.definitions[key];
    d.definition = chosen().definition;
    if (d.definition.default_value)
      d.definition.default_value = stored_form(*d.definition.default_value);
    d.version += 1;
  }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    const StoreModel s1 = nextState(s0);
    if (chosen().coherent) {
      const auto result = sut.store.define(chosen().definition);
      RC_ASSERT(result.stream_version == s1.definitions.at(key).version);
      RC_ASSERT(!result.duplicate);
    } else {
      RC_ASSERT_THROWS_AS(sut.store.define(chosen().definition), prefstore::ValidationError);
    }
    check_store_matches(s1, sut, "");
  }

  void show(std::ostream& os) const override {
    os << "Define(" << key << ", " << chosen().label << ")";
  }
};

// set(user, key, value): lands when the key is defined and the value valid, else
// ValidationError and nothing changes.
struct Set : ModelCommand {
  std::string user;
  std::string key;
  Value value;

  explicit Set(const StoreModel& m) : user(gen_user()), key(gen_key(m)), value(gen_value(m, key)) {}

  void apply(StoreModel& m) const override {
    if (m.accepts(key, value)) m.set(user, key, value);
  }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    if (s0.accepts(key, value)) {
      const auto result = sut.store.set(user, key, value);
      RC_ASSERT(result.stream_version == s0.version(user) + 1);
      RC_ASSERT(!result.duplicate);
    } else {
      RC_ASSERT_THROWS_AS(sut.store.set(user, key, value), prefstore::ValidationError);
    }
    check_store_matches(nextState(s0), sut, user);
  }

  void show(std::ostream& os) const override {
    os << "Set(" << user << ", " << key << ", " << render(value) << ")";
  }
};

// set_many(user, values): all land (one event each, in order) or, when any value is invalid or
// a key is named twice, ValidationError and nothing changes.
struct SetMany : ModelCommand {
  std::string user;
  std::vector<std::pair<std::string, Value>> values;

  explicit SetMany(const StoreModel& m) : user(gen_user()) {
    const auto count = uniform<std::size_t>(1, 4);
    std::vector<std::string> keys;
    for (std::size_t tries = 0; keys.size() < count && tries < 20; ++tries) {
      std::string k = gen_key(m);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(std::move(k));
    }
    for (const auto& k : keys) values.emplace_back(k, gen_value(m, k));
    if (uniform(0, 8) == 0) {  // a key named twice
      values.emplace_back(values.front().first, gen_value(m, values.front().first));
    }
  }

  [[nodiscard]] bool accepted_by(const StoreModel& m) const {
    std::vector<std::string> seen;
    for (const auto& [k, v] : values) {
      if (std::find(seen.begin(), seen.end(), k) != seen.end()) return false;
      seen.push_back(k);
      if (!m.accepts(k, v)) return false;
    }
    return true;
  }

  void apply(StoreModel& m) const override {
    if (!accepted_by(m)) return;
    for (const auto& [k, v] : values) m.set(user, k, v);
  }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    if (accepted_by(s0)) {
      const auto result = sut.store.set_many(user, values);
      RC_ASSERT(result.stream_version ==
                s0.version(user) + static_cast<std::int64_t>(values.size()));
      RC_ASSERT(!result.duplicate);
    } else {
      RC_ASSERT_THROWS_AS(sut.store.set_many(user, values), prefstore::ValidationError);
    }
    check_store_matches(nextState(s0), sut, user);
  }

  void show(std::ostream& os) const override {
    os << "SetMany(" << user;
    for (const auto& [k, v] : values) os << ", " << k << " = " << render(v);
    os << ")";
  }
};

// reset(user, key): one PreferenceReset event (also when the user has no value); the read
// falls back to the default. Undefined key in strict mode: ValidationError.
struct Reset : ModelCommand {
  std::string user;
  std::string key;

  explicit Reset(const StoreModel& m) : user(gen_user()), key(gen_key(m)) {}

  void apply(StoreModel& m) const override {
    if (m.definition(key) != nullptr) m.reset(user, key);
  }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    if (s0.definition(key) != nullptr) {
      const auto result = sut.store.reset(user, key);
      RC_ASSERT(result.stream_version == s0.version(user) + 1);
    } else {
      RC_ASSERT_THROWS_AS(sut.store.reset(user, key), prefstore::ValidationError);
    }
    check_store_matches(nextState(s0), sut, user);
  }

  void show(std::ostream& os) const override { os << "Reset(" << user << ", " << key << ")"; }
};

// set(user, key, valid value) with ExpectedVersion::exactly(version - 1 or version + 1):
// VersionConflictError carrying the actual version; nothing changes.
struct ConflictingWrite : ModelCommand {
  std::string user;
  std::string key;
  Value value;
  std::int64_t offset = 1;

  explicit ConflictingWrite(const StoreModel& m)
      : user(gen_user()),
        key(gen_key(m)),
        value(gen_value(m, key)),
        offset(*rc::gen::elementOf(std::vector<std::int64_t>{-1, 1})) {}

  void checkPreconditions(const StoreModel& m) const override {
    RC_PRE(m.accepts(key, value));          // a conflict, not a validation error
    RC_PRE(m.version(user) + offset >= 0);  // exactly(-1) is a usage mistake, not a conflict
  }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    const std::int64_t actual = s0.version(user);
    const std::int64_t stale = actual + offset;
    AppendOptions options;
    options.expected = ExpectedVersion::exactly(stale);
    try {
      (void)sut.store.set(user, key, value, {}, options);
      RC_FAIL("set with expected version " + std::to_string(stale) + " succeeded on stream " +
              user + " at version " + std::to_string(actual));
    } catch (const prefstore::VersionConflictError& e) {
      RC_ASSERT(e.actual_version() == actual);
      RC_ASSERT(e.stream_id() == user);
      // errors.hpp: "expected: the version the caller expected (-1 for "no stream")".
      RC_ASSERT(e.expected_version() == stale);
    }
    check_store_matches(nextState(s0), sut, user);
  }

  void show(std::ostream& os) const override {
    os << "ConflictingWrite(" << user << ", " << key << ", " << render(value)
       << ", expected version = model version " << (offset > 0 ? "+ 1" : "- 1") << ")";
  }
};

// set(user, key, valid value) with ExpectedVersion::exactly(version): lands.
struct ExpectedWrite : ModelCommand {
  std::string user;
  std::string key;
  Value value;

  explicit ExpectedWrite(const StoreModel& m)
      : user(gen_user()), key(gen_key(m)), value(gen_value(m, key)) {}

  void checkPreconditions(const StoreModel& m) const override { RC_PRE(m.accepts(key, value)); }

  void apply(StoreModel& m) const override { m.set(user, key, value); }

  void run(const StoreModel& s0, StoreSut& sut) const override {
    AppendOptions options;
    options.expected = ExpectedVersion::exactly(s0.version(user));
    const auto result = sut.store.set(user, key, value, {}, options);
    RC_ASSERT(result.stream_version == s0.version(user) + 1);
    check_store_matches(nextState(s0), sut, user);
  }

  void show(std::ostream& os) const override {
    os << "ExpectedWrite(" << user << ", " << key << ", " << render(value)
       << ", expected version = model version)";
  }
};

TEST(StoreModel, RandomCommandsAgreeWithTheModelAfterEveryStep) {
  check_property(
      [] {
        const ScratchDatabase database;
        StoreSut sut(strict_options(database));
        rc::state::check(initial_model(), sut,
                         rc::state::gen::execOneOfWithArgs<Define, Define, Set, Set, SetMany, Reset,
                                                           ConflictingWrite, ExpectedWrite>());
      },
      50, 60);
}

// ------------------------------------------------------------------------------------------
// StoreValues: exact round trips in open mode, on one shared store.

prefstore::Store& values_store() {
  // Never destroyed: the cluster is shut down at the end of the program, before statics die.
  static prefstore::Store* store = [] {
    prefstore::StoreOptions o;
    o.database_url = TestCluster::instance().fresh_database();
    o.strict = false;
    o.definitions_refresh = std::chrono::milliseconds(0);
    return new prefstore::Store(o);
  }();
  return *store;
}

// A user id no other run has used.
std::string next_user() {
  static std::atomic<int> counter{0};
  return "values-" + std::to_string(counter.fetch_add(1));
}

const std::string kItem = "values.item";
const std::string kOther = "values.other";

void append_utf8(std::string& out, std::uint32_t cp) {
  out += prefstore::testing::utf8(cp);
}

// A Unicode scalar value other than NUL: ASCII (controls, quotes, backslash included) most
// often, then every UTF-8 length, surrogates excluded.
rc::Gen<std::uint32_t> gen_code_point() {
  return rc::gen::weightedOneOf<std::uint32_t>({
      {6, any_in<std::uint32_t>(1, 0x80)},
      {3, rc::gen::elementOf(std::vector<std::uint32_t>{
              '\'', '"',  '\\',   '\n',   '\r',   '\t',   0x08,   0x0C,   0x1B,    0x7F,
              0x85, 0xA0, 0x2028, 0x2029, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x1F600, 0x10FFFF})},
      {2, any_in<std::uint32_t>(0x80, 0x800)},
      {1, any_in<std::uint32_t>(0x800, 0xD800)},
      {1, any_in<std::uint32_t>(0xE000, 0x10000)},
      {2, any_in<std::uint32_t>(0x10000, 0x110000)},
  });
}

// Pieces that have broken string handling elsewhere: SQL, JSON and escape syntax, emoji
// sequences.
const std::vector<std::string> kTrickyPieces = {
    "'; DROP TABLE x; --",
    "\"); DELETE FROM prefstore.events; --",
    "' OR '1'='1",
    "$1",
    "$$",
    "%s%n",
    "\\",
    "\\\\",
    "\\u0000",
    "\\x00",
    "E'\\n'",
    "{\"key\": [1, 2]}",
    "null",
    "[]",
    "\"\"",
    "\U0001F469\u200D\U0001F4BB",  // woman technologist (ZWJ sequence)
    "\U0001F1E9\U0001F1EA",        // flag of Germany
    "\u00e9\u0301",                // e acute + combining acute
    "\u05E9\u05DC\u05D5\u05DD",    // right-to-left text
    "\u4E2D\u6587",
};

rc::Gen<std::string> gen_text() {
  const auto piece = rc::gen::weightedOneOf<std::string>({
      {8, rc::gen::map(gen_code_point(),
                       [](std::uint32_t cp) {
                         std::string s;
                         append_utf8(s, cp);
                         return s;
                       })},
      {1, rc::gen::elementOf(kTrickyPieces)},
  });
  return rc::gen::map(rc::gen::container<std::vector<std::string>>(piece),
                      [](const std::vector<std::string>& pieces) {
                        std::string out;
                        for (const auto& p : pieces) out += p;
                        return out;
                      });
}

// A string that is not valid UTF-8 or holds NUL: valid text with a bad sequence at a code
// point boundary.
rc::Gen<std::string> gen_unstorable_text() {
  static const std::vector<std::string> bad = {
      std::string("\x80"),              // a lone continuation byte
      std::string("\xBF"),              // another
      std::string("\xC0\x80"),          // overlong NUL
      std::string("\xC1\xBF"),          // overlong '\x7F'
      std::string("\xE0\x80\xAF"),      // overlong '/'
      std::string("\xED\xA0\x80"),      // a surrogate (U+D800)
      std::string("\xF4\x90\x80\x80"),  // above U+10FFFF
      std::string("\xF5\x80\x80\x80"),  // lead byte never valid
      std::string("\xFE"),
      std::string("\xFF"),
      std::string("\xC3"),          // truncated 2-byte sequence
      std::string("\xE2\x82"),      // truncated 3-byte sequence
      std::string("\xF0\x9F\x98"),  // truncated 4-byte sequence
      std::string(1, '\0'),         // NUL
      std::string("a\0b", 3),       // NUL inside
  };
  return rc::gen::apply([](const std::string& before, const std::string& middle,
                           const std::string& after) { return before + middle + after; },
                        gen_text(), rc::gen::elementOf(bad), gen_text());
}

// Doubles from bit patterns (every exponent, both signs), NaNs and infinities left out.
rc::Gen<double> finite_from_bits(rc::Gen<std::uint64_t> bits) {
  return rc::gen::suchThat(
      rc::gen::map(std::move(bits), [](std::uint64_t b) { return std::bit_cast<double>(b); }),
      [](double d) { return std::isfinite(d); });
}

rc::Gen<double> gen_finite_double() {
  return rc::gen::weightedOneOf<double>({
      {4,
       rc::gen::suchThat(rc::gen::arbitrary<double>(), [](double d) { return std::isfinite(d); })},
      {1, finite_from_bits(rc::gen::arbitrary<std::uint64_t>())},  // small: subnormals
      {3, finite_from_bits(rc::gen::resize(rc::kNominalSize, rc::gen::arbitrary<std::uint64_t>()))},
      {2, rc::gen::element(
              0.0, -0.0, 0.1, -0.1, 1.0 / 3.0, 1e21, 1e22, 123456789012345680000.0,
              9007199254740993.0, std::numeric_limits<double>::max(),
              std::numeric_limits<double>::lowest(), std::numeric_limits<double>::min(),
              std::numeric_limits<double>::denorm_min(), -std::numeric_limits<double>::denorm_min(),
              std::numeric_limits<double>::epsilon(), 5e-324, 2.2250738585072009e-308,
              1.7976931348623157e308, 4.35, 0.30000000000000004)},
  });
}

rc::Gen<std::int64_t> gen_int64() {
  return rc::gen::weightedOneOf<std::int64_t>({
      {2, rc::gen::arbitrary<std::int64_t>()},
      {2, rc::gen::resize(rc::kNominalSize, rc::gen::arbitrary<std::int64_t>())},
      {1, rc::gen::elementOf(std::vector<std::int64_t>{
              kInt64Min, kInt64Min + 1, kInt64Max, kInt64Max - 1, 0, -1, 1,
              (std::int64_t{1} << 53) + 1, -(std::int64_t{1} << 53) - 1, std::int64_t{1} << 62,
              2147483648, -2147483649})},
  });
}

// set, then get, get_all and the log return exactly stored_form(value); a fresh user per run.
void check_round_trip(const Value& value) {
  prefstore::Store& store = values_store();
  const std::string user = next_user();
  const Value expected = stored_form(value);
  RC_LOG() << "value: " << render(value) << "\n";

  const auto result = store.set(user, kItem, value);
  RC_ASSERT(result.stream_version == 1);

  RC_ASSERT(render(store.get(user, kItem)) == render(expected));

  const auto all = store.get_all(user);
  RC_ASSERT(all.size() == 1U);
  RC_ASSERT(all.count(kItem) == 1U);
  RC_ASSERT(!all.at(kItem).is_default);
  RC_ASSERT(render(all.at(kItem).value) == render(expected));

  const auto history = store.history(user);
  RC_ASSERT(history.size() == 1U);
  const auto* set = std::get_if<prefstore::PreferenceSet>(&history.front().data);
  RC_ASSERT(set != nullptr);
  RC_ASSERT(render(set->value) == render(expected));
}

// The value is refused with ValidationError, by set and by set_many beside a valid value, and
// nothing is stored: the user's earlier value, version and the other key stay as they were.
void check_refused(const Value& value) {
  prefstore::Store& store = values_store();
  const std::string user = next_user();
  const Value before(std::string("before"));
  (void)store.set(user, kItem, before);
  RC_LOG() << "value: " << render(value) << "\n";

  RC_ASSERT_THROWS_AS(store.set(user, kItem, value), prefstore::ValidationError);
  RC_ASSERT_THROWS_AS(store.set_many(user, {{kOther, Value(true)}, {kItem, value}}),
                      prefstore::ValidationError);
  RC_ASSERT_THROWS_AS(store.set_many(user, {{kItem, value}, {kOther, Value(true)}}),
                      prefstore::ValidationError);

  RC_ASSERT(store.version(user) == 1);
  RC_ASSERT(render(store.get(user, kItem)) == render(before));
  RC_ASSERT(!store.get(user, kOther).has_value());
  RC_ASSERT(store.history(user).size() == 1U);
}

TEST(StoreValues, StringsRoundTripExactly) {
  check_property([] { check_round_trip(Value(*gen_text())); }, 300, 100);
}

TEST(StoreValues, FiniteDoublesRoundTripBitwiseWithNegativeZeroAsZero) {
  check_property([] { check_round_trip(Value(*gen_finite_double())); }, 300, 100);
}

TEST(StoreValues, Int64sRoundTripExactly) {
  check_property([] { check_round_trip(Value(*gen_int64())); }, 300, 100);
}

TEST(StoreValues, BoolsRoundTripExactly) {
  check_property([] { check_round_trip(Value(*rc::gen::arbitrary<bool>())); }, 10, 100);
}

TEST(StoreValues, StringListsRoundTripExactly) {
  check_property(
      [] {
        const auto count = *rc::gen::inRange<std::size_t>(0, 6);
        check_round_trip(Value(*rc::gen::container<StringList>(count, gen_text())));
      },
      200, 100);
}

// One value of every type, set together with set_many, read back together.
TEST(StoreValues, MixedValuesRoundTripTogetherThroughSetMany) {
  check_property(
      [] {
        prefstore::Store& store = values_store();
        const std::string user = next_user();
        const std::vector<std::pair<std::string, Value>> values = {
            {"values.flag", Value(*rc::gen::arbitrary<bool>())},
            {"values.count", Value(*gen_int64())},
            {"values.ratio", Value(*gen_finite_double())},
            {"values.text", Value(*gen_text())},
            {"values.list", Value(*rc::gen::container<StringList>(
                                *rc::gen::inRange<std::size_t>(0, 4), gen_text()))},
        };
        std::string expected;
        std::map<std::string, Value> sorted;
        for (const auto& [key, value] : values) sorted.emplace(key, stored_form(value));
        for (const auto& [key, value] : sorted) expected += key + " = " + render(value) + "\n";

        const auto result = store.set_many(user, values);
        RC_ASSERT(result.stream_version == 5);

        std::string via_get_all;
        for (const auto& [key, p] : store.get_all(user)) {
          via_get_all += key + " = " + render(p.value) + (p.is_default ? " (default)" : "") + "\n";
        }
        RC_ASSERT(via_get_all == expected);
        std::string via_get;
        for (const auto& [key, value] : sorted) {
          via_get += key + " = " + render(store.get(user, key)) + "\n";
        }
        RC_ASSERT(via_get == expected);
      },
      50, 100);
}

TEST(StoreValues, UnstorableStringsAreRefusedAndNothingIsStored) {
  check_property(
      [] {
        const std::string text = *gen_unstorable_text();
        if (*rc::gen::arbitrary<bool>()) {
          check_refused(Value(text));
        } else {
          check_refused(Value(StringList{"fine", text}));
        }
      },
      200, 40);
}

TEST(StoreValues, NonFiniteDoublesAreRefusedAndNothingIsStored) {
  check_property(
      [] {
        const double d = *rc::gen::element(
            kNaN, -kNaN, std::numeric_limits<double>::signaling_NaN(),
            std::bit_cast<double>(std::uint64_t{0x7ff0000000000001}),
            std::bit_cast<double>(std::uint64_t{0xfff8000000000abc}), kInf, -kInf);
        check_refused(Value(d));
      },
      20, 100);
}

}  // namespace
