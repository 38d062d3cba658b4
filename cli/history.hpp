// The prefstore tool's `history` command: the audit trail (Store::audit), filtered by user, key
// or key prefix, actor, source, event type, correlation id, time and position ranges, newest or
// oldest first, one page at a time, as a table, JSON lines or CSV (RFC 4180).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "prefstore/event.hpp"

namespace prefstore::cli {

class HistoryCommand {
 public:
  // Registers `history` and its options on app. Requires: this object outlives parsing and
  // run().
  void add_to(CLI::App& app);

  // Runs `history` when it was parsed, else returns std::nullopt. describe gives the one-line
  // summary of what an event changed (the CHANGE column). Prints the page on stdout and the
  // cursor of the next page (table: as the last line; jsonl and csv: on stderr). Throws
  // prefstore::Error (ValidationError for a bad filter or cursor, UsageError for a bad time).
  std::optional<int> run(const std::function<std::string(const EventData&)>& describe);

 private:
  CLI::App* m_command = nullptr;
  CLI::Option* m_from_position_option = nullptr;
  CLI::Option* m_to_position_option = nullptr;
  std::string m_user;
  std::string m_key;
  std::string m_key_prefix;
  std::string m_actor;
  std::string m_source;
  std::string m_type;
  std::string m_correlation_id;
  std::string m_since;
  std::string m_until;
  std::string m_cursor;
  std::string m_format = "table";
  std::int64_t m_from_position = 0;
  std::int64_t m_to_position = 0;
  std::int64_t m_limit = 100;
  bool m_oldest_first = false;
  bool m_json = false;
};

}  // namespace prefstore::cli
