#include "prefstore/event.hpp"

#include <cereal/types/vector.hpp>

#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_generators.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <cmath>
#include <cstddef>
#include <set>
#include <sstream>
#include <type_traits>

#include "json.hpp"
#include "prefstore/errors.hpp"
#include "text.hpp"

namespace prefstore {
namespace {

namespace rj = detail::rj;
using cereal::make_nvp;
using Reader = cereal::JSONInputArchive;
using Writer = cereal::JSONOutputArchive;

// Persisted event type names and the schema version this build writes: never rename a type or
// reuse a version; a new payload layout gets a new version and an upcaster from the old one.
struct EventTypeInfo {
  std::string_view name;
  int version;
};
constexpr EventTypeInfo kEventTypes[] = {
    {"PreferenceSet", 1},        {"PreferenceReset", 1},     {"PreferenceDefined", 1},
    {"PreferenceDeprecated", 1}, {"PreferencesRestored", 1}, {"StreamErased", 1},
    {"StreamCompacted", 1},      {"PreferencesBaseline", 1},
};
static_assert(std::size(kEventTypes) == std::variant_size_v<EventData>);

// Decoding steps never chain longer than this: a longer chain is a loop among upcasters.
constexpr int kMaxUpcastSteps = 100;

// What is wrong with a payload; decode() turns it into a CorruptDataError with the context.
struct PayloadProblem {
  std::string what;
};

// ---- writing ----

template <class Write>
std::string write_json(Write&& write) {
  std::ostringstream out;
  {
    Writer archive(out, Writer::Options::NoIndent());
    write(archive);
  }  // the archive closes the root object when destroyed
  return detail::compact_json(out.str());
}

// Writes one value (named, or unnamed inside an array) as its plain JSON.
void save_value(Writer& ar, const char* name, const Value& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, double>) {
          const double d = v == 0.0 ? 0.0 : v;  // jsonb has no negative zero
          if (name != nullptr) {
            ar(make_nvp(name, d));
          } else {
            ar(d);
          }
        } else if (name != nullptr) {
          ar(make_nvp(name, v));
        } else {
          ar(v);
        }
      },
      value);
}

template <class T>
void save_optional(Writer& ar, const char* name, const std::optional<T>& value) {
  if (value) {
    ar(make_nvp(name, *value));
  } else {
    ar(make_nvp(name, nullptr));
  }
}

void save_payload(Writer& ar, const PreferenceSet& e) {
  ar(make_nvp("key", e.key), make_nvp("type", std::string(to_string(type_of(e.value)))));
  save_value(ar, "value", e.value);
}

void save_payload(Writer& ar, const PreferenceReset& e) {
  ar(make_nvp("key", e.key));
}

void save_payload(Writer& ar, const PreferenceDefined& e) {
  const PreferenceDefinition& d = e.definition;
  const Constraints& c = d.constraints;
  ar(make_nvp("key", d.key), make_nvp("type", std::string(to_string(d.type))));
  if (d.default_value) {
    save_value(ar, "default", *d.default_value);
  } else {
    ar(make_nvp("default", nullptr));
  }
  save_optional(ar, "min", c.min);
  save_optional(ar, "max", c.max);
  save_optional(ar, "max_length", c.max_length);
  save_optional(ar, "pattern", c.pattern);
  if (c.allowed_values) {
    ar.setNextName("allowed_values");
    ar.startNode();
    ar.makeArray();
    for (const Value& allowed : *c.allowed_values) save_value(ar, nullptr, allowed);
    ar.finishNode();
  } else {
    ar(make_nvp("allowed_values", nullptr));
  }
  save_optional(ar, "max_items", c.max_items);
  ar(make_nvp("description", d.description), make_nvp("deprecated", d.deprecated),
     make_nvp("deprecation_note", d.deprecation_note));
}

void save_payload(Writer& ar, const PreferenceDeprecated& e) {
  ar(make_nvp("key", e.key), make_nvp("note", e.note));
}

void save_payload(Writer& ar, const PreferencesRestored& e) {
  ar(make_nvp("as_of", format_timestamp(e.as_of)));
  ar.setNextName("changes");
  ar.startNode();
  ar.makeArray();
  for (const RestoredPreference& change : e.changes) {
    ar.startNode();
    ar(make_nvp("key", change.key));
    if (change.value) {
      ar(make_nvp("type", std::string(to_string(type_of(*change.value)))));
      save_value(ar, "value", *change.value);
    } else {
      ar(make_nvp("reset", true));
    }
    ar.finishNode();
  }
  ar.finishNode();
}

