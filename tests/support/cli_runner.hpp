// Test support: the prefstore command-line tool, run as a real process. Header-only; for test
// programs that link the test support library (run_shell) and are built by prefstore_add_test,
// which defines PREFSTORE_CLI_PATH.
#pragma once

#include <map>
#include <string>

#include "scoped_environment.hpp"
#include "test_cluster.hpp"

namespace prefstore::testing {

// Runs the CLI with `args` and the given environment overrides, returns its exit code and
// combined output. The caller's database variables are cleared first, so nothing leaks in; they
// are put back afterwards. Not thread-safe (it changes the process's environment).
inline CommandResult run_cli(const std::string& args,
                             const std::map<std::string, std::string>& env) {
  ScopedDatabaseEnvironment scoped;
  for (const auto& [k, v] : env) scoped.set(k, v);
  return run_shell(std::string(PREFSTORE_CLI_PATH) + " " + args);
}

}  // namespace prefstore::testing
