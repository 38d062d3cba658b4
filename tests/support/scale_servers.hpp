// Test and benchmark support for the scale-out issue: a streaming standby of a local server, and
// Citus nodes (a coordinator and workers on 127.0.0.1). Each object owns its folders and stops
// its server when destroyed. Thread-safety: one object per thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "prefstore/storage/local_server.hpp"

namespace prefstore::testing {

// A hot standby of `primary` made with pg_basebackup -R (streaming replication), listening on a
// unix socket in a folder of its own.
class StandbyServer {
 public:
  // Requires: primary runs. Throws std::runtime_error with the command's output on failure.
  explicit StandbyServer(const storage::LocalServer& primary);
  ~StandbyServer();
  StandbyServer(const StandbyServer&) = delete;
  StandbyServer& operator=(const StandbyServer&) = delete;

  // Connection string of a database on the standby.
  [[nodiscard]] std::string url(const std::string& database) const;
  void stop();
  void start();

 private:
  void run(const std::string& command) const;
  [[nodiscard]] std::string pg_ctl() const;
  [[nodiscard]] std::string data() const;

  std::filesystem::path m_bin;
  std::filesystem::path m_dir;
  std::string m_run_as;  // "runuser -u <server user> -- " when root, else ""
  int m_port = 5499;     // names the socket file only
};

// One Citus node: a local server on a free 127.0.0.1 port that loads Citus, trusts local TCP
// connections, and has the citus extension in its database "prefstore".
class CitusNode {
 public:
  CitusNode();
  ~CitusNode();
  CitusNode(const CitusNode&) = delete;
  CitusNode& operator=(const CitusNode&) = delete;

  [[nodiscard]] int port() const;
  // User postgres, database "prefstore" or the one named.
  [[nodiscard]] std::string url(const std::string& database = "prefstore") const;
  void exec(const std::string& sql, const std::string& database = "prefstore") const;
  // The first column of one row.
  [[nodiscard]] std::string value(const std::string& sql,
                                  const std::string& database = "prefstore") const;
  void stop();
  void start();

 private:
  std::filesystem::path m_home;
  std::unique_ptr<storage::LocalServer> m_server;
};

// A coordinator with `workers` workers registered.
class CitusCluster {
 public:
  explicit CitusCluster(int workers = 2);
  // Creates `database` on every node with the citus extension and the workers registered in the
  // coordinator's copy; returns the coordinator's URL of it. Without `citus_on_coordinator` the
  // coordinator's copy is a plain PostgreSQL database until register_workers(database).
  std::string create_database(const std::string& database, bool citus_on_coordinator = true);
  // Creates the citus extension in the coordinator's `database` if missing and registers the
  // workers there.
  void register_workers(const std::string& database);
  CitusNode coordinator;
  std::vector<std::unique_ptr<CitusNode>> workers;
};

}  // namespace prefstore::testing
