#include "prefstore/store.hpp"

#include <chrono>
#include <mutex>
#include <set>
#include <shared_mutex>

#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/projections/inline_projections.hpp"
#include "prefstore/storage/current_state.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore {

using Clock = std::chrono::steady_clock;

struct Store::Impl {
  StoreOptions options;
  bool local = false;
  std::unique_ptr<storage::ConnectionPool> pool;
  std::unique_ptr<storage::EventLog> log;
  std::unique_ptr<storage::CurrentState> state;

  boost::signals2::signal<void(const AppendedEvents&)> appended;

  // Tells subscribers about a write that landed.
  AppendResult announce(std::string_view stream, AppendResult result,
                        const std::vector<storage::NewEvent>& events) {
    if (result.duplicate || appended.empty()) return result;
    AppendedEvents what{std::string(stream), result, {}};
    for (const auto& e : events) what.events.push_back(e.data);
    appended(what);
    return result;
  }

  AppendResult append(std::string_view stream, std::vector<storage::NewEvent> events,
                      const AppendOptions& call, const Metadata& metadata) {
    return announce(stream, log->append(stream, events, call.expected, metadata), events);
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
    DefinitionCatalog fresh = state->definitions();
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
  std::optional<std::string> url = options.database_url;
  if (!url) url = storage::configured_database_url();
  if (!url) {
    storage::LocalServer server(options.local);
    server.start();
    url = server.url();
    m_impl->local = true;
  }
  options.pool.conninfo = *url;
  m_impl->pool = std::make_unique<storage::ConnectionPool>(options.pool);
  m_impl->log = std::make_unique<storage::EventLog>(*m_impl->pool);
  if (!options.inline_projections.empty()) {
    m_impl->log->set_inline_hook(projections::inline_hook(options.inline_projections));
  }
  m_impl->state = std::make_unique<storage::CurrentState>(*m_impl->pool);
  m_impl->options = std::move(options);
  if (m_impl->options.migrate_on_open) migrate();
}

Store::~Store() = default;

AppendResult Store::set(std::string_view user, std::string_view key, Value value,
                        const Metadata& metadata, const AppendOptions& options) {
  validate_user_id(user);
  validate_metadata(metadata);
  Value v = m_impl->checked(key, std::move(value));
  return m_impl->append(user,
                        Impl::with_ids({PreferenceSet{std::string(key), std::move(v)}}, options),
                        options, metadata);
}

AppendResult Store::set_many(std::string_view user,
                             const std::vector<std::pair<std::string, Value>>& values,
                             const Metadata& metadata, const AppendOptions& options) {
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
  return m_impl->append(user, Impl::with_ids(std::move(events), options), options, metadata);
}

AppendResult Store::reset(std::string_view user, std::string_view key, const Metadata& metadata,
                          const AppendOptions& options) {
  validate_user_id(user);
  validate_metadata(metadata);
  validate_key(key);
  if (m_impl->options.strict && !m_impl->definition_of(key)) {
    throw ValidationError(std::string(key) +
                          ": no preference with this key is defined, and the store is in strict "
                          "mode");
  }
  return m_impl->append(user, Impl::with_ids({PreferenceReset{std::string(key)}}, options), options,
                        metadata);
}

AppendResult Store::define(const PreferenceDefinition& definition, const Metadata& metadata,
                           const AppendOptions& options) {
  validate_definition(definition);
  validate_metadata(metadata);
  PreferenceDefinition d = definition;
  if (d.default_value) d.default_value = normalized(*d.default_value);
  const auto result =
      m_impl->append(definition_stream_id(d.key), Impl::with_ids({PreferenceDefined{d}}, options),
                     options, metadata);
  m_impl->remember(d);
  return result;
}

AppendResult Store::deprecate(std::string_view key, std::string_view note, const Metadata& metadata,
                              const AppendOptions& options) {
  validate_key(key);
  validate_metadata(metadata);
  m_impl->reload_definitions();
  auto def = m_impl->definition_of(key);
  if (!def) {
    throw ValidationError(std::string(key) + ": cannot deprecate a preference that is not defined");
  }
  const auto result = m_impl->append(
      definition_stream_id(key),
      Impl::with_ids({PreferenceDeprecated{std::string(key), std::string(note)}}, options), options,
      metadata);
  def->deprecated = true;
  def->deprecation_note = std::string(note);
  m_impl->remember(*def);
  return result;
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

std::optional<Value> Store::get(std::string_view user, std::string_view key) {
  validate_user_id(user);
  validate_key(key);
  if (auto entry = m_impl->state->get(user, key)) return std::move(entry->value);
  if (auto def = m_impl->definition_of(key)) return def->default_value;
  return std::nullopt;
}

std::map<std::string, ResolvedPreference> Store::get_all(std::string_view user) {
  validate_user_id(user);
  std::map<std::string, ResolvedPreference> out;
  for (auto& [key, entry] : m_impl->state->get_all(user)) {
    out.emplace(key, ResolvedPreference{entry.value, false, entry});
  }
  const DefinitionCatalog catalog = [&] {
    m_impl->refresh_if_stale();
    std::shared_lock lock(m_impl->cache_mutex);
    return m_impl->cache;
  }();
  for (const auto& [key, def] : catalog) {
    if (out.count(key) == 0 && def.definition.default_value) {
      out.emplace(key, ResolvedPreference{*def.definition.default_value, true, std::nullopt});
    }
  }
  return out;
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
                                          std::int64_t after_version) {
  if (user.empty()) throw ValidationError("history: the user id must not be empty");
  if (limit < 0) throw ValidationError("history: limit must not be negative");
  return m_impl->log->read_stream(user, after_version + 1, limit);
}

std::int64_t Store::version(std::string_view user) {
  return m_impl->log->stream_version(user).value_or(0);
}

std::vector<storage::MigrationStatus> Store::migrate() {
  return storage::MigrationRunner(*m_impl->pool).migrate();
}

std::vector<storage::MigrationStatus> Store::migration_status() {
  return storage::MigrationRunner(*m_impl->pool).status();
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
