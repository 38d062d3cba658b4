// Running helper programs (initdb, pg_ctl) without a shell, optionally as another OS user.
// Private to storage. Thread-safe: each call is independent.
#pragma once

#include <string>
#include <vector>

namespace prefstore::storage::detail {

struct ProcessResult {
  int exit_code = -1;  // the program's exit status; 128+N when killed by signal N
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (looked up in PATH when it has no '/') with the given arguments, stdin from
// /dev/null, and waits for it. When run_as is not empty the program runs as that user through
// runuser(1), which requires root. Throws UnavailableError when the program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& run_as = {});

// Quotes argv for messages (not for a shell).
std::string describe_command(const std::vector<std::string>& argv);

}  // namespace prefstore::storage::detail
