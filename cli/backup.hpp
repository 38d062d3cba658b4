// The prefstore tool's backup commands: backup create | verify | restore.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common.hpp"

namespace prefstore::cli {

class BackupCommands {
 public:
  // Registers the commands on app. Requires: this object outlives parsing and run().
  void add_to(CLI::App& app);

  // Runs the command of this group that was parsed; std::nullopt when none was.
  std::optional<int> run();

 private:
  int run_create();
  int run_verify();
  int run_restore();

  CLI::App* m_create = nullptr;
  CLI::App* m_verify = nullptr;
  CLI::App* m_restore = nullptr;
  std::string m_file;
  std::int64_t m_since = 0;
  std::size_t m_chunk_records = 1000;
  std::string m_until;
  std::optional<std::int64_t> m_position;
  bool m_force = false;
  bool m_quiet = false;
};

}  // namespace prefstore::cli
