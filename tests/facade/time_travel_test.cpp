// Time travel through the Store, against a real PostgreSQL (the test cluster): as-of reads by
// time, position and version, snapshots (the cost claim, corrupt ones skipped and rewritten,
// pruning, snapshot_all), point-in-time restores (one user, every user, dry runs, key filters,
// validation against today's definitions) and diffs between two moments.
//
// TimeTravelModel: random histories (set, set_many, reset, restore) of three users, run on two
// stores at once: one without snapshots, one with SnapshotProjection(every 3) inline. Oracles:
// an in-memory model of every write, folded at each moment (the moments are the AppendResults of
// the writes: recorded_at, global_position, stream_version), and the fold of the store's own
// history(). For the snapshotting store, the load starts at the newest multiple of 3 and replays
// fewer than 3 events; for the other, it replays everything.
//
// Run counts: TimeTravelModel 40 runs, sizes up to 60 (two shared databases, fresh users per
// run). RC_PARAMS (max_success, max_size, seed, reproduce) overrides them as usual.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "prefstore/as_of.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/projections/snapshot_writer.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/storage/unit_of_work.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "render.hpp"
#include "test_cluster.hpp"
#include "unicode.hpp"

namespace prefstore {
namespace {

using prefstore::testing::check_property;
using prefstore::testing::TestCluster;

// ------------------------------------------------------------------------------------------
// Exact renderings (tests/support/render.hpp).

using prefstore::testing::render;
using prefstore::testing::render_values;
using prefstore::testing::value_line;

// The values a user set (not the defaults), in render_values' form.
std::string render_values(const std::map<std::string, ResolvedPreference>& all) {
  std::string out;
  for (const auto& [key, r] : all) {
    if (!r.is_default) out += value_line(key, r.value);
  }
  return out;
}

// The fold of the events of `history` that `as_of` includes.
PreferenceState fold(const std::vector<RecordedEvent>& history, const AsOf& as_of) {
  PreferenceState state;
  for (const RecordedEvent& e : history) {
    if (as_of.includes(e)) apply(state, e);
  }
  return state;
}

// ------------------------------------------------------------------------------------------
// Stores.

std::unique_ptr<Store> open_store(const std::string& url, std::int64_t snapshot_every = 0,
                                  bool strict = false) {
  StoreOptions o;
  o.database_url = url;
  o.strict = strict;
  o.pool.max_size = 4;
  o.definitions_refresh = std::chrono::milliseconds(0);
  if (snapshot_every > 0) {
    o.inline_projections = {std::make_shared<projections::SnapshotProjection>(snapshot_every)};
  }
  return std::make_unique<Store>(o);
}

// Runs one statement in its own committed transaction.
void exec_sql(Store& store, const std::string& sql, const std::vector<storage::SqlValue>& params) {
  storage::UnitOfWork uow(store.pool());
  (void)uow.exec(sql, params);
  uow.commit();
}

std::optional<storage::SnapshotInfo> snapshot_at(Store& store, const std::string& user,
                                                 std::int64_t version) {
  for (const auto& info : storage::list_snapshots(store.pool(), user)) {
    if (info.stream_version == version) return info;
  }
  return std::nullopt;
}

std::vector<std::int64_t> snapshot_versions(Store& store, const std::string& user) {
  std::vector<std::int64_t> out;
  for (const auto& info : storage::list_snapshots(store.pool(), user)) {
    out.push_back(info.stream_version);
  }
  return out;
}

Metadata by(std::string actor, std::string reason = {}) {
  Metadata m;
  m.actor = std::move(actor);
  m.reason = std::move(reason);
  return m;
}

Value i(std::int64_t v) {
  return Value(v);
}
Value s(const char* v) {
  return Value(std::string(v));
}

// ------------------------------------------------------------------------------------------
// TimeTravelModel: the model.

using Change = std::pair<std::string, std::optional<Value>>;

// One write of the history: its user, its actor and its events, each a list of changes (one for
// set and reset; one per key for a restore).
struct Write {
  std::string user;
  std::string actor;
  std::vector<std::vector<Change>> events;
};

// A preference in the model: its value and where it came from.
struct ModelEntry {
  Value value;
  std::int64_t version = 0;
  std::string actor;
  int write = -1;          // index into TravelModel::writes
  bool last_event = true;  // the write's last event (its position is the AppendResult's)
};

struct ModelView {
  std::map<std::string, ModelEntry> entries;
  std::int64_t version = 0;
  int write = -1;  // the write of the last event included (-1: none)
  bool last_event = true;
};

// A moment named by the model: after write `write` (by its time, one microsecond before its
// time, or its position), or a stream version. write -1: before the first write.
struct MomentRef {
  enum class Kind { time, just_before, position, version, latest };
  Kind kind = Kind::latest;
  int write = -1;
  std::int64_t version = 0;
};

std::string describe(const MomentRef& m) {
  switch (m.kind) {
    case MomentRef::Kind::time:
      return "time of write " + std::to_string(m.write);
    case MomentRef::Kind::just_before:
      return "1us before write " + std::to_string(m.write);
    case MomentRef::Kind::position:
      return "position of write " + std::to_string(m.write);
    case MomentRef::Kind::version:
      return "version " + std::to_string(m.version);
    case MomentRef::Kind::latest:
      return "latest";
  }
  return "?";
}

const std::vector<std::string> kKeys = {"a.minutes", "a.timezone", "b.flags", "b.ratio"};
const std::vector<std::string> kActors = {"ada@example.com", "ops", "grace"};

struct TravelModel {
  std::vector<std::string> users;
  std::vector<Write> writes;

  [[nodiscard]] std::int64_t version(const std::string& user) const {
    std::int64_t v = 0;
    for (const Write& w : writes) {
      if (w.user == user) v += static_cast<std::int64_t>(w.events.size());
    }
    return v;
  }

