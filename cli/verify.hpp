// The prefstore tool's `verify` command: tamper evidence (Store::verify). Checks one user's
// stream or every stream (hash chains, versions, stream rows, decoding, baselines, erasures and
// the read models), prints one line per problem and a summary, or JSON with every stream's
// chain head. Read-only: works as prefstore_reader. Exit 8 when a problem is found.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace prefstore::cli {

// `prefstore verify [USER] [--all] [--no-projections] [--json] [--quiet]`.
class VerifyCommand {
 public:
  // Registers `verify` and its options on app. Requires: this object outlives parsing and run().
  void add_to(CLI::App& app);

  // Runs `verify` when it was parsed, else returns std::nullopt. Returns kOk when clean,
  // kCorrupt when a problem was found, kUsage for neither or both of USER and --all. Throws
  // prefstore::Error when the store cannot be verified (unreachable, no privilege, old schema).
  std::optional<int> run();

 private:
  CLI::App* m_command = nullptr;
  std::string m_user;
  bool m_all = false;
  bool m_no_projections = false;
  bool m_json = false;
  bool m_quiet = false;
};

}  // namespace prefstore::cli
