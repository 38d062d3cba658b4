#include "common.hpp"

#include "prefstore/timestamp.hpp"

namespace prefstore::cli {

AsOf parse_moment(const std::string& option, const std::string& text) {
  const auto number_after = [&](std::string_view prefix) -> std::optional<std::int64_t> {
    if (text.rfind(prefix, 0) != 0) return std::nullopt;
    const std::string digits = text.substr(prefix.size());
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      throw UsageError(option + ": \"" + text + "\" needs a whole number after \"" +
                       std::string(prefix) + "\"");
    }
    return std::stoll(digits);
  };
  if (text == "now") return AsOf::latest();
  if (const auto p = number_after("position:")) return AsOf::at_position(*p);
  if (const auto v = number_after("version:")) return AsOf::at_version(*v);
  if (const auto t = parse_timestamp(text)) return AsOf::at_time(*t);
  throw UsageError(option + ": \"" + text +
                   "\" is not a moment; give an ISO 8601 time (2026-11-30T08:00:00Z, or a date), "
                   "position:N, version:N or now");
}

int exit_code_for(const prefstore::Error& e) {
  if (dynamic_cast<const prefstore::UsageError*>(&e)) return kUsage;
  if (dynamic_cast<const prefstore::ValidationError*>(&e)) return kValidation;
  if (dynamic_cast<const prefstore::ConflictError*>(&e)) return kConflict;
  if (dynamic_cast<const prefstore::TransientError*>(&e)) return kUnavailable;
  if (dynamic_cast<const prefstore::MigrationError*>(&e)) return kSchema;
  if (dynamic_cast<const prefstore::PermissionError*>(&e)) return kPermission;
  if (dynamic_cast<const prefstore::CorruptDataError*>(&e)) return kCorrupt;
  return kError;
}

bool transaction_pooling_from_environment() {
  const char* raw = std::getenv("PREFSTORE_TRANSACTION_POOLING");
  if (raw == nullptr) return false;
  const std::string value = raw;
  if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
  if (value.empty() || value == "0" || value == "false" || value == "no" || value == "off") {
    return false;
  }
  throw UsageError("PREFSTORE_TRANSACTION_POOLING=\"" + value +
                   "\" is not a yes/no value; set 1 when PREFSTORE_DATABASE_URL names a "
                   "transaction-pooling proxy such as PgBouncer (pool_mode=transaction), else 0 "
                   "or leave it unset");
}

std::string role_for(Task task) {
  if (const char* role = std::getenv("PREFSTORE_ROLE"); role != nullptr && *role != '\0') {
    return std::string(role) == "none" ? std::string() : std::string(role);
  }
  // Through a transaction-pooling proxy SET ROLE would not hold: the login role's own
  // (membership-inherited) privileges are the task's privileges.
  if (transaction_pooling_from_environment()) return "";
  switch (task) {
    case Task::read:
      return "prefstore_reader";
    case Task::write:
      return "prefstore_writer";
    case Task::administer:
      return "prefstore_owner";
    case Task::migrate:
      return "";
  }
  return "";
}

prefstore::StoreOptions store_options(bool open_mode, Task task) {
  prefstore::StoreOptions options;
  options.pool.max_size = 2;
  options.pool.role = task == Task::migrate ? std::string() : role_for(task);
  options.pool.transaction_pooling = transaction_pooling_from_environment();
  options.strict = !open_mode;
  return options;
}

}  // namespace prefstore::cli
