// Test support: a throwaway PostgreSQL 15 cluster per test process, and a fresh database per test.
//
// The cluster lives in a new folder under /tmp (reachable by the server's unprivileged user when
// the tests run as root), runs without fsync, and is stopped and removed when the process ends.
// Tests never touch a user's data. Thread-safety: instance() and fresh_database() are thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "prefstore/storage/local_server.hpp"

namespace prefstore::testing {

class TestCluster {
 public:
  // The process's cluster, started on first use.
  static TestCluster& instance();

  // Creates an empty database with a name derived from the running test and returns its
  // connection string.
  std::string fresh_database();

  // Connection string of an existing database.
  [[nodiscard]] std::string url(const std::string& database) const {
    return m_server->url(database);
  }

  [[nodiscard]] storage::LocalServer& server() { return *m_server; }

  // Stops the server and removes its folders. Called at the end of the test program.
  void shutdown();

 private:
  TestCluster();
  std::filesystem::path m_home;
  std::unique_ptr<storage::LocalServer> m_server;
};

// A new, empty temporary folder that the local server's user can enter; removed by the caller.
std::filesystem::path make_temp_dir(const std::string& prefix);

// A TCP port on 127.0.0.1 that nothing listens on right now (bound to port 0, then released).
// Throws std::runtime_error when none can be bound.
int free_port();

// Runs a shell command line, returns its exit code and combined output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult run_shell(const std::string& command_line);

}  // namespace prefstore::testing