void save_payload(Writer& ar, const StreamErased& e) {
  ar(make_nvp("stream_id", e.stream_id), make_nvp("events", e.events),
     make_nvp("stream_version", e.stream_version), make_nvp("first_position", e.first_position),
     make_nvp("last_position", e.last_position), make_nvp("chain_head", e.chain_head));
}

void save_payload(Writer& ar, const StreamCompacted& e) {
  ar(make_nvp("stream_id", e.stream_id), make_nvp("up_to_version", e.up_to_version),
     make_nvp("events", e.events), make_nvp("older_than", format_timestamp(e.older_than)),
     make_nvp("chain_head", e.chain_head));
}

void save_payload(Writer& ar, const PreferencesBaseline& e) {
  ar(make_nvp("chain_head", e.chain_head), make_nvp("compacted_events", e.compacted_events));
  ar.setNextName("preferences");
  ar.startNode();
  ar.makeArray();
  for (const PreferenceSet& preference : e.preferences) {
    ar.startNode();
    save_payload(ar, preference);
    ar.finishNode();
  }
  ar.finishNode();
}

// ---- reading ----

// Opens a JSON object for reading with cereal. Throws PayloadProblem when json is not one.
template <class Read>
auto read_json(const std::string& json, Read&& read) {
  // cereal's archive does not report parse errors itself (and would iterate an array root as
  // if it were an object), so refuse anything that is not an object with rapidjson's message.
  const auto first = json.find_first_not_of(" \t\r\n");
  const auto malformed = [&]() -> PayloadProblem {
    rj::Document document;
    document.Parse(json.c_str(), json.size());
    if (document.HasParseError()) {
      return {"malformed JSON at " + detail::describe_parse_error(document)};
    }
    return {"the JSON is not an object"};
  };
  if (first == std::string::npos || json[first] != '{') throw malformed();
  std::istringstream in(json);
  std::optional<Reader> archive;
  try {
    archive.emplace(in);
  } catch (const cereal::Exception&) {
    throw malformed();
  }
  return read(*archive);
}

enum class Field { missing, null, present };

// Whether the field is there, and null. Leaves the archive ready to read it.
Field probe(Reader& ar, const char* name) {
  try {
    std::nullptr_t null;
    ar(make_nvp(name, null));
    return Field::null;
  } catch (const cereal::RapidJSONException&) {
    return Field::present;
  } catch (const cereal::Exception&) {
    return Field::missing;
  }
}

std::string field_name(const char* name) {
  return std::string("field \"") + name + "\"";
}

template <class T>
void load(Reader& ar, const char* name, T& out, const char* expected) {
  try {
    ar(make_nvp(name, out));
  } catch (const cereal::RapidJSONException&) {
    throw PayloadProblem{field_name(name) + " is not " + expected};
  } catch (const cereal::Exception&) {
    throw PayloadProblem{"missing " + field_name(name)};
  }
}

template <class T>
std::optional<T> load_optional(Reader& ar, const char* name, const char* expected) {
  switch (probe(ar, name)) {
    case Field::missing:
      throw PayloadProblem{"missing " + field_name(name)};
    case Field::null:
      return std::nullopt;
    case Field::present:
      break;
  }
  T value{};
  load(ar, name, value, expected);
  return value;
}

std::string load_string(Reader& ar, const char* name) {
  std::string value;
  load(ar, name, value, "a string");
  return value;
}

ValueType load_type(Reader& ar, const char* name) {
  const std::string type_name = load_string(ar, name);
  const auto type = parse_value_type(type_name);
  if (!type) {
    throw PayloadProblem{field_name(name) + " names an unknown value type " +
                         detail::quote(type_name)};
  }
  return *type;
}

double checked_double(const char* name, double value) {
  if (!std::isfinite(value)) throw PayloadProblem{field_name(name) + " is not a finite number"};
  return value == 0.0 ? 0.0 : value;
}

// Reads the plain JSON value of the given type stored under name.
Value load_value(Reader& ar, const char* name, ValueType type) {
  switch (type) {
    case ValueType::boolean: {
      bool value = false;
      load(ar, name, value, "a bool");
      return value;
    }
    case ValueType::integer: {
      std::int64_t value = 0;
      load(ar, name, value, "a 64-bit integer");
      return value;
    }
    case ValueType::number: {
      double value = 0;
      load(ar, name, value, "a number");
      return checked_double(name, value);
    }
    case ValueType::string:
      return load_string(ar, name);
    case ValueType::string_list: {
      StringList value;
      load(ar, name, value, "an array of strings");
      return value;
    }
  }
  throw PayloadProblem{"unknown value type"};
}

