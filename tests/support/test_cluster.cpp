#include "test_cluster.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <pqxx/pqxx>

namespace fs = std::filesystem;

namespace prefstore::testing {

fs::path make_temp_dir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed for " + pattern);
  ::chmod(pattern.c_str(), 0755);
  return pattern;
}

CommandResult run_shell(const std::string& command_line) {
  CommandResult result;
  FILE* pipe = ::popen((command_line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

TestCluster::TestCluster() {
  m_home = make_temp_dir("prefstore-test");
  storage::LocalServerOptions options = storage::local_server_options_from_environment();
  options.home = m_home;
  options.durable = false;
  options.database = "postgres";
  options.settings = {{"max_connections", "200"}};
  m_server = std::make_unique<storage::LocalServer>(options);
  m_server->start();
}

namespace {
std::mutex g_mutex;
TestCluster* g_cluster = nullptr;  // shut down by the gtest environment at the end
}  // namespace

TestCluster& TestCluster::instance() {
  std::lock_guard lock(g_mutex);
  if (g_cluster == nullptr) g_cluster = new TestCluster();
  return *g_cluster;
}

void TestCluster::shutdown() {
  if (!m_server) return;
  try {
    m_server->stop(storage::StopMode::immediate);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test cluster: stop failed: %s\n", e.what());
  }
  std::error_code ec;
  const fs::path cluster = m_server->cluster_dir();
  fs::remove_all(cluster, ec);
  fs::remove_all(m_home, ec);
  m_server.reset();
}

std::string TestCluster::fresh_database() {
  static std::atomic<int> counter{0};
  std::string base = "t";
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    base += "_" + std::string(info->test_suite_name()) + "_" + info->name();
  }
  std::string name;
  for (char c : base) {
    name += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  }
  name = name.substr(0, 50) + "_" + std::to_string(counter++);
  pqxx::connection conn(m_server->url("postgres"));
  pqxx::nontransaction tx(conn);
  tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name));
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  return m_server->url(name);
}

namespace {
class ClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(g_mutex);
    if (g_cluster != nullptr) g_cluster->shutdown();
  }
};
}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace prefstore::testing

// The test programs' main. Weak, so that a program with its own main can link these helpers
// (bench/scale_bench.cpp uses the servers of scale_servers.hpp).
__attribute__((weak)) int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new prefstore::testing::ClusterEnvironment);
  return RUN_ALL_TESTS();
}
