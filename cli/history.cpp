#include "history.hpp"

#include <iostream>
#include <vector>

#include "common.hpp"
#include "output.hpp"
#include "prefstore/audit.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/store.hpp"

namespace prefstore::cli {
namespace {

// One CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF; quotes doubled.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// One CSV record, ended by CRLF (RFC 4180).
void csv_record(std::ostream& out, const std::vector<std::string>& fields) {
  std::string line;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    line += csv_field(fields[i]);
  }
  out << line << "\r\n";
}

std::string joined(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

Timestamp time_option(const char* option, const std::string& text) {
  if (text == "now")
    return std::chrono::time_point_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now());
  if (auto t = parse_timestamp(text)) return *t;
  throw UsageError(std::string(option) + " \"" + text +
                   "\" is not a time: use ISO 8601 (2026-11-30T08:00:00Z, 2026-11-30 for its "
                   "midnight UTC, an offset such as +01:00) or now");
}

}  // namespace

void HistoryCommand::add_to(CLI::App& app) {
  m_command = app.add_subcommand(
      "history",
      "The audit trail: who changed what, when, from where and why (newest first, one page)");
  m_command->add_option("user", m_user,
                        "Only this user's events (or $def:<key> for a definition's history)");
  m_command->add_option("--key", m_key,
                        "Only events about this key (restores that include it too)");
  m_command->add_option("--key-prefix", m_key_prefix,
                        "Only events about keys starting with this, e.g. calendar.");
  m_command->add_option("--actor", m_actor, "Only changes made by this actor");
  m_command->add_option("--source", m_source, "Only changes written by this service");
  m_command->add_option(
      "--type", m_type,
      "Only this event type (PreferenceSet, PreferenceReset, PreferencesRestored, "
      "PreferenceDefined, PreferenceDeprecated)");
  m_command->add_option("--correlation-id", m_correlation_id,
                        "Only the events of this request or workflow");
  m_command->add_option("--since", m_since,
                        "Only events recorded at or after this time (ISO 8601)");
  m_command->add_option("--until", m_until,
                        "Only events recorded at or before this time (ISO 8601)");
  m_from_position_option = m_command->add_option("--from-position", m_from_position,
                                                 "Only events at or after this global position");
  m_to_position_option = m_command->add_option("--to-position", m_to_position,
                                               "Only events at or before this global position");
  m_command->add_flag("--oldest-first", m_oldest_first,
                      "Oldest first (events of finished transactions; a cursor at the end shows "
                      "what was appended since)");
  m_command->add_option("--limit", m_limit, "Events per page (1 to 10000)")->capture_default_str();
  m_command->add_option("--cursor", m_cursor,
                        "Go on from an earlier page (same filters): the cursor it printed");
  m_command->add_option("--format", m_format, "table | jsonl | csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "jsonl", "csv"}));
  m_command->add_flag("--json", m_json, "Same as --format jsonl");
}

std::optional<int> HistoryCommand::run(
    const std::function<std::string(const EventData&)>& describe) {
  if (m_command == nullptr || !m_command->parsed()) return std::nullopt;
  AuditQuery query;
  const auto text = [](const std::string& s) {
    return s.empty() ? std::nullopt : std::optional<std::string>(s);
  };
  query.user = text(m_user);
  query.key = text(m_key);
  query.key_prefix = text(m_key_prefix);
  query.actor = text(m_actor);
  query.source = text(m_source);
  query.event_type = text(m_type);
  query.correlation_id = text(m_correlation_id);
  if (!m_since.empty()) query.from_time = time_option("--since", m_since);
  if (!m_until.empty()) query.to_time = time_option("--until", m_until);
  if (m_from_position_option->count() > 0) query.from_position = m_from_position;
  if (m_to_position_option->count() > 0) query.to_position = m_to_position;
  query.order = m_oldest_first ? AuditOrder::oldest_first : AuditOrder::newest_first;
  query.limit = m_limit;
  query.cursor = text(m_cursor);
  const std::string format = m_json ? "jsonl" : m_format;
  validate_audit_query(query);  // before opening the store: bad input costs no connection

  Store store(store_options(true, Task::read));
  const AuditPage page = store.audit(query);
  const auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };

  if (format == "jsonl") {
    for (const auto& e : page.events) {
      std::string keys;
      for (const auto& k : audit_event_keys(e.data))
        keys += (keys.empty() ? "" : ",") + json_string(k);
      const auto encoded = encode(e.data);
      std::cout << "{\"position\":" << e.global_position << ",\"recorded_at\":\""
                << format_timestamp(e.recorded_at)
                << "\",\"stream_id\":" << json_string(e.stream_id)
                << ",\"version\":" << e.stream_version
                << ",\"event_id\":" << json_string(e.event_id)
                << ",\"type\":" << json_string(encoded.event_type) << ",\"keys\":[" << keys
                << "],\"change\":" << json_string(describe(e.data))
                << ",\"payload\":" << encoded.payload_json
                << ",\"metadata\":" << encode_metadata(e.metadata) << "}\n";
    }
  } else if (format == "csv") {
    csv_record(std::cout,
               {"position", "recorded_at", "user", "version", "event_type", "keys", "change",
                "actor", "source", "reason", "correlation_id", "causation_id", "event_id"});
    for (const auto& e : page.events) {
      const auto& m = e.metadata;
      csv_record(std::cout, {std::to_string(e.global_position), format_timestamp(e.recorded_at),
                             e.stream_id, std::to_string(e.stream_version), event_type_name(e.data),
                             joined(audit_event_keys(e.data), " "), describe(e.data), m.actor,
                             m.source, m.reason, m.correlation_id, m.causation_id, e.event_id});
    }
  } else {
    Table table({"POSITION", "RECORDED AT", "USER", "VERSION", "EVENT", "CHANGE", "ACTOR", "SOURCE",
                 "REASON"});
    for (const auto& e : page.events) {
      table.add({std::to_string(e.global_position), format_timestamp(e.recorded_at), e.stream_id,
                 std::to_string(e.stream_version), event_type_name(e.data), describe(e.data),
                 dash(e.metadata.actor), dash(e.metadata.source), dash(e.metadata.reason)});
    }
    table.print(std::cout);
    std::cout << page.events.size() << " events\n";
  }
  std::ostream& cursor_out = format == "table" ? std::cout : std::cerr;
  if (page.next_cursor) {
    cursor_out << "next cursor: " << *page.next_cursor << "\n";
  } else if (page.resume_cursor) {
    cursor_out << "end; resume cursor (shows what is appended later): " << *page.resume_cursor
               << "\n";
  }
  return kOk;
}

}  // namespace prefstore::cli
