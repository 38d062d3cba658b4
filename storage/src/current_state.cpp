#include "prefstore/storage/current_state.hpp"

// cereal's JSON archive configures rapidjson (assertions that throw): it comes first, in a
// block of its own, which clang-format does not reorder (tests/json_include_check.sh).
#include <cereal/archives/json.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "definition_rows.hpp"
#include "error_translation.hpp"
#include "field_cursor.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"

namespace prefstore::storage {
namespace {

constexpr const char* kEntryColumns =
    "key, value_type, value::text, version, (extract(epoch FROM updated_at) * 1000000)::bigint, "
    "coalesce(updated_by, ''), last_position";

std::pair<std::string, PreferenceEntry> decode_entry(const pqxx::row& r) {
  detail::FieldCursor f(r);
  std::string key(f.text());
  const std::string_view type_name = f.text();
  const auto type = parse_value_type(type_name);
  if (!type) {
    throw CorruptDataError("preferences_current row for key " + key + " has unknown value_type \"" +
                           std::string(type_name) + "\"");
  }
  PreferenceEntry e;
  e.value = value_from_json(*type, f.text());
  e.version = f.as<std::int64_t>();
  e.updated_at = from_unix_micros(f.as<std::int64_t>());
  e.updated_by = std::string(f.text());
  e.last_position = f.as<std::int64_t>();
  return {std::move(key), std::move(e)};
}

std::vector<Value> decode_allowed(const std::string& key, ValueType type, const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsArray()) {
    throw CorruptDataError("preference_definitions.allowed_values of " + key +
                           " is not a JSON array: " + json);
  }
  // The allowed values of a string_list constrain its items, which are strings.
  const ValueType item_type = type == ValueType::string_list ? ValueType::string : type;
  std::vector<Value> out;
  for (const auto& item : doc.GetArray()) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    item.Accept(writer);
    out.push_back(value_from_json(item_type, buffer.GetString()));
  }
  return out;
}

}  // namespace

namespace detail {
DefinitionEntry definition_from_row(const pqxx::row& row) {
  DefinitionEntry e;
  PreferenceDefinition& d = e.definition;
  d.key = row[0].as<std::string>();
  const auto type = parse_value_type(row[1].as<std::string>());
  if (!type) {
    throw CorruptDataError("preference_definitions row " + d.key + " has unknown value_type");
  }
  d.type = *type;
  if (!row[2].is_null()) d.default_value = value_from_json(d.type, row[2].as<std::string>());
  if (!row[3].is_null()) d.constraints.min = row[3].as<double>();
  if (!row[4].is_null()) d.constraints.max = row[4].as<double>();
  if (!row[5].is_null()) d.constraints.max_length = row[5].as<std::int64_t>();
  if (!row[6].is_null()) d.constraints.pattern = row[6].as<std::string>();
  if (!row[7].is_null()) {
    d.constraints.allowed_values = decode_allowed(d.key, d.type, row[7].as<std::string>());
  }
  if (!row[8].is_null()) d.constraints.max_items = row[8].as<std::int64_t>();
  d.description = row[9].as<std::string>();
  d.deprecated = row[10].as<bool>();
  d.deprecation_note = row[11].as<std::string>();
  e.version = row[12].as<std::int64_t>();
  e.defined_at = from_unix_micros(row[13].as<std::int64_t>());
  e.updated_at = from_unix_micros(row[14].as<std::int64_t>());
  e.updated_by = row[15].as<std::string>();
  e.last_position = row[16].as<std::int64_t>();
  return e;
}
}  // namespace detail

CurrentState::CurrentState(ConnectionPool& pool) : m_pool(pool) {}

std::optional<PreferenceEntry> CurrentState::get(std::string_view user, std::string_view key) {
  static const std::string sql = std::string("SELECT ") + kEntryColumns +
                                 " FROM prefstore.preferences_current WHERE stream_id = $1 AND "
                                 "key = $2";
  auto handle = m_pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_get", sql, std::string(user),
                                          std::string(key));
    if (r.empty()) return std::nullopt;
    return decode_entry(r[0]).second;
  } catch (...) {
    detail::rethrow_translated("reading " + std::string(key) + " of " + std::string(user));
  }
}

PreferenceState CurrentState::get_all(std::string_view user) {
  static const std::string sql = std::string("SELECT ") + kEntryColumns +
                                 " FROM prefstore.preferences_current WHERE stream_id = $1";
  auto handle = m_pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_get_all", sql, std::string(user));
    PreferenceState state;
    // The end as a hint: the index scan usually returns the rows in key order.
    detail::for_each_row(
        r, [&](const pqxx::row& row) { state.insert(state.end(), decode_entry(row)); });
    return state;
  } catch (...) {
    detail::rethrow_translated("reading the preferences of " + std::string(user));
  }
}

DefinitionCatalog CurrentState::definitions() {
  static const std::string sql =
      "SELECT key, value_type, default_value::text, min_value, max_value, max_length, pattern, "
      "allowed_values::text, max_items, description, deprecated, coalesce(deprecation_note, ''), "
      "version, (extract(epoch FROM defined_at) * 1000000)::bigint, "
      "(extract(epoch FROM updated_at) * 1000000)::bigint, coalesce(updated_by, ''), "
      "last_position FROM prefstore.preference_definitions ORDER BY key";
  auto handle = m_pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_definitions", sql);
    DefinitionCatalog catalog;
    for (const auto& row : r) {
      DefinitionEntry e = detail::definition_from_row(row);
      const std::string key = e.definition.key;
      catalog.emplace(key, std::move(e));
    }
    return catalog;
  } catch (...) {
    detail::rethrow_translated("reading the preference definitions");
  }
}

}  // namespace prefstore::storage
