// Connection pool overhead: one statement through ConnectionPool::acquire() against the same
// statement on a connection held directly (the baseline), on a throwaway local server.
// The benchmark binary may use libpqxx for its baselines (it is not a layer of the library).
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <pqxx/pqxx>

#include "pq_access.hpp"
#include "prefstore/storage/connection_pool.hpp"
#include "prefstore/storage/local_server.hpp"

namespace {

using prefstore::storage::ConnectionPool;
using prefstore::storage::LocalServer;
using prefstore::storage::PoolOptions;

LocalServer& server() {
  static std::unique_ptr<LocalServer> s = [] {
    std::string dir = "/tmp/prefstore-bench-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) std::abort();
    ::chmod(dir.c_str(), 0755);
    auto options = prefstore::storage::local_server_options_from_environment();
    options.home = dir;
    options.durable = false;
    auto server = std::make_unique<LocalServer>(options);
    server->start();
    return server;
  }();
  return *s;
}

// Baseline: SELECT 1 on a connection the benchmark holds itself.
void BM_RawConnection_Select1(benchmark::State& state) {
  pqxx::connection conn(server().url());
  for (auto _ : state) {
    pqxx::nontransaction tx(conn);
    benchmark::DoNotOptimize(tx.exec("SELECT 1"));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawConnection_Select1)->Threads(1)->Threads(8)->UseRealTime();

// The same statement, with a pool acquire and release around it.
void BM_Pool_AcquireSelect1(benchmark::State& state) {
  static std::unique_ptr<ConnectionPool> pool;
  if (state.thread_index() == 0) {
    PoolOptions options;
    options.conninfo = server().url();
    options.max_size = 8;
    pool = std::make_unique<ConnectionPool>(options);
  }
  for (auto _ : state) {
    auto handle = pool->acquire();
    pqxx::nontransaction tx(prefstore::storage::detail::native(handle));
    benchmark::DoNotOptimize(tx.exec("SELECT 1"));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Pool_AcquireSelect1)->Threads(1)->Threads(8)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  server();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  server().stop(prefstore::storage::StopMode::immediate);
  std::error_code ec;
  std::filesystem::remove_all(server().cluster_dir(), ec);
  std::filesystem::remove_all(server().options().home, ec);
  return 0;
}