template <class T>
std::vector<Value> load_array_of(Reader& ar, const char* name, const char* expected) {
  std::vector<T> items;
  load(ar, name, items, expected);
  std::vector<Value> values;
  values.reserve(items.size());
  for (const T& item : items) {
    if constexpr (std::is_same_v<T, double>) {
      values.emplace_back(checked_double(name, item));
    } else {
      values.emplace_back(T(item));
    }
  }
  return values;
}

std::optional<std::vector<Value>> load_allowed_values(Reader& ar, const char* name,
                                                      ValueType element) {
  switch (probe(ar, name)) {
    case Field::missing:
      throw PayloadProblem{"missing " + field_name(name)};
    case Field::null:
      return std::nullopt;
    case Field::present:
      break;
  }
  switch (element) {
    case ValueType::boolean:
      return load_array_of<bool>(ar, name, "null or an array of bools");
    case ValueType::integer:
      return load_array_of<std::int64_t>(ar, name, "null or an array of 64-bit integers");
    case ValueType::number:
      return load_array_of<double>(ar, name, "null or an array of numbers");
    case ValueType::string:
    case ValueType::string_list:
      return load_array_of<std::string>(ar, name, "null or an array of strings");
  }
  return std::nullopt;
}

PreferencesRestored load_restored(Reader& ar) {
  PreferencesRestored e;
  const std::string as_of = load_string(ar, "as_of");
  const auto parsed = parse_timestamp(as_of);
  if (!parsed) throw PayloadProblem{field_name("as_of") + " is not a timestamp: " + as_of};
  e.as_of = *parsed;
  if (probe(ar, "changes") != Field::present) {
    throw PayloadProblem{"missing " + field_name("changes")};
  }
  ar.setNextName("changes");
  try {
    ar.startNode();
  } catch (const cereal::Exception&) {
    throw PayloadProblem{field_name("changes") + " is not an array"};
  }
  cereal::size_type count = 0;
  try {
    ar.loadSize(count);  // an object opens as a node too, but has no array size
  } catch (const cereal::Exception&) {
    throw PayloadProblem{field_name("changes") + " is not an array"};
  }
  std::set<std::string, std::less<>> seen;
  for (cereal::size_type i = 0; i < count; ++i) {
    try {
      ar.startNode();
    } catch (const cereal::Exception&) {
      throw PayloadProblem{field_name("changes") + " holds something other than objects"};
    }
    RestoredPreference change;
    change.key = load_string(ar, "key");
    if (probe(ar, "value") == Field::missing) {
      bool reset = false;
      load(ar, "reset", reset, "a bool");
      if (!reset)
        throw PayloadProblem{"change of key " + change.key + " has neither value nor reset"};
    } else {
      change.value = load_value(ar, "value", load_type(ar, "type"));
    }
    ar.finishNode();
    if (!seen.insert(change.key).second) {
      throw PayloadProblem{"key " + change.key + " appears twice in " + field_name("changes")};
    }
    e.changes.push_back(std::move(change));
  }
  ar.finishNode();
  return e;
}

std::int64_t load_int(Reader& ar, const char* name) {
  std::int64_t value = 0;
  load(ar, name, value, "a 64-bit integer");
  return value;
}

std::string load_hash(Reader& ar, const char* name) {
  std::string hash = load_string(ar, name);
  const bool hex =
      hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) throw PayloadProblem{field_name(name) + " is not 64 lower-case hex digits"};
  return hash;
}

PreferencesBaseline load_baseline(Reader& ar) {
  PreferencesBaseline e;
  e.chain_head = load_hash(ar, "chain_head");
  e.compacted_events = load_int(ar, "compacted_events");
  if (probe(ar, "preferences") != Field::present) {
    throw PayloadProblem{"missing " + field_name("preferences")};
  }
  ar.setNextName("preferences");
  cereal::size_type count = 0;
  try {
    ar.startNode();
    ar.loadSize(count);
  } catch (const cereal::Exception&) {
    throw PayloadProblem{field_name("preferences") + " is not an array"};
  }
  std::set<std::string, std::less<>> seen;
  for (cereal::size_type i = 0; i < count; ++i) {
    try {
      ar.startNode();
    } catch (const cereal::Exception&) {
      throw PayloadProblem{field_name("preferences") + " holds something other than objects"};
    }
    PreferenceSet preference;
    preference.key = load_string(ar, "key");
    preference.value = load_value(ar, "value", load_type(ar, "type"));
    ar.finishNode();
    if (!seen.insert(preference.key).second) {
      throw PayloadProblem{"key " + preference.key + " appears twice in " +
                           field_name("preferences")};
    }
    e.preferences.push_back(std::move(preference));
  }
  ar.finishNode();
  return e;
}

