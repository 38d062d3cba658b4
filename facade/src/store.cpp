#include "prefstore/store.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <thread>
#include <type_traits>

#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/metrics.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/projections/current_state.hpp"
#include "prefstore/projections/inline_projections.hpp"
#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/checkpoints.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/database_status.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/storage/event_log.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/storage/standby_router.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore {

using Clock = std::chrono::steady_clock;

namespace {

// The error label of prefstore_operation_errors_total: what the caller can do about it.
const char* error_kind(const Error& e) noexcept {
  if (dynamic_cast<const VersionConflictError*>(&e)) return "version_conflict";
  if (dynamic_cast<const ConflictError*>(&e)) return "conflict";
  if (dynamic_cast<const ValidationError*>(&e)) return "validation";
  if (dynamic_cast<const CommitInDoubtError*>(&e)) return "commit_in_doubt";
  if (dynamic_cast<const ContentionError*>(&e)) return "contention";
  if (dynamic_cast<const TransientError*>(&e)) return "unavailable";
  if (dynamic_cast<const PermissionError*>(&e)) return "permission";
  if (dynamic_cast<const MigrationError*>(&e)) return "schema";
  if (dynamic_cast<const CorruptDataError*>(&e)) return "corrupt";
  if (dynamic_cast<const UsageError*>(&e)) return "usage";
  return "database";
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

struct Store::Impl {
  StoreOptions options;
  bool local = false;
  std::unique_ptr<storage::ConnectionPool> pool;
  std::unique_ptr<storage::EventLog> log;
  std::unique_ptr<storage::CurrentState> state;

  // Reads served by standbys (StoreOptions::standbys): the router, and per standby the readers
  // bound to its pool.
  struct Reader {
    storage::ConnectionPool* pool = nullptr;
    std::unique_ptr<storage::EventLog> log;
    std::unique_ptr<storage::CurrentState> state;
  };
  std::unique_ptr<storage::StandbyRouter> router;
  std::vector<Reader> standby_readers;
  Counter* reads_by_primary = nullptr;
  Counter* reads_by_standby = nullptr;

  boost::signals2::signal<void(const AppendedEvents&)> appended;

  // Metrics of this store (Store::metrics()). The series every call updates are looked up once,
  // by register_series(), so that a call takes no lock for them: updates are atomic adds.
  MetricsRegistry metrics;
  std::map<std::string, Histogram*, std::less<>> durations;  // by operation
  Counter* events_appended = nullptr;
  Counter* append_duplicates = nullptr;

  static constexpr const char* kDurationName = "prefstore_operation_duration_seconds";
  static constexpr const char* kDurationHelp =
      "Duration of the store's calls (retries and waits included), by operation";

  // Creates the per-call series (so they also show, at 0, before the first call).
  void register_series() {
    for (const char* op :
         {"set", "set_many", "reset", "define", "deprecate", "get", "get_all", "history", "version",
          "audit", "get_as_of", "get_all_as_of", "diff", "restore", "erase_user", "compact",
          "backup", "restore_backup", "verify"}) {
      durations[op] =
          &metrics.histogram(kDurationName, kDurationHelp, latency_buckets(), {{"operation", op}});
    }
    events_appended = &metrics.counter("prefstore_events_appended_total",
                                       "Events appended by this store's writes");
    reads_by_primary = &metrics.counter(
        "prefstore_reads_total", "Reads that may go to a standby, by the server that served them",
        {{"server", "primary"}});
    reads_by_standby = &metrics.counter(
        "prefstore_reads_total", "Reads that may go to a standby, by the server that served them",
        {{"server", "standby"}});
    append_duplicates = &metrics.counter(
        "prefstore_append_duplicates_total",
        "Writes whose event ids were already stored (an idempotent retry): nothing appended");
  }

  // Runs call as the public operation `operation`: its duration (retries included) goes to
  // prefstore_operation_duration_seconds, a failure to prefstore_operation_errors_total.
  template <class Call>
  auto measured(std::string_view operation, Call&& call) -> decltype(call()) {
    const auto start = Clock::now();
    Histogram& duration = duration_of(operation);
    try {
      if constexpr (std::is_void_v<decltype(call())>) {
        call();
        duration.observe(seconds_since(start));
      } else {
        auto result = call();
        duration.observe(seconds_since(start));
        return result;
      }
    } catch (const Error& e) {
      duration.observe(seconds_since(start));
      metrics
          .counter("prefstore_operation_errors_total",
                   "Calls of the store that failed, by operation and by kind of error",
                   {{"operation", std::string(operation)}, {"error", error_kind(e)}})
          .add();
      prefstore::log(
          LogLevel::debug, "operation_failed",
          {{"operation", std::string(operation)}, {"error", error_kind(e)}, {"message", e.what()}});
      throw;
    }
  }

  // The duration histogram of operation: registered ones without a lock.
  Histogram& duration_of(std::string_view operation) {
    if (const auto it = durations.find(operation); it != durations.end()) return *it->second;
    return metrics.histogram(kDurationName, kDurationHelp, latency_buckets(),
                             {{"operation", std::string(operation)}});
  }

  // Tells subscribers about a write that landed.
  AppendResult announce(std::string_view stream, AppendResult result,
                        const std::vector<storage::NewEvent>& events) {
    if (result.duplicate || appended.empty()) return result;
    AppendedEvents what{std::string(stream), result, {}};
    for (const auto& e : events) what.events.push_back(e.data);
    appended(what);
    return result;
  }

  // Runs call, retrying transient errors as options.retry says (retry_policy.hpp).
  template <class Call>
  auto retrying(std::string_view operation, Call&& call) -> decltype(call()) {
    const RetryPolicy& policy = options.retry;
    const auto started = Clock::now();
    double wait_ms = static_cast<double>(policy.initial_backoff.count());
    for (int attempt = 1;; ++attempt) {
      try {
        return call();
      } catch (const Error& e) {
        if (!e.retryable() || attempt >= policy.max_attempts) throw;
        const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
        std::uniform_real_distribution<double> draw(wait_ms * (1.0 - jitter), wait_ms);
        auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(draw(random())));
        if (policy.deadline.count() > 0) {
          const auto left = policy.deadline - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  Clock::now() - started);
          if (left <= std::chrono::milliseconds(0)) throw;
          wait = std::min(wait, left);
        }
        metrics
            .counter("prefstore_retries_total",
                     "Attempts repeated after a transient error, by operation and kind of error",
                     {{"operation", std::string(operation)}, {"error", error_kind(e)}})
            .add();
        prefstore::log(LogLevel::warn, "retry",
                       {{"operation", std::string(operation)},
                        {"attempt", std::to_string(attempt)},
                        {"wait_ms", std::to_string(wait.count())},
                        {"error", error_kind(e)},
                        {"message", e.what()}});
        if (policy.on_retry) policy.on_retry(e, attempt, wait);
        std::this_thread::sleep_for(wait);
        wait_ms = std::min(wait_ms * std::max(1.0, policy.multiplier),
                           static_cast<double>(policy.max_backoff.count()));
      }
    }
  }

