// The prefstore tool's time-travel commands: diff, restore and snapshot create|list|prune.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common.hpp"

namespace prefstore::cli {

class TimeTravelCommands {
 public:
  // Registers the commands and their options on app. Requires: this object outlives parsing and
  // run().
  void add_to(CLI::App& app);

  // Runs the command of this group that was parsed; std::nullopt when none was.
  std::optional<int> run(bool open_mode);

 private:
  int run_diff();
  int run_restore(bool open_mode);
  int run_snapshot_create();
  int run_snapshot_list();
  int run_snapshot_prune();

  CLI::App* m_diff = nullptr;
  CLI::App* m_restore = nullptr;
  CLI::App* m_snapshot_create = nullptr;
  CLI::App* m_snapshot_list = nullptr;
  CLI::App* m_snapshot_prune = nullptr;

  std::string m_user;
  std::string m_from;
  std::string m_to = "now";
  std::vector<std::string> m_keys;
  bool m_all = false;
  bool m_dry_run = false;
  bool m_json = false;
  bool m_include_unchanged = false;
  std::int64_t m_keep = 2;
  std::int64_t m_limit = 1000;
  WriteFlags m_flags;
};

}  // namespace prefstore::cli