EventData load_payload(std::string_view type, const std::string& json) {
  return read_json(json, [&](Reader& ar) -> EventData {
    if (type == "PreferenceSet") {
      PreferenceSet e;
      e.key = load_string(ar, "key");
      e.value = load_value(ar, "value", load_type(ar, "type"));
      return e;
    }
    if (type == "PreferenceReset") return PreferenceReset{load_string(ar, "key")};
    if (type == "PreferenceDefined") {
      PreferenceDefinition d;
      d.key = load_string(ar, "key");
      d.type = load_type(ar, "type");
      switch (probe(ar, "default")) {
        case Field::missing:
          throw PayloadProblem{"missing " + field_name("default")};
        case Field::null:
          break;
        case Field::present:
          d.default_value = load_value(ar, "default", d.type);
          break;
      }
      Constraints& c = d.constraints;
      c.min = load_optional<double>(ar, "min", "null or a number");
      if (c.min) c.min = checked_double("min", *c.min);
      c.max = load_optional<double>(ar, "max", "null or a number");
      if (c.max) c.max = checked_double("max", *c.max);
      c.max_length = load_optional<std::int64_t>(ar, "max_length", "null or a 64-bit integer");
      c.pattern = load_optional<std::string>(ar, "pattern", "null or a string");
      c.allowed_values = load_allowed_values(
          ar, "allowed_values", d.type == ValueType::string_list ? ValueType::string : d.type);
      c.max_items = load_optional<std::int64_t>(ar, "max_items", "null or a 64-bit integer");
      d.description = load_string(ar, "description");
      load(ar, "deprecated", d.deprecated, "a bool");
      d.deprecation_note = load_string(ar, "deprecation_note");
      return PreferenceDefined{std::move(d)};
    }
    if (type == "PreferenceDeprecated") {
      PreferenceDeprecated e;
      e.key = load_string(ar, "key");
      e.note = load_string(ar, "note");
      return e;
    }
    if (type == "PreferencesRestored") return load_restored(ar);
    if (type == "StreamErased") {
      StreamErased e;
      e.stream_id = load_string(ar, "stream_id");
      e.events = load_int(ar, "events");
      e.stream_version = load_int(ar, "stream_version");
      e.first_position = load_int(ar, "first_position");
      e.last_position = load_int(ar, "last_position");
      e.chain_head = load_hash(ar, "chain_head");
      return e;
    }
    if (type == "StreamCompacted") {
      StreamCompacted e;
      e.stream_id = load_string(ar, "stream_id");
      e.up_to_version = load_int(ar, "up_to_version");
      e.events = load_int(ar, "events");
      const std::string older_than = load_string(ar, "older_than");
      const auto parsed = parse_timestamp(older_than);
      if (!parsed) {
        throw PayloadProblem{field_name("older_than") + " is not a timestamp: " + older_than};
      }
      e.older_than = *parsed;
      e.chain_head = load_hash(ar, "chain_head");
      return e;
    }
    if (type == "PreferencesBaseline") return load_baseline(ar);
    throw PayloadProblem{"unknown event type"};
  });
}

std::string describe_stored(const EncodedEvent& e) {
  return e.event_type + " version " + std::to_string(e.schema_version);
}

}  // namespace

std::vector<PreferenceChange> preference_changes(const EventData& event) {
  std::vector<PreferenceChange> changes;
  if (const auto* set = std::get_if<PreferenceSet>(&event)) {
    changes.push_back({set->key, &set->value});
  } else if (const auto* reset = std::get_if<PreferenceReset>(&event)) {
    changes.push_back({reset->key, nullptr});
  } else if (const auto* restored = std::get_if<PreferencesRestored>(&event)) {
    changes.reserve(restored->changes.size());
    for (const RestoredPreference& change : restored->changes) {
      changes.push_back({change.key, change.value ? &*change.value : nullptr});
    }
  } else if (const auto* baseline = std::get_if<PreferencesBaseline>(&event)) {
    changes.reserve(baseline->preferences.size());
    for (const PreferenceSet& preference : baseline->preferences) {
      changes.push_back({preference.key, &preference.value});
    }
  }
  return changes;
}

const char* event_type_name(const EventData& event) noexcept {
  return kEventTypes[event.index()].name.data();
}

