// The prefstore tool's retention command: prefstore compact --older-than DAYS | --before TIME
// [--user U] --reason R [--actor A] [--dry-run]. Opt-in: nothing compacts unless an operator
// (or their cron job) runs it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common.hpp"

namespace prefstore::cli {

class RetentionCommand {
 public:
  // Registers `compact` and its options on app. Requires: this object outlives parsing and
  // run().
  void add_to(CLI::App& app);

  // Runs `compact` when it was parsed, else returns std::nullopt. Prints one line per stream
  // compacted (or, with --dry-run, that would be) or skipped, then a summary. Returns kOk, or
  // kConflict when a stream was skipped (run it again later). Throws prefstore::Error
  // (UsageError for a bad --before or a missing cut-off, PermissionError without
  // prefstore_owner).
  std::optional<int> run();

 private:
  CLI::App* m_command = nullptr;
  std::optional<std::int64_t> m_older_than_days;
  std::string m_before;
  std::string m_user;
  std::string m_reason;
  std::string m_actor;
  bool m_dry_run = false;
};

}  // namespace prefstore::cli