  // The user's view at a moment (latest: every write).
  [[nodiscard]] ModelView view(const std::string& user, const MomentRef& m) const {
    ModelView out;
    int last_write = static_cast<int>(writes.size()) - 1;
    if (m.kind == MomentRef::Kind::time || m.kind == MomentRef::Kind::position) {
      last_write = m.write;
    } else if (m.kind == MomentRef::Kind::just_before) {
      last_write = m.write - 1;
    }
    for (int w = 0; w <= last_write; ++w) {
      const Write& write = writes[static_cast<std::size_t>(w)];
      if (write.user != user) continue;
      for (std::size_t e = 0; e < write.events.size(); ++e) {
        if (m.kind == MomentRef::Kind::version && out.version + 1 > m.version) return out;
        ++out.version;
        out.write = w;
        out.last_event = e + 1 == write.events.size();
        for (const auto& [key, value] : write.events[e]) {
          if (value) {
            out.entries[key] =
                ModelEntry{normalized(*value), out.version, write.actor, w, out.last_event};
          } else {
            out.entries.erase(key);
          }
        }
      }
    }
    return out;
  }
};

std::string render_values(const ModelView& v) {
  std::string out;
  for (const auto& [key, e] : v.entries) out += value_line(key, e.value);
  return out;
}

// The restore's changes the model expects: keys (or every key set now or then) whose value
// differs, by key; a reset for a key set now and unset then.
std::vector<RestoredPreference> expected_restore(const ModelView& now, const ModelView& then,
                                                 const std::optional<std::set<std::string>>& keys) {
  std::set<std::string> candidates;
  if (keys) {
    candidates = *keys;
  } else {
    for (const auto& [k, e] : now.entries) candidates.insert(k);
    for (const auto& [k, e] : then.entries) candidates.insert(k);
  }
  std::vector<RestoredPreference> out;
  for (const std::string& key : candidates) {
    const auto a = now.entries.find(key);
    const auto b = then.entries.find(key);
    if (b != then.entries.end()) {
      if (a == now.entries.end() || render(a->second.value) != render(b->second.value)) {
        out.push_back({key, b->second.value});
      }
    } else if (a != now.entries.end()) {
      out.push_back({key, std::nullopt});
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// TimeTravelModel: the system under test, two stores fed the same commands.

constexpr std::int64_t kEvery = 3;

struct Databases {
  std::string plain_url;
  std::string snapshot_url;
  std::unique_ptr<Store> plain;
  std::unique_ptr<Store> snapshotting;
};

Databases& databases() {
  // Never destroyed: the cluster is shut down at the end of the program, before statics die.
  static Databases* d = [] {
    auto* out = new Databases;
    out->plain_url = TestCluster::instance().fresh_database();
    out->snapshot_url = TestCluster::instance().fresh_database();
    out->plain = open_store(out->plain_url);
    out->snapshotting = open_store(out->snapshot_url, kEvery);
    return out;
  }();
  return *d;
}

struct TravelSut {
  // The stores, and for each the AppendResult of every write of this run (model.writes order).
  std::vector<Store*> stores;
  std::vector<std::vector<storage::AppendResult>> results;

  // The run's user ids: the model's names behind a prefix of this run's own, so that every run
  // (shrinking runs too) starts with streams of its own on the shared databases.
  std::string prefix;

  TravelSut() {
    static std::atomic<int> runs{0};
    prefix = "r" + std::to_string(runs.fetch_add(1)) + "-";
    stores = {databases().plain.get(), databases().snapshotting.get()};
    results.resize(stores.size());
  }

  [[nodiscard]] std::string id(const std::string& user) const { return prefix + user; }

  [[nodiscard]] AsOf resolve(std::size_t store, const MomentRef& m) const {
    const auto& r = results[store];
    switch (m.kind) {
      case MomentRef::Kind::time:
        return AsOf::at_time(m.write < 0 ? from_unix_micros(0)
                                         : r[static_cast<std::size_t>(m.write)].recorded_at);
      case MomentRef::Kind::just_before:
        return AsOf::at_time(r[static_cast<std::size_t>(m.write)].recorded_at -
                             std::chrono::microseconds(1));
      case MomentRef::Kind::position:
        return AsOf::at_position(
            m.write < 0 ? 0 : r[static_cast<std::size_t>(m.write)].global_position);
      case MomentRef::Kind::version:
        return AsOf::at_version(m.version);
      case MomentRef::Kind::latest:
        break;
    }
    return AsOf::latest();
  }

  // Records a write's result; moments must be strictly ordered for the model's "after write k"
  // to name one place in the history.
  void record(std::size_t store, const storage::AppendResult& result) {
    auto& r = results[store];
    if (!r.empty()) {
      RC_ASSERT(result.recorded_at > r.back().recorded_at);
      RC_ASSERT(result.global_position > r.back().global_position);
    }
    r.push_back(result);
  }
};

// The store's state of `user` at `m` agrees with the model exactly, and with the fold of the
// store's own history; the snapshotting store started from the newest multiple of kEvery.
void check_state(const TravelModel& model, TravelSut& sut, std::size_t store,
                 const std::string& user, const MomentRef& m) {
  Store& st = *sut.stores[store];
  const AsOf as_of = sut.resolve(store, m);
  const ModelView want = model.view(user, m);
  const storage::StreamState got = st.state_as_of(sut.id(user), as_of);
  const auto& results = sut.results[store];

  RC_ASSERT(got.version == want.version);
  RC_ASSERT(got.bad_snapshots.empty());
  RC_ASSERT(render_values(got.state) == render_values(want));
  for (const auto& [key, e] : want.entries) {
    const PreferenceEntry& g = got.state.at(key);
    const auto& r = results[static_cast<std::size_t>(e.write)];
    RC_ASSERT(g.version == e.version);
    RC_ASSERT(g.updated_by == e.actor);
    RC_ASSERT(g.updated_at == r.recorded_at);
    if (e.last_event) {
      RC_ASSERT(g.last_position == r.global_position);
    } else {
      RC_ASSERT(g.last_position < r.global_position);
    }
  }
  if (want.write >= 0) {
    const auto& r = results[static_cast<std::size_t>(want.write)];
    RC_ASSERT(got.last_recorded_at == r.recorded_at);
    if (want.last_event) RC_ASSERT(got.last_position == r.global_position);
  } else {
    RC_ASSERT(got.last_position == 0);
  }
  // The fold of the store's own history, exactly (positions of set_many's inner events too).
  const auto history = st.history(sut.id(user));
  RC_ASSERT(render(got.state) == render(fold(history, as_of)));
  // What load_state relies on: within a stream, versions, positions and times grow together.
  for (std::size_t k = 0; k < history.size(); ++k) {
    RC_ASSERT(history[k].stream_version == static_cast<std::int64_t>(k) + 1);
    if (k > 0) {
      RC_ASSERT(history[k].global_position > history[k - 1].global_position);
      RC_ASSERT(history[k].recorded_at >= history[k - 1].recorded_at);
    }
  }

  // The cost: from the newest snapshot at or before the moment, then the events after it.
  if (store == 1) {
    RC_ASSERT(got.snapshot_version == got.version / kEvery * kEvery);
    RC_ASSERT(got.events_replayed == got.version - got.snapshot_version);
    RC_ASSERT(got.events_replayed < kEvery);
  } else {
    RC_ASSERT(got.snapshot_version == 0);
    RC_ASSERT(got.events_replayed == got.version);
  }
}

// After a write of `user`: the current state (preferences_current) equals the model's latest
// view and the fold of the history, entry by entry.
void check_current(const TravelModel& model, TravelSut& sut, const std::string& user) {
  const ModelView want = model.view(user, {});
  for (std::size_t store = 0; store < sut.stores.size(); ++store) {
    Store& st = *sut.stores[store];
    RC_ASSERT(st.version(sut.id(user)) == want.version);
    RC_ASSERT(render_values(st.get_all(sut.id(user))) == render_values(want));
    const PreferenceState projected = storage::CurrentState(st.pool()).get_all(sut.id(user));
    RC_ASSERT(render(projected) == render(fold(st.history(sut.id(user)), AsOf::latest())));
  }
}

using TravelCommand = rc::state::Command<TravelModel, TravelSut>;

rc::Gen<Value> small_value_gen() {
  return rc::gen::oneOf(
      rc::gen::map(rc::gen::inRange<std::int64_t>(-3, 4), [](std::int64_t v) { return Value(v); }),
      rc::gen::map(rc::gen::arbitrary<bool>(), [](bool b) { return Value(b); }),
      rc::gen::map(rc::gen::element(0.0, -0.0, 0.5, -1e300), [](double d) { return Value(d); }),
      rc::gen::map(rc::gen::element<std::string>("UTC", "Europe/Berlin", "Zoë ✓", ""),
                   [](std::string v) { return Value(std::move(v)); }),
      rc::gen::map(rc::gen::element(StringList{}, StringList{"email"}, StringList{"push", "sms"}),
                   [](StringList l) { return Value(std::move(l)); }));
}

MomentRef gen_moment(const TravelModel& m, bool allow_latest) {
  const int writes = static_cast<int>(m.writes.size());
  std::int64_t max_version = 0;
  for (const auto& u : m.users) max_version = std::max(max_version, m.version(u));
  MomentRef r;
  const int kind = *rc::gen::inRange(0, allow_latest ? 5 : 4);
  r.kind = static_cast<MomentRef::Kind>(kind);
  if (r.kind == MomentRef::Kind::just_before && writes == 0) r.kind = MomentRef::Kind::time;
  if (r.kind == MomentRef::Kind::just_before) {
    r.write = *rc::gen::inRange(0, writes);
  } else {
    r.write = *rc::gen::inRange(-1, writes);
  }
  r.version = *rc::gen::inRange<std::int64_t>(0, max_version + 2);
  return r;
}

struct Set : TravelCommand {
  std::string user, key, actor;
  Value value;
  explicit Set(const TravelModel& m)
      : user(*rc::gen::elementOf(m.users)),
        key(*rc::gen::elementOf(kKeys)),
        actor(*rc::gen::elementOf(kActors)),
        value(*small_value_gen()) {}
  void apply(TravelModel& m) const override { m.writes.push_back({user, actor, {{{key, value}}}}); }
  void run(const TravelModel& m0, TravelSut& sut) const override {
    for (std::size_t i = 0; i < sut.stores.size(); ++i) {
      const auto r = sut.stores[i]->set(sut.id(user), key, value, by(actor));
      RC_ASSERT(r.stream_version == m0.version(user) + 1);
      sut.record(i, r);
    }
    check_current(nextState(m0), sut, user);
  }
  void show(std::ostream& os) const override {
    os << "Set(" << user << ", " << key << ", " << render(value) << ", by " << actor << ")";
  }
};

struct SetMany : TravelCommand {
  std::string user, actor;
  std::vector<std::pair<std::string, Value>> values;
  explicit SetMany(const TravelModel& m)
      : user(*rc::gen::elementOf(m.users)), actor(*rc::gen::elementOf(kActors)) {
    const auto keys =
        *rc::gen::nonEmpty(rc::gen::unique<std::vector<std::string>>(rc::gen::elementOf(kKeys)));
    for (const auto& k : keys) values.emplace_back(k, *small_value_gen());
  }
  void apply(TravelModel& m) const override {
    Write w{user, actor, {}};
    for (const auto& [k, v] : values) w.events.push_back({{k, v}});
    m.writes.push_back(std::move(w));
  }
  void run(const TravelModel& m0, TravelSut& sut) const override {
    for (std::size_t i = 0; i < sut.stores.size(); ++i) {
      const auto r = sut.stores[i]->set_many(sut.id(user), values, by(actor));
      RC_ASSERT(r.stream_version == m0.version(user) + static_cast<std::int64_t>(values.size()));
      sut.record(i, r);
    }
    check_current(nextState(m0), sut, user);
  }
  void show(std::ostream& os) const override {
    os << "SetMany(" << user << ",";
    for (const auto& [k, v] : values) os << " " << k << "=" << render(v);
    os << ", by " << actor << ")";
  }
};

struct Reset : TravelCommand {
  std::string user, key, actor;
  explicit Reset(const TravelModel& m)
      : user(*rc::gen::elementOf(m.users)),
        key(*rc::gen::elementOf(kKeys)),
        actor(*rc::gen::elementOf(kActors)) {}
  void apply(TravelModel& m) const override {
    m.writes.push_back({user, actor, {{{key, std::nullopt}}}});
  }
  void run(const TravelModel& m0, TravelSut& sut) const override {
    for (std::size_t i = 0; i < sut.stores.size(); ++i) {
      const auto r = sut.stores[i]->reset(sut.id(user), key, by(actor));
      RC_ASSERT(r.stream_version == m0.version(user) + 1);
      sut.record(i, r);
    }
    check_current(nextState(m0), sut, user);
  }
  void show(std::ostream& os) const override {
    os << "Reset(" << user << ", " << key << ", by " << actor << ")";
  }
};

struct Restore : TravelCommand {
  std::string user, actor;
  MomentRef moment;
  std::optional<std::set<std::string>> keys;
  explicit Restore(const TravelModel& m)
      : user(*rc::gen::elementOf(m.users)),
        actor(*rc::gen::elementOf(kActors)),
        moment(gen_moment(m, false)) {
    if (*rc::gen::inRange(0, 3) == 0) {
      keys = *rc::gen::container<std::set<std::string>>(rc::gen::elementOf(kKeys));
    }
  }
  [[nodiscard]] std::vector<RestoredPreference> changes(const TravelModel& m) const {
    return expected_restore(m.view(user, {}), m.view(user, moment), keys);
  }
  void checkPreconditions(const TravelModel& m) const override {
    const int writes = static_cast<int>(m.writes.size());
    RC_PRE(moment.write < writes);
    RC_PRE(moment.kind != MomentRef::Kind::just_before || moment.write >= 0);
  }
  void apply(TravelModel& m) const override {
    const auto c = changes(m);
    if (c.empty()) return;
    Write w{user, actor, {{}}};
    for (const auto& change : c) w.events[0].emplace_back(change.key, change.value);
    m.writes.push_back(std::move(w));
  }
  void run(const TravelModel& m0, TravelSut& sut) const override {
    const auto want = changes(m0);
    const ModelView then = m0.view(user, moment);
    for (std::size_t i = 0; i < sut.stores.size(); ++i) {
      Store& st = *sut.stores[i];
      const AsOf to = sut.resolve(i, moment);
      const auto before = st.history(sut.id(user));
      RestoreOptions options;
      options.keys = keys;
      options.metadata = by(actor);
      const RestorePlan plan = st.restore(sut.id(user), to, options);
      RC_ASSERT(render(plan.changes) == render(want));
      RC_ASSERT(plan.current_version == m0.version(user));
      RC_ASSERT(plan.target_version == then.version);
      RC_ASSERT(plan.appended.has_value() == !want.empty());
      const auto after = st.history(sut.id(user));
      RC_ASSERT(after.size() == before.size() + (want.empty() ? 0 : 1));
      // The history before the restore is untouched: a prefix of the history after it.
      RC_ASSERT(std::equal(before.begin(), before.end(), after.begin()));
      if (plan.appended) {
        RC_ASSERT(plan.appended->stream_version == m0.version(user) + 1);
        sut.record(i, *plan.appended);
        const RecordedEvent& e = after.back();
        RC_ASSERT(std::holds_alternative<PreferencesRestored>(e.data));
        const auto& restored = std::get<PreferencesRestored>(e.data);
        RC_ASSERT(render(restored.changes) == render(want));
        if (to.kind == AsOf::Kind::time) {
          RC_ASSERT(restored.as_of == to.time);
        }
        RC_ASSERT(e.metadata.actor == actor);
        RC_ASSERT(e.metadata.reason == "point-in-time restore to " + to.describe());
      }
      // Restored keys are as they were then: get_all (preferences_current) and the as-of read
      // of now both show it.
      const auto now = st.state_as_of(sut.id(user), AsOf::latest());
      for (const std::string& key : kKeys) {
        if (keys && keys->count(key) == 0) continue;
        const auto a = now.state.find(key);
        const auto b = then.entries.find(key);
        RC_ASSERT((a == now.state.end()) == (b == then.entries.end()));
        if (b != then.entries.end()) RC_ASSERT(render(a->second.value) == render(b->second.value));
      }
    }
    check_current(nextState(m0), sut, user);
  }
  void show(std::ostream& os) const override {
    os << "Restore(" << user << " to " << describe(moment);
    if (keys) {
      os << ", keys {";
      for (const auto& k : *keys) os << " " << k;
      os << " }";
    }
    os << ", by " << actor << ")";
  }
};

struct CheckAsOf : TravelCommand {
  MomentRef moment;
  explicit CheckAsOf(const TravelModel& m) : moment(gen_moment(m, true)) {}
  void checkPreconditions(const TravelModel& m) const override {
    RC_PRE(moment.write < static_cast<int>(m.writes.size()));
    RC_PRE(moment.kind != MomentRef::Kind::just_before || moment.write >= 0);
  }
  void run(const TravelModel& m, TravelSut& sut) const override {
    for (std::size_t store = 0; store < sut.stores.size(); ++store) {
      for (const std::string& user : m.users) check_state(m, sut, store, user, moment);
    }
    // get_all and get as of the moment give the same values (no definitions: no defaults).
    const std::string& user = m.users.front();
    const AsOf as_of = sut.resolve(0, moment);
    const ModelView want = m.view(user, moment);
    RC_ASSERT(render_values(sut.stores[0]->get_all(sut.id(user), as_of)) == render_values(want));
    for (const std::string& key : kKeys) {
      const auto got = sut.stores[0]->get(sut.id(user), key, as_of);
      const auto it = want.entries.find(key);
      RC_ASSERT(got.has_value() == (it != want.entries.end()));
      if (got) RC_ASSERT(render(*got) == render(it->second.value));
    }
  }
  void show(std::ostream& os) const override { os << "CheckAsOf(" << describe(moment) << ")"; }
};

TEST(TimeTravelModel, AsOfReadsAndRestoresAgreeWithTheModelWithAndWithoutSnapshots) {
  (void)databases();
  check_property(
      [] {
        TravelModel model;
        model.users = {"ada", "grace", "zoë"};
        TravelSut sut;
        rc::state::check(model, sut,
                         rc::state::gen::execOneOfWithArgs<Set, Set, SetMany, Reset, Restore,
                                                           Restore, CheckAsOf, CheckAsOf>());
      },
      40, 60);
}

// ------------------------------------------------------------------------------------------
// Deterministic cases, each on a fresh database.

class TimeTravelTest : public ::testing::Test {
 protected:
  void SetUp() override { m_url = TestCluster::instance().fresh_database(); }
  std::unique_ptr<Store> open(std::int64_t snapshot_every = 0) {
    return open_store(m_url, snapshot_every);
  }
  // A user's history of `n` writes: sets, resets, a set_many and a restore; returns the results.
  static std::vector<storage::AppendResult> write_history(Store& store, const std::string& user,
                                                          int n) {
    std::vector<storage::AppendResult> out;
    for (int k = 0; k < n; ++k) {
      const std::string actor = kActors[static_cast<std::size_t>(k) % kActors.size()];
      switch (k % 5) {
        case 0:
          out.push_back(store.set(user, "a.minutes", i(k), by(actor)));
          break;
        case 1:
          out.push_back(store.set(user, "a.timezone", s(k % 2 ? "UTC" : "Asia/Tokyo"), by(actor)));
          break;
        case 2:
          out.push_back(store.set_many(
              user,
              {{"b.flags", Value(StringList{"e", std::to_string(k)})}, {"b.ratio", Value(k * 0.5)}},
              by(actor)));
          break;
        case 3:
          out.push_back(store.reset(user, "a.timezone", by(actor)));
          break;
        default: {
          RestoreOptions o;
          o.metadata = by(actor);
          const auto plan = store.restore(user, AsOf::at_version(store.version(user) - 3), o);
          if (plan.appended) {
            out.push_back(*plan.appended);
          } else {
            out.push_back(store.reset(user, "b.ratio", by(actor)));
          }
        }
      }
    }
    return out;
  }

  std::string m_url;
};

TEST_F(TimeTravelTest, SnapshotPlusTailEqualsTheFullReplayAtEveryVersion) {
  auto store = open(4);
  (void)write_history(*store, "ada", 14);
  (void)write_history(*store, "bob", 3);  // interleaved positions of another stream
  (void)write_history(*store, "ada", 6);
  const auto history = store->history("ada");
  const std::int64_t last = store->version("ada");
  ASSERT_EQ(static_cast<std::int64_t>(history.size()), last);
  ASSERT_GE(last, 20);
  bool saw_restore = false;
  for (const auto& e : history) saw_restore |= std::holds_alternative<PreferencesRestored>(e.data);
  EXPECT_TRUE(saw_restore) << "the history should hold a PreferencesRestored";

  // The snapshot policy: one at every multiple of 4, all intact.
  std::vector<std::int64_t> want_versions;
  for (std::int64_t v = 4; v <= last; v += 4) want_versions.push_back(v);
  EXPECT_EQ(snapshot_versions(*store, "ada"), want_versions);
  for (const auto& info : storage::list_snapshots(store->pool(), std::string("ada"))) {
    EXPECT_TRUE(info.intact) << "version " << info.stream_version;
    EXPECT_EQ(info.format_version, 1);
    EXPECT_EQ(info.last_position,
              history[static_cast<std::size_t>(info.stream_version - 1)].global_position);
    EXPECT_EQ(info.last_recorded_at,
              history[static_cast<std::size_t>(info.stream_version - 1)].recorded_at);
  }

  for (std::int64_t v = 0; v <= last + 1; ++v) {
    SCOPED_TRACE("version " + std::to_string(v));
    storage::UnitOfWork uow(store->pool());
    const auto got = storage::load_state(uow, "ada", AsOf::at_version(v));
    const std::int64_t at = std::min(v, last);
    EXPECT_EQ(render(got.state), render(fold(history, AsOf::at_version(v))));
    EXPECT_EQ(got.version, at);
    EXPECT_EQ(got.snapshot_version, at / 4 * 4);
    EXPECT_EQ(got.events_replayed, at % 4);
    if (at > 0) {
      EXPECT_EQ(got.last_position, history[static_cast<std::size_t>(at - 1)].global_position);
      EXPECT_EQ(got.last_recorded_at, history[static_cast<std::size_t>(at - 1)].recorded_at);
    }
  }
  // Latest, by the store: the same as the projected current state, entry by entry.
  const auto now = store->state_as_of("ada", AsOf::latest());
  EXPECT_EQ(render(now.state), render(fold(history, AsOf::latest())));
  EXPECT_EQ(render(now.state), render(storage::CurrentState(store->pool()).get_all("ada")));
  EXPECT_EQ(now.snapshot_version, last / 4 * 4);
}

// Writes 10 events for "ada" with a snapshot every 3 (versions 3, 6, 9); returns the history.
std::vector<RecordedEvent> ten_events_with_snapshots(Store& store) {
  for (int k = 1; k <= 10; ++k) {
    (void)store.set("ada", k % 2 ? "a.minutes" : "a.timezone", k % 2 ? i(k) : s("UTC"), by("ada"));
  }
  return store.history("ada");
}

// Changes ada's snapshot at `version` in place: `set` is the SET clause of an UPDATE of its row,
// with `params` as $2, $3, ...
void change_snapshot(Store& store, std::int64_t version, const std::string& set,
                     std::vector<storage::SqlValue> params = {}) {
  params.insert(params.begin(), std::string("ada"));
  exec_sql(store,
           "UPDATE prefstore.snapshots SET " + set +
               " WHERE stream_id = $1 AND stream_version = " + std::to_string(version),
           params);
}

// The read skipped exactly one snapshot, the one at `version`, for a reason naming `problem`.
void expect_one_bad_snapshot(const storage::StreamState& got, std::int64_t version,
                             const std::string& problem) {
  ASSERT_EQ(got.bad_snapshots.size(), 1u);
  EXPECT_EQ(got.bad_snapshots[0].stream_version, version);
  EXPECT_NE(got.bad_snapshots[0].problem.find(problem), std::string::npos)
      << got.bad_snapshots[0].problem;
}

// ada's snapshot at `version` is there, intact and in format 1: rewritten from the events.
void expect_rewritten(Store& store, std::int64_t version) {
  const auto info = snapshot_at(store, "ada", version);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->intact);
  EXPECT_EQ(info->format_version, 1);
}

TEST_F(TimeTravelTest, ASnapshotWithAFlippedByteIsSkippedReportedAndRewritten) {
  auto store = open(3);
  const auto history = ten_events_with_snapshots(*store);
  ASSERT_EQ(snapshot_versions(*store, "ada"), (std::vector<std::int64_t>{3, 6, 9}));
  change_snapshot(*store, 6, "state = set_byte(state, 12, get_byte(state, 12) # 1)");
  ASSERT_FALSE(snapshot_at(*store, "ada", 6)->intact);

  const auto got = store->state_as_of("ada", AsOf::at_version(7));
  EXPECT_EQ(render(got.state), render(fold(history, AsOf::at_version(7))));
  ASSERT_NO_FATAL_FAILURE(expect_one_bad_snapshot(got, 6, "checksum"));
  EXPECT_EQ(got.snapshot_version, 3);
  EXPECT_EQ(got.events_replayed, 4);

  // Rewritten from the events: intact again, and used by the next read.
  ASSERT_NO_FATAL_FAILURE(expect_rewritten(*store, 6));
  EXPECT_EQ(snapshot_at(*store, "ada", 6)->last_position, history[5].global_position);
  const auto again = store->state_as_of("ada", AsOf::at_version(7));
  EXPECT_TRUE(again.bad_snapshots.empty());
  EXPECT_EQ(again.snapshot_version, 6);
  EXPECT_EQ(again.events_replayed, 1);
  EXPECT_EQ(render(again.state), render(got.state));
}

TEST_F(TimeTravelTest, ASnapshotOfAnUnknownFormatIsSkippedReportedAndRewritten) {
  auto store = open(3);
  const auto history = ten_events_with_snapshots(*store);
  change_snapshot(*store, 9, "format_version = 99");
  ASSERT_FALSE(snapshot_at(*store, "ada", 9)->intact);

  const auto got = store->state_as_of("ada", AsOf::latest());
  EXPECT_EQ(render(got.state), render(fold(history, AsOf::latest())));
  ASSERT_NO_FATAL_FAILURE(expect_one_bad_snapshot(got, 9, "99"));
  EXPECT_EQ(got.snapshot_version, 6);
  EXPECT_EQ(got.events_replayed, 4);

  ASSERT_NO_FATAL_FAILURE(expect_rewritten(*store, 9));
  EXPECT_EQ(store->state_as_of("ada", AsOf::latest()).snapshot_version, 9);
}

TEST_F(TimeTravelTest, UndecodableSnapshotsWithMatchingChecksumsAreSkippedDownToTheStart) {
  auto store = open(3);
  const auto history = ten_events_with_snapshots(*store);
  // Garbage whose checksum matches: only the decoder can tell; every snapshot of the stream.
  exec_sql(*store,
           "UPDATE prefstore.snapshots SET state = '\\x0107'::bytea, checksum = "
           "sha256(convert_to(stream_id || E'\\n' || stream_version || E'\\n' || "
           "format_version || E'\\n' || last_position || E'\\n' || "
           "(extract(epoch FROM last_recorded_at) * 1000000)::bigint || E'\\n', 'UTF8') || "
           "'\\x0107'::bytea) WHERE stream_id = $1",
           {std::string("ada")});
  const auto got = store->state_as_of("ada", AsOf::at_time(history[9].recorded_at));
  EXPECT_EQ(render(got.state), render(fold(history, AsOf::latest())));
  ASSERT_EQ(got.bad_snapshots.size(), 3u);
  EXPECT_EQ(got.bad_snapshots[0].stream_version, 9);  // newest first
  EXPECT_EQ(got.bad_snapshots[1].stream_version, 6);
  EXPECT_EQ(got.bad_snapshots[2].stream_version, 3);
  EXPECT_EQ(got.snapshot_version, 0);
  EXPECT_EQ(got.events_replayed, 10);
  for (const auto& info : storage::list_snapshots(store->pool(), std::string("ada"))) {
    EXPECT_TRUE(info.intact) << "version " << info.stream_version << " was not rewritten";
  }
  const auto again = store->state_as_of("ada", AsOf::at_position(history[7].global_position));
  EXPECT_TRUE(again.bad_snapshots.empty());
  EXPECT_EQ(again.snapshot_version, 6);
  EXPECT_EQ(render(again.state), render(fold(history, AsOf::at_version(8))));
}

// Regression (review finding): the checksum covered only the state bytes, so a snapshot moved
// to another place in the stream (here: an earlier last_position) was trusted, and a read as of
// a position before its real one started from it.
TEST_F(TimeTravelTest, ASnapshotWhosePlaceWasChangedFailsItsChecksum) {
  auto store = open(3);
  const auto history = ten_events_with_snapshots(*store);
  change_snapshot(*store, 9, "last_position = $2::bigint",
                  {std::to_string(history[4].global_position)});
  ASSERT_FALSE(snapshot_at(*store, "ada", 9)->intact);
  const auto got = store->state_as_of("ada", AsOf::at_position(history[4].global_position));
  EXPECT_EQ(render(got.state), render(fold(history, AsOf::at_version(5))));
  EXPECT_EQ(got.version, 5);
  ASSERT_EQ(got.bad_snapshots.size(), 1u);
  EXPECT_EQ(got.bad_snapshots[0].stream_version, 9);
  EXPECT_EQ(got.snapshot_version, 3);
}

// A user with a definition-checked key, for restore tests: "calendar.minutes" int, max 60.
void define_minutes(Store& store, double max) {
  PreferenceDefinition d;
  d.key = "calendar.minutes";
  d.type = ValueType::integer;
  d.default_value = i(30);
  d.constraints.max = max;
  (void)store.define(d, by("admin"));
}

TEST_F(TimeTravelTest, RestoreWithKeysRestoresOnlyThoseKeys) {
  auto store = open();
  (void)store->set("ada", "a.minutes", i(1));
  (void)store->set("ada", "a.timezone", s("UTC"));
  const auto t = store->set("ada", "b.ratio", Value(0.5)).recorded_at;
  (void)store->set("ada", "a.minutes", i(2));
  (void)store->set("ada", "a.timezone", s("Asia/Tokyo"));
  (void)store->reset("ada", "b.ratio");
  (void)store->set("ada", "b.flags", Value(StringList{"x"}));

  RestoreOptions o;
  o.keys = std::set<std::string>{"a.minutes", "b.ratio", "b.flags", "c.never"};
  o.metadata = by("ops", "ticket 7");
  const RestorePlan plan = store->restore("ada", AsOf::at_time(t), o);
  EXPECT_EQ(render(plan.changes),
            render(std::vector<RestoredPreference>{
                {"a.minutes", i(1)}, {"b.flags", std::nullopt}, {"b.ratio", Value(0.5)}}));
  EXPECT_EQ(plan.target_version, 3);
  EXPECT_EQ(plan.current_version, 7);
  ASSERT_TRUE(plan.appended.has_value());
  EXPECT_EQ(plan.appended->stream_version, 8);

  const auto all = store->get_all("ada");
  EXPECT_EQ(render_values(all),
            "\"a.minutes\" = int 1\n\"a.timezone\" = string \"Asia/Tokyo\"\n"
            "\"b.ratio\" = double 0.5 (0x1p-1)\n");
  const auto last = store->history("ada").back();
  EXPECT_EQ(last.metadata.actor, "ops");
  EXPECT_EQ(last.metadata.reason, "ticket 7");
  EXPECT_EQ(std::get<PreferencesRestored>(last.data).as_of, t);
}

TEST_F(TimeTravelTest, DryRunAppendsNothingAndReturnsThePlan) {
  auto store = open();
  const auto first = store->set("ada", "a.minutes", i(1));
  (void)store->set("ada", "a.minutes", i(2));
  (void)store->set("ada", "a.timezone", s("UTC"));
  const auto before = store->history("ada");
  RestoreOptions o;
  o.dry_run = true;
  const RestorePlan plan = store->restore("ada", AsOf::at_position(first.global_position), o);
  EXPECT_EQ(render(plan.changes), render(std::vector<RestoredPreference>{
                                      {"a.minutes", i(1)}, {"a.timezone", std::nullopt}}));
  EXPECT_EQ(plan.target_version, 1);
  EXPECT_EQ(plan.current_version, 3);
  EXPECT_FALSE(plan.appended.has_value());
  EXPECT_EQ(store->history("ada"), before);
  EXPECT_EQ(render_values(store->get_all("ada")),
            "\"a.minutes\" = int 2\n\"a.timezone\" = string \"UTC\"\n");
}

TEST_F(TimeTravelTest, RestoringToTheCurrentStateAppendsNothing) {
  auto store = open();
  (void)store->set("ada", "a.minutes", i(1));
  const auto second = store->set("ada", "a.minutes", i(2));
  (void)store->set("ada", "a.minutes", i(2));
  const RestorePlan plan = store->restore("ada", AsOf::at_version(second.stream_version));
  EXPECT_TRUE(plan.changes.empty());
  EXPECT_FALSE(plan.appended.has_value());
  EXPECT_EQ(store->version("ada"), 3);
}

TEST_F(TimeTravelTest, ARestoredValueThatBreaksTodaysDefinitionIsRefusedAndNothingWritten) {
  auto store = open();
  define_minutes(*store, 60);
  (void)store->set("ada", "calendar.minutes", i(50));
  const auto t = store->set("ada", "a.timezone", s("UTC")).recorded_at;
  (void)store->set("ada", "calendar.minutes", i(30));
  (void)store->set("ada", "a.timezone", s("Asia/Tokyo"));
  define_minutes(*store, 40);
  const auto before = store->history("ada");
  try {
    (void)store->restore("ada", AsOf::at_time(t));
    ADD_FAILURE() << "restore of a value above today's maximum succeeded";
  } catch (const ValidationError& e) {
    EXPECT_NE(std::string(e.what()).find("calendar.minutes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("50"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store->history("ada"), before);
  EXPECT_EQ(store->get("ada", "calendar.minutes"), i(30));
  // Leaving the key out restores the rest.
  RestoreOptions o;
  o.keys = std::set<std::string>{"a.timezone"};
  const auto plan = store->restore("ada", AsOf::at_time(t), o);
  ASSERT_TRUE(plan.appended.has_value());
  EXPECT_EQ(store->get("ada", "a.timezone"), s("UTC"));
  EXPECT_EQ(store->get("ada", "calendar.minutes"), i(30));
}

TEST_F(TimeTravelTest, PreferencesCurrentAgreesWithTheFoldAfterARestore) {
  auto store = open();
  define_minutes(*store, 60);
  (void)store->set_many("ada", {{"calendar.minutes", i(45)}, {"a.timezone", s("UTC")}}, by("ada"));
  const auto t = store->set("ada", "b.flags", Value(StringList{"a", "b"}), by("ada"));
  (void)store->reset("ada", "calendar.minutes", by("grace"));
  (void)store->set("ada", "a.timezone", s("Europe/Berlin"), by("grace"));
  (void)store->reset("ada", "b.flags", by("grace"));
  (void)store->set("ada", "b.ratio", Value(-0.0), by("grace"));
  RestoreOptions o;
  o.metadata = by("ops");
  const auto plan = store->restore("ada", AsOf::at_version(t.stream_version), o);
  ASSERT_TRUE(plan.appended.has_value());
  const auto history = store->history("ada");
  const PreferenceState folded = fold(history, AsOf::latest());
  EXPECT_EQ(render(storage::CurrentState(store->pool()).get_all("ada")), render(folded));
  EXPECT_EQ(render_values(folded),
            "\"a.timezone\" = string \"UTC\"\n\"b.flags\" = list [\"a\", \"b\"]\n"
            "\"calendar.minutes\" = int 45\n");
  const auto all = store->get_all("ada");
  ASSERT_EQ(all.count("calendar.minutes"), 1u);
  EXPECT_FALSE(all.at("calendar.minutes").is_default);
  ASSERT_TRUE(all.at("calendar.minutes").entry.has_value());
  EXPECT_EQ(all.at("calendar.minutes").entry->version, plan.appended->stream_version);
  EXPECT_EQ(all.at("calendar.minutes").entry->updated_by, "ops");
  EXPECT_EQ(all.at("calendar.minutes").entry->last_position, plan.appended->global_position);
  EXPECT_EQ(store->get("ada", "b.ratio"), std::nullopt);
}

TEST_F(TimeTravelTest, ReadsAsOfAMomentFillOtherKeysWithTodaysDefaults) {
  auto store = open();
  const auto t0 = store->set("bob", "a.minutes", i(1)).recorded_at;  // before ada's first event
  define_minutes(*store, 60);
  const auto t1 = store->set("ada", "calendar.minutes", i(50)).recorded_at;
  (void)store->set("ada", "a.timezone", s("UTC"));
  const auto t2 = store->reset("ada", "calendar.minutes").recorded_at;

  EXPECT_EQ(store->get("ada", "calendar.minutes", AsOf::at_time(t1)), i(50));
  EXPECT_EQ(store->get("ada", "calendar.minutes", AsOf::at_time(t2)), i(30));  // the default
  EXPECT_EQ(store->get("ada", "calendar.minutes", AsOf::at_time(t0)), i(30));
  EXPECT_EQ(store->get("ada", "a.timezone", AsOf::at_time(t1)), std::nullopt);
  EXPECT_EQ(store->get("ada", "a.timezone", AsOf::at_version(2)), s("UTC"));
  EXPECT_THROW((void)store->get("ada", "Not A Key", AsOf::latest()), ValidationError);
  EXPECT_THROW((void)store->state_as_of("$def:calendar.minutes", AsOf::latest()), ValidationError);

  const auto then = store->get_all("ada", AsOf::at_time(t1));
  ASSERT_EQ(then.size(), 1u);
  EXPECT_FALSE(then.at("calendar.minutes").is_default);
  ASSERT_TRUE(then.at("calendar.minutes").entry.has_value());
  EXPECT_EQ(then.at("calendar.minutes").entry->version, 1);
  const auto before = store->get_all("ada", AsOf::at_time(t0));
  ASSERT_EQ(before.size(), 1u);
  EXPECT_TRUE(before.at("calendar.minutes").is_default);
  EXPECT_EQ(before.at("calendar.minutes").value, i(30));
  const auto now = store->get_all("ada", AsOf::latest());
  ASSERT_EQ(now.size(), 2u);
  EXPECT_TRUE(now.at("calendar.minutes").is_default);
  EXPECT_EQ(now.at("a.timezone").value, s("UTC"));
}

TEST_F(TimeTravelTest, RestoreInStrictModeWorksForDefinedKeys) {
  auto store = open_store(m_url, 0, /*strict=*/true);
  define_minutes(*store, 60);
  const auto t = store->set("ada", "calendar.minutes", i(45));
  (void)store->reset("ada", "calendar.minutes");
  const auto plan = store->restore("ada", AsOf::at_position(t.global_position));
  ASSERT_TRUE(plan.appended.has_value());
  EXPECT_EQ(store->get("ada", "calendar.minutes"), i(45));
  (void)store->set("ada", "calendar.minutes", i(10));
  const auto back = store->restore("ada", AsOf::at_version(0));  // before anything
  ASSERT_TRUE(back.appended.has_value());
  EXPECT_EQ(render(back.changes),
            render(std::vector<RestoredPreference>{{"calendar.minutes", std::nullopt}}));
  EXPECT_EQ(store->get("ada", "calendar.minutes"), i(30));
  EXPECT_TRUE(storage::CurrentState(store->pool()).get_all("ada").empty());
}

TEST_F(TimeTravelTest, LongStreamsAreReadInPagesWithoutLosingEvents) {
  auto store = open();
  // 1,210 events in 13 appends of up to 100 keys (load_state reads 500 events a page).
  for (int round = 0; round < 13; ++round) {
    std::vector<std::pair<std::string, Value>> values;
    const int n = round == 12 ? 10 : 100;
    for (int k = 0; k < n; ++k)
      values.emplace_back("k.key" + std::to_string(k), i(round * 1000 + k));
    (void)store->set_many("ada", values);
  }
  const auto history = store->history("ada", 5000);
  ASSERT_EQ(history.size(), 1210u);
  for (const std::int64_t v : {499, 500, 501, 999, 1000, 1001, 1209, 1210}) {
    SCOPED_TRACE("version " + std::to_string(v));
    const auto got = store->state_as_of("ada", AsOf::at_version(v));
    EXPECT_EQ(got.version, v);
    EXPECT_EQ(got.events_replayed, v);
    EXPECT_EQ(render(got.state), render(fold(history, AsOf::at_version(v))));
  }
  const auto at_position =
      store->state_as_of("ada", AsOf::at_position(history[1099].global_position));
  EXPECT_EQ(at_position.version, 1100);
  const auto latest = store->state_as_of("ada", AsOf::latest());
  EXPECT_EQ(latest.version, 1210);
  EXPECT_EQ(render(latest.state), render(storage::CurrentState(store->pool()).get_all("ada")));
  // A snapshot, then a page-long tail again.
  EXPECT_TRUE(store->snapshot("ada"));
  const auto diff = store->diff("ada", AsOf::at_version(0), AsOf::latest());
  EXPECT_EQ(diff.to_version, 1210);
  ASSERT_EQ(diff.keys.size(), 100u);
  EXPECT_EQ(diff.keys[0].changes, 13);
  EXPECT_EQ(diff.keys[50].changes, 12);
}

TEST_F(TimeTravelTest, SnapshotAllAndRestoreAllWalkMoreThanOnePageOfUsers) {
  auto store = open();
  // 520 users (the walks read 500 stream ids a page), one event each before the moment and one
  // after it for every fifth user.
  constexpr int kUsers = 520;
  const auto user = [](int u) {
    char name[16];
    std::snprintf(name, sizeof name, "u%04d", u);
    return std::string(name);
  };
  storage::AppendResult last;
  for (int u = 0; u < kUsers; ++u) last = store->set(user(u), "a.minutes", i(u));
  const auto t = last.recorded_at;
  for (int u = 0; u < kUsers; u += 5) (void)store->set(user(u), "a.minutes", i(-u - 1));

  std::vector<storage::SnapshotRunProgress> calls;
  const auto snap = store->snapshot_all([&](const auto& p) { calls.push_back(p); });
  EXPECT_EQ(snap.streams, kUsers);
  EXPECT_EQ(snap.written, kUsers);
  EXPECT_EQ(snap.total, kUsers);
  ASSERT_EQ(calls.size(), 6u);  // at 100, 200, .. 500, and at the end
  EXPECT_EQ(calls[0].streams, 100);
  EXPECT_EQ(calls.back().streams, kUsers);
  std::int64_t listed = 0;
  std::string after;
  std::int64_t after_version = 0;
  for (;;) {
    const auto page =
        storage::list_snapshots(store->pool(), std::nullopt, 200, after, after_version);
    if (page.empty()) break;
    listed += static_cast<std::int64_t>(page.size());
    after = page.back().stream_id;
    after_version = page.back().stream_version;
  }
  EXPECT_EQ(listed, kUsers);

  std::vector<RestoreAllProgress> restore_calls;
  const auto run =
      store->restore_all(AsOf::at_time(t), {}, [&](const auto& p) { restore_calls.push_back(p); });
  EXPECT_EQ(run.users, kUsers);
  EXPECT_EQ(run.restored, kUsers / 5);
  EXPECT_EQ(run.failed, 0);
  ASSERT_EQ(restore_calls.size(), 6u);
  for (int u = 0; u < kUsers; u += 7) {
    EXPECT_EQ(store->get(user(u), "a.minutes"), i(u)) << user(u);
  }
  EXPECT_EQ(store->get(user(kUsers - 5), "a.minutes"), i(kUsers - 5));
}

TEST_F(TimeTravelTest, RestoreAllPutsEveryUserBackAndCountsFailures) {
  auto store = open();
  define_minutes(*store, 60);
  (void)store->set("ada", "a.minutes", i(1));
  (void)store->set("bob", "a.minutes", i(5));
  (void)store->set("dave", "calendar.minutes", i(50));
  (void)store->set("erin", "a.timezone", s("UTC"));
  const auto t = store->set("bob", "a.timezone", s("UTC")).recorded_at;
  (void)store->set("ada", "a.minutes", i(2));
  (void)store->set("ada", "b.ratio", Value(1.5));
  (void)store->reset("bob", "a.minutes");
  (void)store->set("carol", "a.minutes", i(7));  // no events at t: restored to nothing
  (void)store->set("dave", "calendar.minutes", i(30));
  define_minutes(*store, 40);  // dave's value then no longer fits

  std::map<std::string, std::string> then;
  for (const char* u : {"ada", "bob", "carol", "dave", "erin"}) {
    then[u] = render_values(store->state_as_of(u, AsOf::at_time(t)).state);
  }
  const std::int64_t dave_version = store->version("dave");
  const std::int64_t erin_version = store->version("erin");

  std::vector<RestoreAllProgress> calls;
  const RestoreAllProgress run = store->restore_all(
      AsOf::at_time(t), {}, [&](const RestoreAllProgress& p) { calls.push_back(p); });
  EXPECT_EQ(run.users, 5);  // not the "$def:" stream
  EXPECT_EQ(run.total, 5);
  EXPECT_EQ(run.restored, 3);  // ada, bob, carol; erin is already as she was
  EXPECT_EQ(run.failed, 1);
  ASSERT_EQ(run.failures.size(), 1u);
  EXPECT_EQ(run.failures[0].rfind("dave: ", 0), 0u) << run.failures[0];
  EXPECT_NE(run.failures[0].find("calendar.minutes"), std::string::npos) << run.failures[0];
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back().users, 5);
  EXPECT_EQ(calls.back().restored, 3);
  EXPECT_EQ(calls.back().failed, 1);

  for (const char* u : {"ada", "bob", "carol", "erin"}) {
    EXPECT_EQ(render_values(store->state_as_of(u, AsOf::latest()).state), then[u]) << u;
    EXPECT_EQ(render_values(storage::CurrentState(store->pool()).get_all(u)), then[u]) << u;
  }
  EXPECT_EQ(then["carol"], "");
  EXPECT_EQ(store->version("dave"), dave_version);
  EXPECT_EQ(store->version("erin"), erin_version);
  EXPECT_EQ(store->get("dave", "calendar.minutes"), i(30));
}

TEST_F(TimeTravelTest, DiffShowsWhatChangedWhoChangedItAndHidesWhatCameBack) {
  auto store = open();
  (void)store->set("ada", "a.minutes", i(1), by("ada"));
  (void)store->set("ada", "a.timezone", s("UTC"), by("ada"));
  const auto t1 = store->set("ada", "b.flags", Value(true), by("ada"));
  (void)store->set("ada", "a.minutes", i(2), by("grace", "first try"));
  (void)store->set("ada", "a.minutes", i(3), by("linus", "the right value"));
  (void)store->reset("ada", "a.timezone", by("grace"));
  (void)store->set("ada", "b.flags", Value(false), by("grace"));
  (void)store->set("ada", "b.flags", Value(true), by("grace"));
  const auto t2 = store->set("ada", "b.ratio", Value(0.25), by("ops"));
  (void)store->set("ada", "a.minutes", i(99), by("later"));

  const auto check = [&](const StateDiff& d) {
    EXPECT_EQ(d.user, "ada");
    EXPECT_EQ(d.from_version, 3);
    EXPECT_EQ(d.to_version, 9);
    ASSERT_EQ(d.keys.size(), 3u);
    const KeyDiff& minutes = d.keys[0];
    EXPECT_EQ(minutes.key, "a.minutes");
    ASSERT_TRUE(minutes.before && minutes.after);
    EXPECT_EQ(minutes.before->value, i(1));
    EXPECT_EQ(minutes.after->value, i(3));
    EXPECT_EQ(minutes.changes, 2);
    EXPECT_EQ(minutes.last_version, 5);
    EXPECT_EQ(minutes.last_metadata.actor, "linus");
    EXPECT_EQ(minutes.last_metadata.reason, "the right value");
    EXPECT_EQ(minutes.last_event_type, "PreferenceSet");
    const KeyDiff& timezone = d.keys[1];
    EXPECT_EQ(timezone.key, "a.timezone");
    ASSERT_TRUE(timezone.before.has_value());
    EXPECT_EQ(timezone.before->value, s("UTC"));
    EXPECT_FALSE(timezone.after.has_value());
    EXPECT_EQ(timezone.changes, 1);
    EXPECT_EQ(timezone.last_metadata.actor, "grace");
    EXPECT_EQ(timezone.last_event_type, "PreferenceReset");
    const KeyDiff& ratio = d.keys[2];
    EXPECT_EQ(ratio.key, "b.ratio");
    EXPECT_FALSE(ratio.before.has_value());
    ASSERT_TRUE(ratio.after.has_value());
    EXPECT_EQ(ratio.after->value, Value(0.25));
    EXPECT_EQ(ratio.last_position, t2.global_position);
    EXPECT_EQ(ratio.last_changed_at, t2.recorded_at);
    EXPECT_EQ(ratio.last_metadata.actor, "ops");
  };
  {
    SCOPED_TRACE("by time");
    check(store->diff("ada", AsOf::at_time(t1.recorded_at), AsOf::at_time(t2.recorded_at)));
  }
  {
    SCOPED_TRACE("by version");
    check(store->diff("ada", AsOf::at_version(3), AsOf::at_version(9)));
  }
  {
    SCOPED_TRACE("by position");
    check(store->diff("ada", AsOf::at_position(t1.global_position),
                      AsOf::at_position(t2.global_position)));
  }
  const StateDiff all =
      store->diff("ada", AsOf::at_version(3), AsOf::at_version(9), /*include_unchanged=*/true);
  ASSERT_EQ(all.keys.size(), 4u);
  EXPECT_EQ(all.keys[2].key, "b.flags");
  EXPECT_EQ(all.keys[2].changes, 2);
  EXPECT_TRUE(all.keys[2].net_unchanged());
  ASSERT_TRUE(all.keys[2].before && all.keys[2].after);
  EXPECT_EQ(all.keys[2].before->value, Value(true));
  EXPECT_EQ(all.keys[2].after->value, Value(true));

  EXPECT_THROW(
      (void)store->diff("ada", AsOf::at_time(t2.recorded_at), AsOf::at_time(t1.recorded_at)),
      ValidationError);
  EXPECT_THROW((void)store->diff("ada", AsOf::at_version(9), AsOf::at_version(3)), ValidationError);
  // Regression (review finding): two times with no event between them, given backwards.
  const Timestamp last = store->history("ada").back().recorded_at;
  EXPECT_THROW((void)store->diff("ada", AsOf::at_time(last + std::chrono::seconds(2)),
                                 AsOf::at_time(last + std::chrono::seconds(1))),
               ValidationError);
  EXPECT_TRUE(store->diff("ada", AsOf::at_version(4), AsOf::at_version(4)).keys.empty());
}

TEST_F(TimeTravelTest, TheSnapshotPolicyRunsAsynchronouslyToo) {
  auto store = open();  // no inline projection
  define_minutes(*store, 60);
  define_minutes(*store, 50);  // "$def:calendar.minutes" at version 2: never snapshotted
  for (int k = 0; k < 7; ++k) (void)store->set("ada", "a.minutes", i(k));
  (void)store->set_many("bob", {{"a.minutes", i(1)},
                                {"a.timezone", s("UTC")},
                                {"b.ratio", Value(0.5)},
                                {"calendar.minutes", i(40)}});
  EXPECT_TRUE(storage::list_snapshots(store->pool(), std::nullopt).empty());

  projections::ProjectionRunner runner(store->pool(),
                                       {std::make_shared<projections::SnapshotProjection>(2)});
  EXPECT_EQ(runner.catch_up(), 13);
  EXPECT_EQ(snapshot_versions(*store, "ada"), (std::vector<std::int64_t>{2, 4, 6}));
  EXPECT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{2, 4}));
  EXPECT_TRUE(
      storage::list_snapshots(store->pool(), definition_stream_id("calendar.minutes")).empty());
  const auto got = store->state_as_of("ada", AsOf::latest());
  EXPECT_EQ(got.snapshot_version, 6);
  EXPECT_EQ(got.events_replayed, 1);
  EXPECT_EQ(render(got.state), render(fold(store->history("ada"), AsOf::latest())));
  const auto bob = store->state_as_of("bob", AsOf::at_version(3));
  EXPECT_EQ(bob.snapshot_version, 2);
  EXPECT_EQ(render(bob.state), render(fold(store->history("bob"), AsOf::at_version(3))));
  EXPECT_THROW(projections::SnapshotProjection(0), UsageError);
}

TEST_F(TimeTravelTest, PruneKeepsTheNewestSnapshotsOfEveryStream) {
  auto store = open(2);
  (void)write_history(*store, "ada", 10);  // set_many: more than 10 events
  for (int k = 0; k < 5; ++k) (void)store->set("bob", "a.minutes", i(k));
  const std::int64_t ada = store->version("ada");
  std::vector<std::int64_t> ada_all;
  for (std::int64_t v = 2; v <= ada; v += 2) ada_all.push_back(v);
  ASSERT_EQ(snapshot_versions(*store, "ada"), ada_all);
  ASSERT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{2, 4}));

  EXPECT_THROW((void)storage::prune_snapshots(store->pool(), 0), UsageError);
  const std::int64_t deleted = storage::prune_snapshots(store->pool(), 2);
  EXPECT_EQ(deleted, static_cast<std::int64_t>(ada_all.size()) - 2);
  EXPECT_EQ(snapshot_versions(*store, "ada"),
            (std::vector<std::int64_t>{ada_all[ada_all.size() - 2], ada_all.back()}));
  EXPECT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{2, 4}));
  // The reads still agree with the fold.
  EXPECT_EQ(render(store->state_as_of("ada", AsOf::at_version(5)).state),
            render(fold(store->history("ada"), AsOf::at_version(5))));

