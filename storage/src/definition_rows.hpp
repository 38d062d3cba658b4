// Storage-internal: a row of prefstore.preference_definitions as the library reads it, shared by
// CurrentState::definitions and verify.
#pragma once

#include <pqxx/pqxx>

#include "prefstore/storage/current_state.hpp"

namespace prefstore::storage::detail {

// Requires: row holds key, value_type, default_value::text, min_value, max_value, max_length,
// pattern, allowed_values::text, max_items, description, deprecated,
// coalesce(deprecation_note, ''), version, defined_at and updated_at in unix microseconds,
// coalesce(updated_by, ''), last_position, in that order. Throws CorruptDataError for an
// unknown value type, a value or allowed_values that does not decode.
DefinitionEntry definition_from_row(const pqxx::row& row);

}  // namespace prefstore::storage::detail
