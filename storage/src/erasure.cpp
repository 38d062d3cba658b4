#include "prefstore/storage/erasure.hpp"

#include <algorithm>
#include <cctype>
#include <regex>

#include "prefstore/errors.hpp"
#include "prefstore/event.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore::storage {
namespace {

constexpr const char* kEraseSql =
    "SELECT audit_position, events, stream_version, first_position, last_position, "
    "encode(chain_head, 'hex'), already_erased "
    "FROM prefstore.erase_stream($1, $2, $3, $4::uuid)";

std::int64_t as_int(const SqlValue& v) {
  return v ? std::stoll(*v) : 0;
}

}  // namespace

ErasureRecord erase_stream(ConnectionPool& pool, std::string_view stream_id,
                           std::string_view reason, const EraseOptions& options) {
  const std::string stream(stream_id);
  if (stream.empty() || stream.front() == '$') {
    throw ValidationError("cannot erase stream \"" + stream +
                          "\": only users' streams can be erased, not prefstore's own");
  }
  if (std::all_of(reason.begin(), reason.end(),
                  [](unsigned char c) { return std::isspace(c) != 0; })) {
    throw ValidationError("erasing user " + stream + " needs a reason (e.g. the request's id)");
  }
  std::string event_id = options.event_id.empty() ? new_event_id() : options.event_id;
  static const std::regex uuid(
      "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
  if (!std::regex_match(event_id, uuid)) {
    throw ValidationError("event id \"" + event_id + "\" of the erasure record is not a UUID");
  }
  std::transform(event_id.begin(), event_id.end(), event_id.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });

  UnitOfWork uow(pool);
  std::vector<SqlRow> rows;
  try {
    rows = uow.exec(kEraseSql, {stream, std::string(reason), options.actor, event_id});
  } catch (const PermissionError& e) {
    throw PermissionError(
        "erasing user " + stream +
            " needs the role prefstore_owner (connect as a member of it): " + e.what(),
        e.sqlstate());
  }
  uow.commit();
  const SqlRow& row = rows.at(0);
  ErasureRecord record;
  record.stream_id = stream;
  record.audit_position = as_int(row[0]);
  record.events = as_int(row[1]);
  record.stream_version = as_int(row[2]);
  record.first_position = as_int(row[3]);
  record.last_position = as_int(row[4]);
  record.chain_head = row[5].value_or("");
  record.already_erased = row[6] && *row[6] == "t";
  record.event_id = event_id;
  return record;
}

}  // namespace prefstore::storage