  // A snapshot whose checksum fails goes whatever its age.
  exec_sql(*store,
           "UPDATE prefstore.snapshots SET state = set_byte(state, 3, get_byte(state, 3) # 4) "
           "WHERE stream_id = $1 AND stream_version = 4",
           {std::string("bob")});
  EXPECT_EQ(storage::prune_snapshots(store->pool(), 5), 1);
  EXPECT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{2}));
}

// Regression (review finding): corrupt rows were ranked with the intact ones, so with keep 1 a
// corrupt newest snapshot took the place of the one to keep and the stream lost every snapshot.
TEST_F(TimeTravelTest, PruneKeepsIntactSnapshotsWhenTheNewestIsCorrupt) {
  auto store = open(2);
  for (int k = 0; k < 6; ++k) (void)store->set("bob", "a.minutes", i(k));
  ASSERT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{2, 4, 6}));
  exec_sql(*store,
           "UPDATE prefstore.snapshots SET state = set_byte(state, 3, get_byte(state, 3) # 4) "
           "WHERE stream_id = $1 AND stream_version = 6",
           {std::string("bob")});
  EXPECT_EQ(storage::prune_snapshots(store->pool(), 1), 2);
  EXPECT_EQ(snapshot_versions(*store, "bob"), (std::vector<std::int64_t>{4}));
}

