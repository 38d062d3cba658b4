// CurrentState: reads of the projected tables preferences_current and preference_definitions.
// These tables are written by EventLog::append in the append's transaction, so a read after a
// successful write sees it. Thread-safety: every member function may be called from any thread.
#pragma once

#include <optional>
#include <string_view>

#include "prefstore/preference_state.hpp"
#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

class CurrentState {
 public:
  // Requires: pool outlives this object.
  explicit CurrentState(ConnectionPool& pool);

  // The user's stored value of key, std::nullopt when the user has none (the caller applies
  // the default). One round trip. Throws UnavailableError, CorruptDataError on a bad row.
  [[nodiscard]] std::optional<PreferenceEntry> get(std::string_view user, std::string_view key);

  // Every stored value of the user (no defaults). One round trip.
  [[nodiscard]] PreferenceState get_all(std::string_view user);

  // Every definition, from preference_definitions. One round trip.
  [[nodiscard]] DefinitionCatalog definitions();

 private:
  ConnectionPool& m_pool;
};

}  // namespace prefstore::storage
