// Micro-benchmarks of prefstore_core, the database-free part of prefstore: the JSON encoding and
// decoding of events and metadata, the validation of values and keys against definitions, the
// fold (apply() of recorded events to a PreferenceState, reported as events per second) and the
// snapshot codec. Data comes from the calendar-assistant world (time zone, working hours,
// default meeting length, reminders, notification channels).
//
// No PostgreSQL is needed. `make bench` runs this binary through scripts/bench.sh (which owns the
// flags and where its table goes in docs/performance.md); run it alone with e.g.
// `build/bench/prefstore_core_bench --benchmark_min_time=0.2`.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "prefstore/definition.hpp"
#include "prefstore/event.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/preference_state.hpp"
#include "prefstore/snapshot_codec.hpp"
#include "prefstore/timestamp.hpp"
#include "prefstore/value.hpp"

namespace {

using prefstore::EncodedEvent;
using prefstore::EventData;
using prefstore::Metadata;
using prefstore::PreferenceDefinition;
using prefstore::PreferenceReset;
using prefstore::PreferenceSet;
using prefstore::PreferenceState;
using prefstore::RecordedEvent;
using prefstore::StringList;
using prefstore::Value;
using prefstore::ValueType;

// ---- Calendar-assistant data ---------------------------------------------------------------

PreferenceSet timezone_set() {
  return {"calendar.timezone", Value(std::string("Europe/Berlin"))};
}
PreferenceSet meeting_length_set() {
  return {"calendar.default_meeting_minutes", Value(std::int64_t{30})};
}
PreferenceSet channels_set() {
  return {"notifications.channels", Value(StringList{"email", "push", "slack"})};
}

Metadata calendar_metadata() {
  return {"ada@example.com", "calendar-web", "moved to the Berlin office",
          "0b6c1f4e-3c1a-4a8e-9d7e-2f5b8c9a1d01", "5d2e7a90-8f41-4c63-b0a2-7e1d9c4f3b22"};
}

PreferenceDefinition meeting_minutes_definition() {
  PreferenceDefinition d;
  d.key = "calendar.default_meeting_minutes";
  d.type = ValueType::integer;
  d.default_value = Value(std::int64_t{30});
  d.constraints.min = 5;
  d.constraints.max = 480;
  d.description = "Length of a new meeting, in minutes";
  return d;
}

PreferenceDefinition timezone_definition() {
  PreferenceDefinition d;
  d.key = "calendar.timezone";
  d.type = ValueType::string;
  d.default_value = Value(std::string("UTC"));
  d.constraints.max_length = 64;
  d.constraints.pattern = "[A-Z][A-Za-z_]*(/[A-Z][A-Za-z_+-]*)*";
  d.description = "IANA time zone of the calendar";
  return d;
}

PreferenceDefinition week_start_definition() {
  PreferenceDefinition d;
  d.key = "calendar.week_start";
  d.type = ValueType::string;
  d.default_value = Value(std::string("monday"));
  d.constraints.allowed_values = std::vector<Value>{
      Value(std::string("monday")), Value(std::string("sunday")), Value(std::string("saturday"))};
  d.description = "First day of the week in the calendar view";
  return d;
}

PreferenceDefinition channels_definition() {
  PreferenceDefinition d;
  d.key = "notifications.channels";
  d.type = ValueType::string_list;
  d.default_value = Value(StringList{"email"});
  d.constraints.max_items = 4;
  d.constraints.allowed_values =
      std::vector<Value>{Value(std::string("email")), Value(std::string("push")),
                         Value(std::string("sms")), Value(std::string("slack"))};
  d.description = "Where reminders are sent";
  return d;
}

// Twenty calendar preferences with their values; the fold and the snapshot cycle through them.
std::vector<PreferenceSet> calendar_preferences() {
  std::vector<PreferenceSet> p;
  const auto text = [](const char* s) { return Value(std::string(s)); };
  const auto num = [](std::int64_t n) { return Value(n); };
  p.push_back({"calendar.timezone", text("Europe/Berlin")});
  p.push_back({"calendar.working_hours.start", text("09:00")});
  p.push_back({"calendar.working_hours.end", text("17:30")});
  p.push_back({"calendar.working_days", Value(StringList{"mon", "tue", "wed", "thu", "fri"})});
  p.push_back({"calendar.default_meeting_minutes", num(30)});
  p.push_back({"calendar.buffer_minutes", num(5)});
  p.push_back({"calendar.week_start", text("monday")});
  p.push_back({"calendar.show_weekends", Value(false)});
  p.push_back({"calendar.day_view.zoom", Value(1.25)});
  p.push_back({"calendar.default_video_provider", text("jitsi")});
  p.push_back({"reminders.default_minutes_before", num(10)});
  p.push_back({"reminders.second_minutes_before", num(60)});
  p.push_back({"reminders.enabled", Value(true)});
  p.push_back({"reminders.snooze_minutes", num(5)});
  p.push_back({"notifications.channels", Value(StringList{"email", "push", "slack"})});
  p.push_back({"notifications.quiet_hours.start", text("22:00")});
  p.push_back({"notifications.quiet_hours.end", text("07:00")});
  p.push_back({"notifications.digest", text("daily")});
  p.push_back({"assistant.language", text("de-DE")});
  p.push_back({"assistant.auto_decline_outside_hours", Value(true)});
  return p;
}

// A user's log of n events: mostly PreferenceSet over the twenty keys, with the value varying
// by event, and a PreferenceReset every seventh event.
std::vector<RecordedEvent> calendar_log(std::size_t n) {
  const std::vector<PreferenceSet> prefs = calendar_preferences();
  const Metadata metadata = calendar_metadata();
  const auto start = prefstore::from_unix_micros(1'780'000'000'000'000);
  std::vector<RecordedEvent> log;
  log.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto version = static_cast<std::int64_t>(i + 1);
    PreferenceSet set = prefs[i % prefs.size()];
    if (auto* minutes = std::get_if<std::int64_t>(&set.value)) *minutes += version % 60;
    EventData data = (i % 7 == 6) ? EventData(PreferenceReset{set.key}) : EventData(set);
    log.push_back({"ada", version, version * 3, "evt-" + std::to_string(version), std::move(data),
                   metadata, start + std::chrono::seconds(version)});
  }
  return log;
}

PreferenceState calendar_state() {
  PreferenceState state;
  for (const RecordedEvent& event : calendar_log(20)) prefstore::apply(state, event);
  // The log's seventh and fourteenth events were resets; set every key once more.
  std::int64_t version = 20;
  for (const PreferenceSet& p : calendar_preferences()) {
    ++version;
    prefstore::apply(
        state, RecordedEvent{"ada", version, version * 3, "evt", EventData(p), calendar_metadata(),
                             prefstore::from_unix_micros(version * 1'000'000)});
  }
  return state;
}

// ---- Serialization -------------------------------------------------------------------------

void BM_EncodeEvent(benchmark::State& state, PreferenceSet set) {
  EventData event(std::move(set));
  std::size_t bytes = 0;
  for (auto _ : state) {
    EncodedEvent encoded = prefstore::encode(event);
    bytes += encoded.payload_json.size();
    benchmark::DoNotOptimize(encoded);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_EncodeEvent, timezone, timezone_set());
BENCHMARK_CAPTURE(BM_EncodeEvent, meeting_minutes, meeting_length_set());
BENCHMARK_CAPTURE(BM_EncodeEvent, channels, channels_set());

void BM_DecodeEvent(benchmark::State& state, PreferenceSet set) {
  EncodedEvent encoded = prefstore::encode(EventData(std::move(set)));
  for (auto _ : state) {
    EventData decoded = prefstore::decode(encoded);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<std::int64_t>(encoded.payload_json.size()));
}
BENCHMARK_CAPTURE(BM_DecodeEvent, timezone, timezone_set());
BENCHMARK_CAPTURE(BM_DecodeEvent, meeting_minutes, meeting_length_set());
BENCHMARK_CAPTURE(BM_DecodeEvent, channels, channels_set());

void BM_EncodeMetadata(benchmark::State& state) {
  Metadata metadata = calendar_metadata();
  for (auto _ : state) {
    std::string json = prefstore::encode_metadata(metadata);
    benchmark::DoNotOptimize(json);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeMetadata);

void BM_DecodeMetadata(benchmark::State& state) {
  std::string json = prefstore::encode_metadata(calendar_metadata());
  for (auto _ : state) {
    Metadata metadata = prefstore::decode_metadata(json);
    benchmark::DoNotOptimize(metadata);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeMetadata);

// ---- Validation ----------------------------------------------------------------------------

// validate_value of an accepted value (the common case of a write).
void BM_ValidateValue(benchmark::State& state, PreferenceDefinition definition, Value value) {
  prefstore::validate_definition(definition);  // the data is coherent before it is measured
  prefstore::validate_value(definition, value);
  for (auto _ : state) {
    benchmark::DoNotOptimize(definition);
    benchmark::DoNotOptimize(value);
    prefstore::validate_value(definition, value);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_ValidateValue, int_min_max, meeting_minutes_definition(),
                  Value(std::int64_t{45}));
BENCHMARK_CAPTURE(BM_ValidateValue, string_pattern_max_length, timezone_definition(),
                  Value(std::string("America/Argentina/Buenos_Aires")));
BENCHMARK_CAPTURE(BM_ValidateValue, string_allowed_values, week_start_definition(),
                  Value(std::string("sunday")));
BENCHMARK_CAPTURE(BM_ValidateValue, string_list_max_items, channels_definition(),
                  Value(StringList{"email", "push", "slack"}));

// validate_value of a refused value: the cost includes building the ValidationError message.
void BM_ValidateValueRejected(benchmark::State& state, PreferenceDefinition definition,
                              Value value) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(value);
    bool refused = false;
    try {
      prefstore::validate_value(definition, value);
    } catch (const std::exception& e) {
      refused = true;
      benchmark::DoNotOptimize(e.what());
    }
    if (!refused) state.SkipWithError("the value was accepted");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_ValidateValueRejected, int_above_max, meeting_minutes_definition(),
                  Value(std::int64_t{500}));
BENCHMARK_CAPTURE(BM_ValidateValueRejected, string_pattern, timezone_definition(),
                  Value(std::string("europe/berlin")));

void BM_ValidateDefinition(benchmark::State& state, PreferenceDefinition definition) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(definition);
    prefstore::validate_definition(definition);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_ValidateDefinition, int_min_max, meeting_minutes_definition());
BENCHMARK_CAPTURE(BM_ValidateDefinition, string_pattern_max_length, timezone_definition());
BENCHMARK_CAPTURE(BM_ValidateDefinition, string_list_allowed_values, channels_definition());

// is_valid_key over the twenty calendar keys (and one refused key), per key.
void BM_IsValidKey(benchmark::State& state) {
  std::vector<std::string> keys;
  for (const PreferenceSet& p : calendar_preferences()) keys.push_back(p.key);
  keys.push_back("Calendar..Timezone");
  std::size_t valid = 0;
  for (auto _ : state) {
    for (const std::string& key : keys) {
      benchmark::DoNotOptimize(key.data());
      valid += prefstore::is_valid_key(key) ? 1 : 0;
    }
  }
  benchmark::DoNotOptimize(valid);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(keys.size()));
}
BENCHMARK(BM_IsValidKey);

void BM_ValidateKey(benchmark::State& state) {
  std::string key = "calendar.working_hours.start";
  for (auto _ : state) {
    benchmark::DoNotOptimize(key);
    prefstore::validate_key(key);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValidateKey);

// ---- Fold ----------------------------------------------------------------------------------

// Folds a log of range(0) events into an empty state; items are events.
void BM_Fold(benchmark::State& state) {
  const std::vector<RecordedEvent> log = calendar_log(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    PreferenceState folded;
    for (const RecordedEvent& event : log) prefstore::apply(folded, event);
    benchmark::DoNotOptimize(folded);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Fold)->Arg(10)->Arg(1000)->Arg(100000);

// ---- Snapshot codec ------------------------------------------------------------------------

void BM_EncodeSnapshot(benchmark::State& state) {
  const PreferenceState preferences = calendar_state();
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string encoded = prefstore::encode_snapshot_state(preferences);
    bytes += encoded.size();
    benchmark::DoNotOptimize(encoded);
  }
  state.counters["preferences"] = static_cast<double>(preferences.size());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_EncodeSnapshot);

void BM_DecodeSnapshot(benchmark::State& state) {
  const std::string bytes = prefstore::encode_snapshot_state(calendar_state());
  for (auto _ : state) {
    PreferenceState decoded =
        prefstore::decode_snapshot_state(bytes, prefstore::kSnapshotFormatVersion);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodeSnapshot);

}  // namespace

BENCHMARK_MAIN();
