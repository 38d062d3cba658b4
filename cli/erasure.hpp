// The prefstore tool's erasure command: prefstore erase USER --reason R.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common.hpp"

namespace prefstore::cli {

class EraseCommand {
 public:
  // Registers the command on app. Requires: this object outlives parsing and run().
  void add_to(CLI::App& app);

  // Runs the command when it was parsed; std::nullopt otherwise.
  std::optional<int> run();

 private:
  CLI::App* m_erase = nullptr;
  std::string m_user;
  std::string m_reason;
  std::string m_actor;
  std::string m_event_id;
  bool m_json = false;
};

}  // namespace prefstore::cli