int current_schema_version(std::string_view event_type) noexcept {
  for (const auto& info : kEventTypes) {
    if (info.name == event_type) return info.version;
  }
  return 0;
}

EncodedEvent encode(const EventData& event) {
  EncodedEvent encoded;
  encoded.event_type = event_type_name(event);
  encoded.schema_version = current_schema_version(encoded.event_type);
  encoded.payload_json = write_json(
      [&](Writer& ar) { std::visit([&](const auto& e) { save_payload(ar, e); }, event); });
  return encoded;
}

void UpcasterRegistry::add(std::string event_type, int from_version, Upcaster upcaster) {
  if (!upcaster) {
    throw UsageError("UpcasterRegistry::add: the upcaster from " + event_type + " version " +
                     std::to_string(from_version) + " is empty");
  }
  auto key = std::make_pair(std::move(event_type), from_version);
  if (m_steps.contains(key)) {
    throw UsageError("UpcasterRegistry::add: an upcaster from " + key.first + " version " +
                     std::to_string(from_version) + " is already registered");
  }
  m_steps.emplace(std::move(key), std::move(upcaster));
}

const Upcaster* UpcasterRegistry::find(std::string_view event_type, int version) const {
  const auto it = m_steps.find(std::make_pair(std::string(event_type), version));
  return it == m_steps.end() ? nullptr : &it->second;
}

const UpcasterRegistry& default_upcasters() {
  static const UpcasterRegistry registry;
  return registry;
}

EventData decode(const EncodedEvent& stored, const UpcasterRegistry& upcasters) {
  EncodedEvent event = stored;
  const auto corrupt = [&](const std::string& problem) {
    std::string message = "cannot decode event " + describe_stored(event);
    if (event.event_type != stored.event_type || event.schema_version != stored.schema_version) {
      message += " (upcast from " + describe_stored(stored) + ")";
    }
    message += ": " + problem + "; payload " + detail::quote(event.payload_json);
    return CorruptDataError(message);
  };

  for (int steps = 0;; ++steps) {
    const int current = current_schema_version(event.event_type);
    if (current != 0 && event.schema_version == current) break;
    if (current != 0 && event.schema_version > current) {
      throw corrupt("the version is newer than this build's " + std::to_string(current) +
                    " (upgrade prefstore to read it)");
    }
    const Upcaster* step = upcasters.find(event.event_type, event.schema_version);
    if (step == nullptr) {
      throw corrupt(current == 0 ? "unknown event type and no upcaster from it"
                                 : "no upcaster leads from this version to the current version " +
                                       std::to_string(current));
    }
    if (steps == kMaxUpcastSteps) {
      throw corrupt("more than " + std::to_string(kMaxUpcastSteps) +
                    " upcasting steps: the upcasters loop");
    }
    try {
      event = (*step)(event);
    } catch (const CorruptDataError&) {
      throw;
    } catch (const std::exception& e) {
      throw corrupt(std::string("the upcaster failed: ") + e.what());
    }
  }

  try {
    return load_payload(event.event_type, event.payload_json);
  } catch (const PayloadProblem& problem) {
    throw corrupt(problem.what);
  }
}

std::string encode_metadata(const Metadata& metadata) {
  return write_json([&](Writer& ar) {
    ar(make_nvp("actor", metadata.actor), make_nvp("source", metadata.source),
       make_nvp("reason", metadata.reason), make_nvp("correlation_id", metadata.correlation_id),
       make_nvp("causation_id", metadata.causation_id));
  });
}

Metadata decode_metadata(std::string_view json) {
  const std::string text(json);
  try {
    return read_json(text, [](Reader& ar) {
      Metadata m;
      // Read the string directly (no exception on the usual path); null or missing is empty.
      const auto field = [&](const char* name, std::string& out) {
        try {
          ar(make_nvp(name, out));
        } catch (const cereal::RapidJSONException&) {
          if (probe(ar, name) != Field::null) {
            throw PayloadProblem{field_name(name) + " is not a string"};
          }
        } catch (const cereal::Exception&) {
          // missing: empty
        }
      };
      field("actor", m.actor);
      field("source", m.source);
      field("reason", m.reason);
      field("correlation_id", m.correlation_id);
      field("causation_id", m.causation_id);
      return m;
    });
  } catch (const PayloadProblem& problem) {
    throw CorruptDataError("cannot decode event metadata: " + problem.what + "; metadata " +
                           detail::quote(text));
  }
}

std::string new_event_id() {
  thread_local boost::uuids::random_generator generator;
  return boost::uuids::to_string(generator());
}

}  // namespace prefstore
