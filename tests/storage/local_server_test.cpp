// LocalServer: prefstore's own cluster, created on first use, started once and reused.
// Each test uses its own home folder (not the process's shared test cluster).
#include "prefstore/storage/local_server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <pqxx/pqxx>
#include <set>
#include <thread>
#include <vector>

#include "prefstore/errors.hpp"
#include "test_cluster.hpp"

namespace fs = std::filesystem;

namespace prefstore::storage {
namespace {

using prefstore::testing::make_temp_dir;

// A LocalServer in a fresh home folder, stopped and removed at the end of the test.
class LocalServerTest : public ::testing::Test {
 protected:
  void SetUp() override { m_root = make_temp_dir("prefstore-local"); }
  void TearDown() override {
    for (auto& s : m_servers) {
      try {
        s->stop(StopMode::immediate);
      } catch (...) {
      }
      std::error_code ec;
      fs::remove_all(s->cluster_dir(), ec);
    }
    std::error_code ec;
    fs::remove_all(m_root, ec);
  }
  LocalServerOptions options_in(const fs::path& home) {
    LocalServerOptions o = local_server_options_from_environment();
    o.home = home;
    o.durable = false;
    return o;
  }
  LocalServer& track(LocalServer server) {
    m_servers.push_back(std::make_unique<LocalServer>(std::move(server)));
    return *m_servers.back();
  }
  static std::string query_one(const std::string& url, const std::string& sql) {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    return tx.exec1(sql)[0].as<std::string>();
  }
  fs::path m_root;
  std::vector<std::unique_ptr<LocalServer>> m_servers;
};

TEST_F(LocalServerTest, FirstStartCreatesTheClusterAndTheDatabase) {
  LocalServer& server = track(LocalServer(options_in(m_root / ".prefstore")));
  EXPECT_FALSE(server.initialized());
  EXPECT_FALSE(server.running());
  server.start();
  EXPECT_TRUE(server.initialized());
  EXPECT_TRUE(server.running());
  EXPECT_GT(server.postmaster_pid(), 0);
  EXPECT_EQ(query_one(server.url(), "SELECT current_database()"), "prefstore");
  EXPECT_EQ(query_one(server.url(), "SELECT current_setting('server_version_num')::int / 10000"),
            "15");
  // Unix socket only: no TCP listener unless asked for.
  EXPECT_EQ(query_one(server.url(), "SHOW listen_addresses"), "");
}

TEST_F(LocalServerTest, SecondStartReusesTheRunningServer) {
  LocalServer& first = track(LocalServer(options_in(m_root / "home")));
  first.start();
  const long pid = first.postmaster_pid();
  LocalServer second(options_in(m_root / "home"));
  EXPECT_TRUE(second.running());
  second.start();
  EXPECT_EQ(second.postmaster_pid(), pid);
}

TEST_F(LocalServerTest, ConcurrentStartsCreateOneCluster) {
  const fs::path home = m_root / "home";
  track(LocalServer(options_in(home)));
  std::vector<std::thread> threads;
  std::vector<long> pids(4, 0);
  std::vector<std::string> errors(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      try {
        LocalServer s(options_in(home));
        s.start();
        pids[static_cast<std::size_t>(i)] = s.postmaster_pid();
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(i)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(std::set<long>(pids.begin(), pids.end()).size(), 1u);
  EXPECT_GT(pids[0], 0);
}

TEST_F(LocalServerTest, StopsAndStartsAgainKeepingData) {
  LocalServer& server = track(LocalServer(options_in(m_root / "home")));
  server.start();
  {
    pqxx::connection c(server.url());
    pqxx::work tx(c);
    tx.exec("CREATE TABLE working_hours (user_id text, starts time)");
    tx.exec("INSERT INTO working_hours VALUES ('ada', '09:00')");
    tx.commit();
  }
  server.stop();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.postmaster_pid(), 0);
  server.stop();  // no-op when stopped
  server.start();
  EXPECT_EQ(query_one(server.url(), "SELECT starts::text FROM working_hours"), "09:00:00");
}

TEST_F(LocalServerTest, RecoversAfterAnImmediateStop) {
  LocalServer& server = track(LocalServer(options_in(m_root / "home")));
  server.start();
  server.stop(StopMode::immediate);
  server.start();
  EXPECT_EQ(query_one(server.url(), "SELECT 1"), "1");
}

TEST_F(LocalServerTest, RootPlacesAnUnreachableClusterWhereTheServerUserCanEnter) {
  // Like a checkout under /root: a home the unprivileged server user cannot enter.
  const fs::path locked = m_root / "locked";
  fs::create_directories(locked);
  ::chmod(locked.c_str(), 0700);
  LocalServer& server = track(LocalServer(options_in(locked / ".prefstore")));
  server.start();
  EXPECT_EQ(query_one(server.url(), "SELECT 1"), "1");
  if (::geteuid() == 0) {
    EXPECT_TRUE(fs::is_symlink(locked / ".prefstore" / "cluster"));
    EXPECT_EQ(server.cluster_dir().parent_path(), fs::path("/var/tmp/prefstore"));
  } else {
    // Not root: the server runs as this user, who can enter its own folder.
    EXPECT_EQ(server.cluster_dir(), locked / ".prefstore" / "cluster");
  }
}

TEST_F(LocalServerTest, LongHomePathGetsAShortSocketFolder) {
  const fs::path deep = m_root / std::string(60, 'd') / std::string(40, 'e');
  LocalServer& server = track(LocalServer(options_in(deep)));
  server.start();
  EXPECT_LT(server.socket_dir().string().size() + 16, 100u);
  EXPECT_EQ(query_one(server.url(), "SELECT 1"), "1");
}

TEST_F(LocalServerTest, MissingBinariesFailNamingTheStep) {
  LocalServerOptions o = options_in(m_root / "home");
  o.bin_dir = "/nonexistent/postgresql/bin";
  LocalServer& server = track(LocalServer(o));
  try {
    server.start();
    FAIL() << "expected UnavailableError";
  } catch (const UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find("initdb"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(server.running());
}

TEST_F(LocalServerTest, UnknownServerUserIsAUsageErrorWhenRoot) {
  LocalServerOptions o = options_in(m_root / "home");
  o.run_as_user = "no_such_user_prefstore";
  LocalServer& server = track(LocalServer(o));
  if (::geteuid() == 0) {
    try {
      server.start();
      FAIL() << "expected UsageError";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("no_such_user_prefstore"), std::string::npos)
          << e.what();
    }
  } else {
    server.start();  // the option only matters to root
    EXPECT_TRUE(server.running());
  }
}

TEST_F(LocalServerTest, EmptyHomeIsAUsageError) {
  LocalServerOptions o;
  o.home = "";
  EXPECT_THROW(LocalServer{o}, UsageError);
}

TEST_F(LocalServerTest, UrlNamesTheSocketFolderAndDatabase) {
  LocalServer& server = track(LocalServer(options_in(m_root / "home")));
  const std::string url = server.url("other_db");
  EXPECT_NE(url.find("host='" + server.socket_dir().string() + "'"), std::string::npos) << url;
  EXPECT_NE(url.find("dbname='other_db'"), std::string::npos) << url;
}

}  // namespace
}  // namespace prefstore::storage