// Regression (review finding): restore_all stopped at the first user whose history cannot be
// read (CorruptDataError), although its contract is that a failing user is listed and the run
// goes on.
TEST_F(TimeTravelTest, RestoreAllGoesOnPastAUserWhoseHistoryCannotBeRead) {
  auto store = open();
  const auto t0 = store->set("amy", "a.minutes", i(1)).recorded_at;
  (void)store->set("cat", "a.minutes", i(1));
  (void)store->set("amy", "a.minutes", i(2));
  (void)store->set("cat", "a.minutes", i(2));
  // "bob" holds an event of a type this build does not know.
  exec_sql(*store,
           "WITH s AS (INSERT INTO prefstore.streams (stream_id, version, last_recorded_at) "
           "VALUES ($1, 1, now()) RETURNING stream_id) INSERT INTO prefstore.events "
           "(stream_id, stream_version, event_id, event_type, schema_version, payload, "
           "recorded_at) SELECT stream_id, 1, gen_random_uuid(), 'FromTheFuture', 1, '{}', now() "
           "FROM s",
           {std::string("bob")});
  const auto run = store->restore_all(AsOf::at_time(t0));
  EXPECT_EQ(run.users, 3);
  EXPECT_EQ(run.failed, 1);
  ASSERT_EQ(run.failures.size(), 1u);
  EXPECT_EQ(run.failures[0].rfind("bob: ", 0), 0u) << run.failures[0];
  EXPECT_EQ(run.restored, 2);
  EXPECT_EQ(store->get("amy", "a.minutes"), Value(i(1)));
}