  static std::mt19937_64& random() {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return engine;
  }

  // Appends with retries. The event ids are fixed before the first attempt, so that a retry of
  // a commit that landed finds them stored and stores nothing twice.
  AppendResult append(std::string_view operation, std::string_view stream,
                      std::vector<storage::NewEvent> events, const AppendOptions& call,
                      const Metadata& metadata) {
    for (auto& e : events) {
      if (e.event_id.empty()) e.event_id = new_event_id();
    }
    AppendResult result =
        retrying(operation, [&] { return log->append(stream, events, call.expected, metadata); });
    if (result.duplicate) {
      append_duplicates->add();
    } else {
      events_appended->add(static_cast<double>(events.size()));
    }
    return announce(stream, std::move(result), events);
  }

  // Runs call(pool, log, state) on the server the router picks for read (the primary without
  // standbys), retrying transient errors. A standby that fails with UnavailableError is skipped
  // (StandbyOptions::down_for) and the read goes on elsewhere at once.
  template <class Call>
  auto routed(std::string_view operation, const ReadOptions& read, Call&& call)
      -> decltype(call(std::declval<storage::ConnectionPool&>(), std::declval<storage::EventLog&>(),
                       std::declval<storage::CurrentState&>())) {
    return retrying(operation, [&] {
      for (;;) {
        const storage::ReadRoute route =
            router ? router->route(read.after) : storage::ReadRoute{pool.get(), -1, ""};
        if (route.standby < 0) {
          reads_by_primary->add();
          if (!route.fallback.empty() && router && router->size() > 0) {
            metrics
                .counter("prefstore_standby_fallbacks_total",
                         "Reads the primary served because no standby qualified, by reason",
                         {{"reason", route.fallback}})
                .add();
          }
          return call(*pool, *log, *state);
        }
        Reader& r = standby_readers[static_cast<std::size_t>(route.standby)];
        try {
          reads_by_standby->add();
          return call(*r.pool, *r.log, *r.state);
        } catch (const UnavailableError& e) {
          router->failed(route.standby, e.what());
        }
      }
    });
  }

  // Rewrites the snapshots a read found unusable, on the primary (a cache repair, best effort:
  // the read has its answer, and the bad snapshots stay listed in it).
  void repair_snapshots(std::string_view user, const storage::StreamState& read) {
    for (const storage::BadSnapshot& bad : read.bad_snapshots) {
      try {
        storage::UnitOfWork uow(*pool);
        const auto fresh = storage::load_state(uow, user, AsOf::at_version(bad.stream_version));
        if (fresh.version == bad.stream_version) {
          (void)storage::save_snapshot(uow, user, fresh);
          uow.commit();
        }
      } catch (const Error&) {
      }
    }
  }

  // Cached definitions (see StoreOptions::definitions_refresh).
  std::shared_mutex cache_mutex;
  DefinitionCatalog cache;
  Clock::time_point cache_loaded{};

  // Loads are numbered: a load that started before a newer load or a remember() finished
  // must not overwrite what they installed.
  std::uint64_t loads_started = 0;
  std::uint64_t installed = 0;

