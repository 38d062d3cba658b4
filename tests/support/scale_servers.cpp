#include "scale_servers.hpp"

#include <unistd.h>

#include <pqxx/pqxx>
#include <stdexcept>

#include "test_cluster.hpp"

namespace prefstore::testing {

namespace fs = std::filesystem;

StandbyServer::StandbyServer(const storage::LocalServer& primary)
    : m_bin(primary.options().bin_dir),
      m_dir(make_temp_dir("prefstore-standby")),
      m_run_as(::geteuid() == 0 ? "runuser -u " + primary.options().run_as_user + " -- " : "") {
  if (::geteuid() == 0) run("chown " + primary.options().run_as_user + " " + m_dir.string());
  run(m_run_as + (m_bin / "pg_basebackup").string() + " -h " + primary.socket_dir().string() +
      " -p " + std::to_string(primary.options().port) + " -U " + primary.options().superuser +
      " -D " + data() + " -R -X stream -c fast");
  start();
}

StandbyServer::~StandbyServer() {
  (void)run_shell(pg_ctl() + " -D " + data() + " -m immediate -w stop");
  std::error_code ec;
  fs::remove_all(m_dir, ec);
}

std::string StandbyServer::url(const std::string& database) const {
  return "host=" + m_dir.string() + " port=" + std::to_string(m_port) +
         " user=postgres dbname=" + database;
}

void StandbyServer::stop() {
  run(pg_ctl() + " -D " + data() + " -m fast -w stop");
}

void StandbyServer::start() {
  run(pg_ctl() + " -D " + data() + " -l " + (m_dir / "server.log").string() +
      " -w -t 60 start -o \"-p " + std::to_string(m_port) + " -k " + m_dir.string() +
      " -c listen_addresses='' -c hot_standby=on\"");
}

void StandbyServer::run(const std::string& command) const {
  const auto r = run_shell(command);
  if (r.exit_code != 0) {
    throw std::runtime_error("`" + command + "` failed (" + std::to_string(r.exit_code) +
                             "): " + r.output);
  }
}

std::string StandbyServer::pg_ctl() const {
  return m_run_as + (m_bin / "pg_ctl").string();
}

std::string StandbyServer::data() const {
  return (m_dir / "data").string();
}

CitusNode::CitusNode() : m_home(make_temp_dir("prefstore-citus")) {
  storage::LocalServerOptions o = storage::local_server_options_from_environment();
  o.home = m_home;
  o.durable = false;
  o.listen_tcp = true;
  o.port = free_port();
  o.settings = {{"shared_preload_libraries", "citus"},
                {"max_prepared_transactions", "100"},
                {"max_connections", "200"}};
  o.hba_lines = {"host all all 127.0.0.1/32 trust"};
  m_server = std::make_unique<storage::LocalServer>(o);
  m_server->start();
  exec("CREATE EXTENSION IF NOT EXISTS citus");
}

CitusNode::~CitusNode() {
  try {
    m_server->stop(storage::StopMode::immediate);
  } catch (...) {
  }
  std::error_code ec;
  fs::remove_all(m_server->cluster_dir(), ec);
  fs::remove_all(m_home, ec);
}

int CitusNode::port() const {
  return m_server->options().port;
}

std::string CitusNode::url(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port()) + " user=postgres dbname=" + database;
}

void CitusNode::exec(const std::string& sql, const std::string& database) const {
  pqxx::connection c(url(database));
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

std::string CitusNode::value(const std::string& sql, const std::string& database) const {
  pqxx::connection c(url(database));
  pqxx::nontransaction tx(c);
  return tx.exec1(sql)[0].as<std::string>();
}

void CitusNode::stop() {
  m_server->stop(storage::StopMode::fast);
}

void CitusNode::start() {
  m_server->start();
}

CitusCluster::CitusCluster(int count) {
  for (int i = 0; i < count; ++i) workers.push_back(std::make_unique<CitusNode>());
  register_workers("prefstore");
}

void CitusCluster::register_workers(const std::string& database) {
  coordinator.exec("CREATE EXTENSION IF NOT EXISTS citus", database);
  coordinator.exec(
      "SELECT citus_set_coordinator_host('127.0.0.1', " + std::to_string(coordinator.port()) + ")",
      database);
  for (const auto& w : workers) {
    coordinator.exec("SELECT citus_add_node('127.0.0.1', " + std::to_string(w->port()) + ")",
                     database);
  }
}

std::string CitusCluster::create_database(const std::string& database, bool citus_on_coordinator) {
  std::vector<const CitusNode*> nodes{&coordinator};
  for (const auto& w : workers) nodes.push_back(w.get());
  for (const CitusNode* n : nodes) {
    pqxx::connection c(n->url("postgres"));
    pqxx::nontransaction tx(c);
    tx.exec("CREATE DATABASE " + c.quote_name(database));
    if (n != &coordinator) n->exec("CREATE EXTENSION citus", database);
  }
  if (citus_on_coordinator) register_workers(database);
  return coordinator.url(database);
}

}  // namespace prefstore::testing