TEST_F(TimeTravelTest, SnapshotAllWritesOnePerUserStreamAndSkipsDefinitionStreams) {
  auto store = open();
  define_minutes(*store, 60);
  for (int k = 0; k < 5; ++k) (void)store->set("ada", "a.minutes", i(k));
  (void)store->set("bob", "calendar.minutes", i(10));
  (void)store->set_many("zoë", {{"a.minutes", i(1)}, {"a.timezone", s("UTC")}});
  std::vector<storage::SnapshotRunProgress> calls;
  const auto run = store->snapshot_all([&](const auto& p) { calls.push_back(p); });
  EXPECT_EQ(run.written, 3);
  EXPECT_EQ(run.streams, 3);
  EXPECT_EQ(run.total, 3);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back().written, 3);

  const auto all = storage::list_snapshots(store->pool(), std::nullopt);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].stream_id, "ada");
  EXPECT_EQ(all[0].stream_version, 5);
  EXPECT_EQ(all[1].stream_id, "bob");
  EXPECT_EQ(all[1].stream_version, 1);
  EXPECT_EQ(all[2].stream_id, "zoë");
  EXPECT_EQ(all[2].stream_version, 2);
  for (const auto& info : all) EXPECT_TRUE(info.intact) << info.stream_id;
  EXPECT_TRUE(
      storage::list_snapshots(store->pool(), definition_stream_id("calendar.minutes")).empty());

  // Nothing new: nothing written. One more event: one more snapshot, by snapshot() too.
  EXPECT_EQ(store->snapshot_all().written, 0);
  EXPECT_FALSE(store->snapshot("ada"));
  (void)store->set("ada", "a.minutes", i(9));
  EXPECT_TRUE(store->snapshot("ada"));
  EXPECT_EQ(snapshot_versions(*store, "ada"), (std::vector<std::int64_t>{5, 6}));
  const auto got = store->state_as_of("ada", AsOf::latest());
  EXPECT_EQ(got.snapshot_version, 6);
  EXPECT_EQ(got.events_replayed, 0);
  EXPECT_EQ(render(got.state), render(fold(store->history("ada"), AsOf::latest())));
}

}  // namespace
}  // namespace prefstore
