// Storage-internal: writing preference_definitions from definition events (the append does it
// inline; a backup restore does it for the events it restored).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/event_log.hpp"

namespace prefstore::storage::detail {

// Projects the PreferenceDefined / PreferenceDeprecated events among `events` (stored in
// stream_id from first_version on) into preference_definitions, in tx. Other events are skipped.
void project_definition_events(pqxx::transaction_base& tx, const PooledConnection& handle,
                               std::string_view stream_id, const std::vector<NewEvent>& events,
                               std::int64_t first_version, const Metadata& metadata);

}  // namespace prefstore::storage::detail