  void reload_definitions() {
    std::uint64_t ticket = 0;
    {
      std::unique_lock lock(cache_mutex);
      ticket = ++loads_started;
    }
    DefinitionCatalog fresh = retrying("definitions", [&] { return state->definitions(); });
    std::unique_lock lock(cache_mutex);
    if (ticket < installed) return;
    cache = std::move(fresh);
    installed = ticket;
    cache_loaded = Clock::now();
  }

  // The definition of key, from the cache, reloading it when stale or when the key is missing.
  std::optional<PreferenceDefinition> definition_of(std::string_view key) {
    bool stale = false;
    {
      std::shared_lock lock(cache_mutex);
      const auto age = Clock::now() - cache_loaded;
      stale = age > options.definitions_refresh;
      if (!stale) {
        if (auto it = cache.find(key); it != cache.end()) return it->second.definition;
        if (age < std::chrono::milliseconds(100)) return std::nullopt;
      }
    }
    reload_definitions();
    std::shared_lock lock(cache_mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second.definition;
    return std::nullopt;
  }

  void refresh_if_stale() {
    {
      std::shared_lock lock(cache_mutex);
      if (Clock::now() - cache_loaded <= options.definitions_refresh) return;
    }
    reload_definitions();
  }

  void remember(const PreferenceDefinition& d) {
    std::unique_lock lock(cache_mutex);
    cache[d.key].definition = d;
    installed = ++loads_started;  // loads already running are older than this
  }

  // Validates one value for key: against its definition, or (open mode) only its encoding.
  Value checked(std::string_view key, Value value) {
    validate_key(key);
    if (const auto def = definition_of(key)) {
      validate_value(*def, value);
    } else if (options.strict) {
      throw ValidationError(std::string(key) +
                            ": no preference with this key is defined, and the store is in strict "
                            "mode; define it first (prefstore define) or open the store in open "
                            "mode");
    } else {
      check_storable(key, value);
    }
    return normalized(std::move(value));
  }

  static std::vector<storage::NewEvent> with_ids(std::vector<EventData> events,
                                                 const AppendOptions& options) {
    if (!options.event_ids.empty() && options.event_ids.size() != events.size()) {
      throw ValidationError("AppendOptions::event_ids holds " +
                            std::to_string(options.event_ids.size()) + " ids for " +
                            std::to_string(events.size()) + " events; give one per event or none");
    }
    std::vector<storage::NewEvent> out;
    out.reserve(events.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      out.push_back(
          {options.event_ids.empty() ? std::string() : options.event_ids[i], std::move(events[i])});
    }
    return out;
  }
};

Store::Store(StoreOptions options) : m_impl(std::make_unique<Impl>()) {
  m_impl->register_series();
  std::optional<std::string> url = options.database_url;
  if (!url) url = storage::configured_database_url();
  if (!url) {
    storage::LocalServer server(options.local);
    if (options.start_local_server) server.start();
    url = server.url();
    m_impl->local = true;
  }
  options.pool.conninfo = *url;
  // Pool waits feed a histogram; an on_acquired hook of the caller still runs.
  options.pool.on_acquired = [theirs = std::move(options.pool.on_acquired),
                              wait = &m_impl->metrics.histogram(
                                  "prefstore_pool_acquire_wait_seconds",
                                  "Time callers waited for a pooled connection (opening a new "
                                  "one included)",
                                  latency_buckets())](std::chrono::nanoseconds waited) {
    wait->observe(std::chrono::duration<double>(waited).count());
    if (theirs) theirs(waited);
  };
  // The pool connects lazily, so the migrations below may create the pool's role first.
  m_impl->pool = std::make_unique<storage::ConnectionPool>(options.pool);
  m_impl->log = std::make_unique<storage::EventLog>(*m_impl->pool);
  m_impl->log->set_announce(options.announce_appends);
  if (!options.inline_projections.empty()) {
    m_impl->log->set_inline_hook(projections::inline_hook(options.inline_projections));
  }
  m_impl->state = std::make_unique<storage::CurrentState>(*m_impl->pool);
  if (options.standbys.urls.empty()) options.standbys.urls = storage::configured_standby_urls();
  if (!options.standbys.urls.empty()) {
    m_impl->router = std::make_unique<storage::StandbyRouter>(*m_impl->pool, options.standbys);
    for (std::size_t i = 0; i < options.standbys.urls.size(); ++i) {
      Impl::Reader r;
      r.pool = &m_impl->router->pool(i);
      r.log = std::make_unique<storage::EventLog>(*r.pool);
      r.state = std::make_unique<storage::CurrentState>(*r.pool);
      m_impl->standby_readers.push_back(std::move(r));
    }
  }
  m_impl->log->set_consistency_tokens(
      options.consistency_tokens.value_or(!options.standbys.urls.empty()));
  m_impl->options = std::move(options);
  if (m_impl->options.migrate_on_open) migrate();
  prefstore::log(LogLevel::info, "store_opened",
                 {{"database", m_impl->pool->redacted_conninfo()},
                  {"local_server", m_impl->local ? "true" : "false"},
                  {"pool_max", std::to_string(m_impl->options.pool.max_size)}});
}

Store::~Store() = default;

AppendResult Store::set(std::string_view user, std::string_view key, Value value,
                        const Metadata& metadata, const AppendOptions& options) {
  return m_impl->measured("set", [&]() -> AppendResult {
    validate_user_id(user);
    validate_metadata(metadata);
    Value v = m_impl->checked(key, std::move(value));
    return m_impl->append("set", user,
                          Impl::with_ids({PreferenceSet{std::string(key), std::move(v)}}, options),
                          options, metadata);
  });
}

AppendResult Store::set_many(std::string_view user,
                             const std::vector<std::pair<std::string, Value>>& values,
                             const Metadata& metadata, const AppendOptions& options) {
  return m_impl->measured("set_many", [&]() -> AppendResult {
    validate_user_id(user);
    validate_metadata(metadata);
    if (values.empty()) {
      throw ValidationError("set_many for " + std::string(user) + " got no values to set");
    }
    std::set<std::string_view> keys;
    std::vector<EventData> events;
    for (const auto& [key, value] : values) {
      if (!keys.insert(key).second) {
        throw ValidationError("set_many for " + std::string(user) + " names key " + key +
                              " twice; give each key once");
      }
      events.push_back(PreferenceSet{key, m_impl->checked(key, value)});
    }
    return m_impl->append("set_many", user, Impl::with_ids(std::move(events), options), options,
                          metadata);
  });
}

AppendResult Store::reset(std::string_view user, std::string_view key, const Metadata& metadata,
                          const AppendOptions& options) {
  return m_impl->measured("reset", [&]() -> AppendResult {
    validate_user_id(user);
    validate_metadata(metadata);
    validate_key(key);
    if (m_impl->options.strict && !m_impl->definition_of(key)) {
      throw ValidationError(std::string(key) +
                            ": no preference with this key is defined, and the store is in strict "
                            "mode");
    }
    return m_impl->append("reset", user,
                          Impl::with_ids({PreferenceReset{std::string(key)}}, options), options,
                          metadata);
  });
}

AppendResult Store::define(const PreferenceDefinition& definition, const Metadata& metadata,
                           const AppendOptions& options) {
  return m_impl->measured("define", [&]() -> AppendResult {
    validate_definition(definition);
    validate_metadata(metadata);
    PreferenceDefinition d = definition;
    if (d.default_value) d.default_value = normalized(*d.default_value);
    const auto result =
        m_impl->append("define", definition_stream_id(d.key),
                       Impl::with_ids({PreferenceDefined{d}}, options), options, metadata);
    m_impl->remember(d);
    return result;
  });
}

AppendResult Store::deprecate(std::string_view key, std::string_view note, const Metadata& metadata,
                              const AppendOptions& options) {
  return m_impl->measured("deprecate", [&]() -> AppendResult {
    validate_key(key);
    validate_metadata(metadata);
    m_impl->reload_definitions();
    auto def = m_impl->definition_of(key);
    if (!def) {
      throw ValidationError(std::string(key) +
                            ": cannot deprecate a preference that is not defined");
    }
    const auto result = m_impl->append(
        "deprecate", definition_stream_id(key),
        Impl::with_ids({PreferenceDeprecated{std::string(key), std::string(note)}}, options),
        options, metadata);
    def->deprecated = true;
    def->deprecation_note = std::string(note);
    m_impl->remember(*def);
    return result;
  });
}

boost::signals2::connection Store::on_appended(std::function<void(const AppendedEvents&)> slot) {
  return m_impl->appended.connect([slot = std::move(slot)](const AppendedEvents& what) {
    try {
      slot(what);
    } catch (...) {
      // The write has landed; a subscriber's failure must not turn it into an error.
    }
  });
}

std::optional<Value> Store::get(std::string_view user, std::string_view key,
                                const ReadOptions& read) {
  return m_impl->measured("get", [&]() -> std::optional<Value> {
    validate_user_id(user);
    validate_key(key);
    if (auto entry = m_impl->routed("get", read, [&](auto&, auto&, storage::CurrentState& state) {
          return state.get(user, key);
        })) {
      return std::move(entry->value);
    }
    if (auto def = m_impl->definition_of(key)) return def->default_value;
    return std::nullopt;
  });
}

std::map<std::string, ResolvedPreference> Store::get_all(std::string_view user,
                                                         const ReadOptions& read) {
  return m_impl->measured("get_all", [&]() -> std::map<std::string, ResolvedPreference> {
    validate_user_id(user);
    std::map<std::string, ResolvedPreference> out;
    for (auto& [key, entry] : m_impl->routed(
             "get_all", read,
             [&](auto&, auto&, storage::CurrentState& state) { return state.get_all(user); })) {
      Value value = entry.value;
      out.emplace_hint(out.end(), key,
                       ResolvedPreference{std::move(value), false, std::move(entry)});
    }
    m_impl->refresh_if_stale();
    std::shared_lock lock(m_impl->cache_mutex);  // read in place: a copy cost more than the query
    for (const auto& [key, def] : m_impl->cache) {
      if (out.count(key) == 0 && def.definition.default_value) {
        out.emplace(key, ResolvedPreference{*def.definition.default_value, true, std::nullopt});
      }
    }
    return out;
  });
}

std::optional<DefinitionEntry> Store::definition(std::string_view key) {
  validate_key(key);
  auto catalog = definitions();
  if (auto it = catalog.find(key); it != catalog.end()) return it->second;
  return std::nullopt;
}

DefinitionCatalog Store::definitions() {
  m_impl->reload_definitions();
  std::shared_lock lock(m_impl->cache_mutex);
  return m_impl->cache;
}

std::vector<RecordedEvent> Store::history(std::string_view user, std::int64_t limit,
                                          std::int64_t after_version, const ReadOptions& read) {
  return m_impl->measured("history", [&]() -> std::vector<RecordedEvent> {
    if (user.empty()) throw ValidationError("history: the user id must not be empty");
    if (limit < 0) throw ValidationError("history: limit must not be negative");
    return m_impl->routed("history", read, [&](auto&, storage::EventLog& log, auto&) {
      return log.read_stream(user, after_version + 1, limit);
    });
  });
}

std::int64_t Store::version(std::string_view user, const ReadOptions& read) {
  return m_impl->measured("version", [&]() -> std::int64_t {
    return m_impl
        ->routed("version", read,
                 [&](auto&, storage::EventLog& log, auto&) { return log.stream_version(user); })
        .value_or(0);
  });
}

AuditPage Store::audit(const AuditQuery& query, const ReadOptions& read) {
  return m_impl->measured("audit", [&]() -> AuditPage {
    return m_impl->routed("audit", read, [&](storage::ConnectionPool& pool, auto&, auto&) {
      return storage::query_audit(pool, query);
    });
  });
}

storage::StreamState Store::state_as_of(std::string_view user, const AsOf& as_of,
                                        const ReadOptions& read) {
  validate_user_id(user);
  storage::StreamState state =
      m_impl->routed("state_as_of", read, [&](storage::ConnectionPool& pool, auto&, auto&) {
        storage::UnitOfWork uow(pool);
        return storage::load_state(uow, user, as_of);
      });
  m_impl->repair_snapshots(user, state);
  return state;
}

std::optional<Value> Store::get(std::string_view user, std::string_view key, const AsOf& as_of,
                                const ReadOptions& read) {
  return m_impl->measured("get_as_of", [&]() -> std::optional<Value> {
    validate_key(key);
    const auto state = state_as_of(user, as_of, read);
    if (auto it = state.state.find(key); it != state.state.end()) return it->second.value;
    if (auto def = m_impl->definition_of(key)) return def->default_value;
    return std::nullopt;
  });
}

std::map<std::string, ResolvedPreference> Store::get_all(std::string_view user, const AsOf& as_of,
                                                         const ReadOptions& read) {
  return m_impl->measured("get_all_as_of", [&]() -> std::map<std::string, ResolvedPreference> {
    std::map<std::string, ResolvedPreference> out;
    for (auto& [key, entry] : state_as_of(user, as_of, read).state) {
      out.emplace(key, ResolvedPreference{entry.value, false, entry});
    }
    m_impl->refresh_if_stale();
    std::shared_lock lock(m_impl->cache_mutex);
    for (const auto& [key, def] : m_impl->cache) {
      if (out.count(key) == 0 && def.definition.default_value) {
        out.emplace(key, ResolvedPreference{*def.definition.default_value, true, std::nullopt});
      }
    }
    return out;
  });
}

StateDiff Store::diff(std::string_view user, const AsOf& from, const AsOf& to,
                      bool include_unchanged, const ReadOptions& read) {
  return m_impl->measured("diff", [&]() -> StateDiff {
    validate_user_id(user);
    StateDiff out{std::string(user), from, to, 0, 0, {}};
    // Both ends from one server (the start's state and the events after it).
    storage::StreamState start;
    std::optional<StateDiffBuilder> builder;
    std::int64_t version = 0;
    m_impl->routed("diff", read, [&](storage::ConnectionPool& pool, storage::EventLog& log, auto&) {
      {
        storage::UnitOfWork uow(pool);
        start = storage::load_state(uow, user, from);
      }
      builder.emplace(start.state);
      version = start.version;
      (void)log.read_stream(user, storage::ReadDirection::forward, start.version + 1, INT64_MAX,
                            [&](const RecordedEvent& event) {
                              if (!to.includes(event)) return false;
                              builder->apply(event);
                              version = event.stream_version;
                              return true;
                            });
      return 0;
    });
    m_impl->repair_snapshots(user, start);
    out.from_version = start.version;
    out.to_version = version;
    // `to` before `from`: the end state is earlier than the start state, i.e. `to` leaves out the
    // start's last event (versions, positions and times grow together within a stream).
    RecordedEvent start_last;
    start_last.stream_version = start.version;
    start_last.global_position = start.last_position;
    start_last.recorded_at = start.last_recorded_at;
    const bool backwards =
        (from.kind == to.kind && from.kind != AsOf::Kind::latest &&
         (from.kind == AsOf::Kind::time ? to.time < from.time : to.number < from.number)) ||
        (start.version > 0 && !to.includes(start_last));
    if (backwards) {
      throw ValidationError("diff of " + std::string(user) + ": the end (" + to.describe() +
                            ") is before the start (" + from.describe() + ", version " +
                            std::to_string(start.version) + ")");
    }
    out.keys = builder->result(include_unchanged);
    return out;
  });
}

RestorePlan Store::restore(std::string_view user, const AsOf& to, const RestoreOptions& options) {
  return m_impl->measured("restore", [&]() -> RestorePlan {
    validate_user_id(user);
    Metadata metadata = options.metadata;
    if (metadata.reason.empty()) metadata.reason = "point-in-time restore to " + to.describe();
    validate_metadata(metadata);
    if (options.keys) {
      for (const std::string& key : *options.keys) validate_key(key);
    }
    for (int attempt = 1;; ++attempt) {
      RestorePlan plan{std::string(user), to, 0, 0, {}, std::nullopt};
      storage::StreamState current;
      storage::StreamState target;
      {
        storage::UnitOfWork uow(*m_impl->pool);
        current = storage::load_state(uow, user, AsOf::latest());
        target = storage::load_state(uow, user, to);
      }
      plan.current_version = current.version;
      plan.target_version = target.version;
      plan.changes = restore_changes(current.state, target.state, options.keys);
      for (RestoredPreference& change : plan.changes) {
        if (change.value) {
          try {
            change.value = m_impl->checked(change.key, *change.value);
          } catch (const ValidationError& e) {
            throw ValidationError("restore of " + std::string(user) + " to " + to.describe() +
                                  ": the value of " + change.key +
                                  " then does not fit today's definition (" + e.what() +
                                  "); leave the key out of the restore");
          }
        } else if (m_impl->options.strict && !m_impl->definition_of(change.key)) {
          throw ValidationError("restore of " + std::string(user) + ": " + change.key +
                                " is not defined and the store is in strict mode");
        }
      }
      if (options.dry_run || plan.changes.empty()) return plan;
      PreferencesRestored event;
      event.as_of = to.kind == AsOf::Kind::time ? to.time : target.last_recorded_at;
      event.changes = plan.changes;
      AppendOptions append;
      append.expected = storage::ExpectedVersion::exactly(current.version);
      if (!options.event_id.empty()) append.event_ids = {options.event_id};
      try {
        plan.appended = m_impl->append("restore", user, Impl::with_ids({std::move(event)}, append),
                                       append, metadata);
        return plan;
      } catch (const VersionConflictError&) {
        if (attempt >= 3) throw;
      }
    }
  });
}

RestoreAllProgress Store::restore_all(
    const AsOf& to, const RestoreOptions& options,
    const std::function<void(const RestoreAllProgress&)>& progress) {
  RestoreAllProgress run;
  {
    storage::UnitOfWork uow(*m_impl->pool);
    run.total = std::stoll(uow.exec("SELECT count(*) FROM prefstore.streams "
                                    "WHERE version > 0 AND left(stream_id, 1) <> '$'")
                               .at(0)[0]
                               .value());
  }
  std::string after;
  for (;;) {
    std::vector<std::string> users;
    {
      storage::UnitOfWork uow(*m_impl->pool);
      for (const auto& row :
           uow.exec("SELECT stream_id FROM prefstore.streams WHERE stream_id > $1 AND version > 0 "
                    "AND left(stream_id, 1) <> '$' ORDER BY stream_id LIMIT 500",
                    {after})) {
        users.push_back(row[0].value());
      }
    }
    if (users.empty()) break;
    for (const std::string& user : users) {
      RestoreOptions one = options;
      one.event_id.clear();  // one id per event: never shared between users
      try {
        const RestorePlan plan = restore(user, to, one);
        if (!plan.changes.empty()) ++run.restored;
      } catch (const Error& e) {  // this user's restore failed; the others go on
        ++run.failed;
        if (run.failures.size() < 100) run.failures.push_back(user + ": " + e.what());
      }
      ++run.users;
      if (progress && run.users % 100 == 0) progress(run);
    }
    after = users.back();
  }
  if (progress) progress(run);
  return run;
}

bool Store::snapshot(std::string_view user) {
  validate_user_id(user);
  return storage::snapshot_stream(*m_impl->pool, user);
}

storage::SnapshotRunProgress Store::snapshot_all(
    const std::function<void(const storage::SnapshotRunProgress&)>& progress) {
  return storage::snapshot_all_streams(*m_impl->pool, progress);
}

storage::ErasureRecord Store::erase_user(std::string_view user, std::string_view reason,
                                         const storage::EraseOptions& options) {
  return m_impl->measured("erase_user", [&]() -> storage::ErasureRecord {
    validate_user_id(user);
    return storage::erase_stream(*m_impl->pool, user, reason, options);
  });
}

storage::CompactReport Store::compact(const storage::CompactOptions& options) {
  return m_impl->measured("compact", [&]() -> storage::CompactReport {
    return storage::compact_streams(*m_impl->pool, options);
  });
}

storage::BackupSummary Store::backup(const std::filesystem::path& file,
                                     const storage::BackupOptions& options) {
  return m_impl->measured("backup", [&]() -> storage::BackupSummary {
    return storage::create_backup(*m_impl->pool, file, options);
  });
}

storage::BackupRestoreSummary Store::restore_backup(const std::filesystem::path& file,
                                                    const storage::BackupRestoreOptions& options) {
  return m_impl->measured("restore_backup", [&]() -> storage::BackupRestoreSummary {
    storage::BackupRestoreOptions o = options;
    o.reset_tables.clear();
    o.reset_projections.clear();
    for (const auto& p : projections::default_projections()) {
      const auto& inline_here = m_impl->options.inline_projections;
      if (std::any_of(inline_here.begin(), inline_here.end(),
                      [&](const auto& q) { return q->name() == p->name(); })) {
        continue;  // written again below, inline
      }
      o.reset_projections.push_back(p->name());
      for (const auto& table : p->tables()) o.reset_tables.push_back(table);
    }
    std::vector<std::shared_ptr<projections::Projection>> inline_models{
        std::make_shared<projections::CurrentStateProjection>()};
    for (const auto& p : m_impl->options.inline_projections) inline_models.push_back(p);
    o.on_events = projections::inline_hook(std::move(inline_models));
    auto summary = storage::restore_backup(*m_impl->pool, file, o);
    m_impl->reload_definitions();
    return summary;
  });
}

VerifyReport Store::verify(const VerifyOptions& options) {
  return m_impl->measured(
      "verify", [&]() -> VerifyReport { return storage::verify_store(*m_impl->pool, options); });
}

std::vector<storage::MigrationStatus> Store::migrate() {
  std::vector<storage::MigrationStatus> applied;
  const auto run = [&](storage::ConnectionPool& pool) {
    if (m_impl->options.distributed) storage::prepare_distribution(pool);
    applied = storage::MigrationRunner(pool).migrate();
    if (!m_impl->options.distributed) return;
    storage::DistributeOptions distribute;
    // Moving a single-server store: the projections catch up on a pool of their own while
    // distribute() holds the log.
    distribute.catch_up = [&] {
      storage::PoolOptions own = m_impl->options.pool;
      own.max_size = 2;
      storage::ConnectionPool projector_pool(own);
      projections::RunnerOptions runner_options;
      runner_options.listen = false;
      projections::ProjectionRunner runner(projector_pool, projections::default_projections(),
                                           runner_options);
      (void)runner.catch_up();
    };
    storage::distribute(pool, distribute);
  };
  if (m_impl->options.pool.role.empty()) {
    run(*m_impl->pool);
  } else {
    // Migrations run with the login role's privileges (the runner hands later files to
    // prefstore_owner itself), and on a fresh database the pool's role does not exist yet.
    storage::PoolOptions own = m_impl->options.pool;
    own.role.clear();
    own.max_size = 1;
    storage::ConnectionPool pool(own);
    run(pool);
  }
  for (const auto& m : applied) {
    prefstore::log(LogLevel::info, "migration_applied",
                   {{"version", std::to_string(m.version)},
                    {"file", m.file_name},
                    {"duration_ms", std::to_string(m.duration_ms.value_or(0))}});
  }
  return applied;
}

std::vector<storage::MigrationStatus> Store::migration_status() {
  return storage::MigrationRunner(*m_impl->pool).status();
}

StoreStatus Store::status(const HealthThresholds& thresholds) {
  StoreStatus out;
  out.database = m_impl->pool->redacted_conninfo();
  out.local_server = m_impl->local;
  out.build_schema_version =
      storage::embedded_migrations().empty() ? 0 : storage::embedded_migrations().back().version;
  try {
    out.database_status = storage::read_database_status(*m_impl->pool);
    out.reachable = true;
    out.schema_version = out.database_status->schema_version;
    for (const auto& m : storage::MigrationRunner(*m_impl->pool).status()) {
      if (m.state == storage::MigrationState::pending) ++out.pending_migrations;
    }
    const auto checkpoints = storage::checkpoint_status(*m_impl->pool);
    for (const auto& c : checkpoints) {
      out.projections.push_back({c.checkpoint.projection, storage::to_string(c.checkpoint.state),
                                 c.checkpoint.position.global_position, c.lag_events, c.lag_seconds,
                                 c.checkpoint.last_error, false});
    }
    for (const auto& p : projections::default_projections()) {
      const bool known = std::any_of(checkpoints.begin(), checkpoints.end(), [&](const auto& c) {
        return storage::is_checkpoint_of(c.checkpoint.projection, p->name());
      });
      if (!known) {
        out.projections.push_back(
            {p->name(), "never run", 0, out.database_status->events, 0, std::nullopt, true});
      }
    }
  } catch (const TransientError& e) {
    out.error = e.what();
  } catch (const PermissionError& e) {
    out.error = e.what();
  } catch (const Error& e) {  // reachable, but the schema is missing or unreadable
    out.reachable = true;
    out.error = e.what();
    out.database_status.reset();
  }
  out.pool = m_impl->pool->stats();
  out.pool_max = m_impl->pool->options().max_size;
  if (m_impl->router) out.standbys = m_impl->router->status(true);
  judge(out, thresholds);
  log(out.healthy() ? LogLevel::debug : LogLevel::warn, "status", {{"verdict", out.verdict()}});
  return out;
}

std::string Store::metrics() {
  // The database first, so that the pool figures below include this call's connections.
  const StoreStatus st = status();
  MetricsRegistry& r = m_impl->metrics;
  const storage::PoolStats pool = m_impl->pool->stats();
  const auto gauge = [&](const char* name, const char* help, double value,
                         const MetricLabels& labels = {}) {
    r.gauge(name, help, labels).set(value);
  };
  const auto mirror = [&](const char* name, const char* help, std::uint64_t total) {
    Counter& c = r.counter(name, help);
    c.add(static_cast<double>(total) - c.value());
  };
  gauge("prefstore_pool_connections", "Pooled connections by state", double(pool.idle),
        {{"state", "idle"}});
  gauge("prefstore_pool_connections", "Pooled connections by state", double(pool.in_use),
        {{"state", "in_use"}});
  gauge("prefstore_pool_max_connections", "PoolOptions::max_size",
        double(m_impl->pool->options().max_size));
  gauge("prefstore_pool_waiting_callers", "Callers blocked waiting for a connection now",
        double(pool.waiting));
  mirror("prefstore_pool_connections_opened_total", "Connections opened by the pool", pool.created);
  mirror("prefstore_pool_connections_discarded_total",
         "Connections dropped because they were found broken", pool.discarded);
  mirror("prefstore_pool_acquire_timeouts_total",
         "Callers that gave up waiting for a connection (PoolOptions::acquire_timeout)",
         pool.timeouts);
  mirror("prefstore_pool_connect_failures_total", "Attempts to open a connection that failed",
         pool.connect_failures);

  // What is read from the database goes to a registry of this call only, so that a database
  // that stopped answering leaves no stale figures behind.
  MetricsRegistry db;
  const auto db_gauge = [&](const char* name, const char* help, double value,
                            const MetricLabels& labels = {}) {
    db.gauge(name, help, labels).set(value);
  };
  db_gauge("prefstore_up", "1 when the database answered the status query, else 0",
           st.reachable && st.database_status ? 1 : 0);
  db_gauge("prefstore_healthy", "1 when status() judges the store healthy (default thresholds)",
           st.healthy() ? 1 : 0);
  for (const storage::StandbyStatus& standby : st.standbys) {
    const MetricLabels labels{{"standby", standby.url}};
    db_gauge("prefstore_standby_usable",
             "1 when the standby would serve a read without a token (up, in recovery, lag within "
             "StandbyOptions::max_lag)",
             standby.usable ? 1 : 0, labels);
    if (standby.lag_seconds >= 0) {
      db_gauge("prefstore_standby_lag_seconds",
               "How far the standby's replay is behind the primary (0 when it has replayed "
               "everything)",
               standby.lag_seconds, labels);
    }
    if (standby.lag_bytes >= 0) {
      db_gauge("prefstore_standby_lag_bytes",
               "The primary's WAL position minus the standby's replay position",
               static_cast<double>(standby.lag_bytes), labels);
    }
  }
  if (st.database_status) {
    const storage::DatabaseStatus& d = *st.database_status;
    db_gauge("prefstore_schema_version", "Highest migration applied in the database",
             st.schema_version);
    db_gauge("prefstore_schema_pending_migrations", "Migrations of this build not applied",
             st.pending_migrations);
    db_gauge("prefstore_log_events", "Events in the log", double(d.events));
    db_gauge("prefstore_log_head_position", "Global position of the newest event",
             double(d.last_position));
    db_gauge("prefstore_streams", "Streams with at least one event", double(d.streams));
    db_gauge("prefstore_snapshots", "Snapshot rows", double(d.snapshots));
    const auto age = [&](Timestamp t) { return double((d.server_time - t).count()) / 1e6; };
    if (d.newest_snapshot) {
      db_gauge("prefstore_newest_snapshot_age_seconds", "Age of the newest snapshot",
               age(d.newest_snapshot->created_at));
    }
    if (d.newest_backup) {
      db_gauge("prefstore_newest_backup_age_seconds",
               "Age of the newest backup written from this database",
               age(d.newest_backup->recorded_at));
    }
    for (const ProjectionStatus& p : st.projections) {
      const MetricLabels l{{"projection", p.name}};
      db_gauge("prefstore_projection_lag_events", "Events of the log a projection has not applied",
               double(p.lag_events), l);
      db_gauge("prefstore_projection_lag_seconds",
               "Age of the oldest event a projection has not applied (0 when caught up)",
               p.lag_seconds, l);
      db_gauge("prefstore_projection_position", "Global position a projection has applied up to",
               double(p.position), l);
      db_gauge("prefstore_projection_failed", "1 while a projection is stopped by a failing event",
               p.state == "failed" ? 1 : 0, l);
    }
  }
  return r.render() + db.render();
}

bool Store::uses_local_server() const noexcept {
  return m_impl->local;
}

std::string Store::redacted_database_url() const {
  return m_impl->pool->redacted_conninfo();
}

storage::ConnectionPool& Store::pool() noexcept {
  return *m_impl->pool;
}

const StoreOptions& Store::options() const noexcept {
  return m_impl->options;
}

}  // namespace prefstore
