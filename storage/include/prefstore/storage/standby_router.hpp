// StandbyRouter: picks the server each read goes to. A read may go to a streaming standby
// (PostgreSQL hot standby) when the standby is up, still in recovery, and close enough: for a
// read given a ConsistencyToken, once the standby has replayed the token's position (waiting up
// to StandbyOptions::token_wait, then the primary serves it), so a service reads its own writes;
// for a read without a token, when its replay lag is within max_lag. Otherwise the primary.
// Writes never come here: they always use the primary's pool.
// Thread-safety: every member function may be called from any thread at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "prefstore/consistency_token.hpp"
#include "prefstore/storage/connection_pool.hpp"

namespace prefstore::storage {

struct StandbyOptions {
  // libpq connection strings of the standbys (hot_standby = on, streaming from the primary).
  // Default none: every read goes to the primary.
  std::vector<std::string> urls;
  // How long a read given a token waits for a standby to replay the token's position (asking
  // every 2 ms) before the primary serves it. Default 200 ms; 0 asks once.
  std::chrono::milliseconds token_wait{200};
  // A read without a token skips a standby whose replay lags the primary by more than this
  // (now minus the time of the last transaction it replayed, when it is behind). Default 5 s.
  std::chrono::milliseconds max_lag{5000};
  // How old a standby's known replay position and lag may get before the next read asks it and
  // the primary again (one short query on each). Default 1 s.
  std::chrono::milliseconds refresh_interval{1000};
  // A standby that failed (refused or lost a connection, or is no longer in recovery) is
  // skipped this long before it is tried again. Default 5 s.
  std::chrono::milliseconds down_for{5000};
  // Pool settings of each standby; conninfo is taken from urls. Default: PoolOptions' defaults.
  PoolOptions pool;
};

// What the router knows of one standby.
struct StandbyStatus {
  std::string url;                           // redacted connection string
  bool usable = false;                       // would serve a read without a token now
  bool in_recovery = false;                  // a standby (false: unreachable, or promoted)
  std::optional<ConsistencyToken> replayed;  // replay position at the last check
  std::int64_t lag_bytes = -1;               // primary's WAL position minus replayed; -1 unknown
  double lag_seconds = -1;                   // see StandbyOptions::max_lag; -1 unknown
  std::string problem;                       // why it is skipped, when it is
  std::uint64_t reads = 0;                   // reads it was chosen for
};

// Where one read goes.
struct ReadRoute {
  ConnectionPool* pool = nullptr;  // the standby's or the primary's
  int standby = -1;                // index into StandbyOptions::urls; -1: the primary
  // Why the primary serves a read that could have gone to a standby ("" when a standby does
  // or there is none): "token not replayed within token_wait", "no standby usable".
  std::string fallback;
};

class StandbyRouter {
 public:
  // Opens a pool per standby (connections are made on first use, so a standby that is down does
  // not stop the store from opening). Requires: primary outlives the router. Throws UsageError
  // for a malformed standby URL.
  StandbyRouter(ConnectionPool& primary, StandbyOptions options);
  ~StandbyRouter();
  StandbyRouter(const StandbyRouter&) = delete;
  StandbyRouter& operator=(const StandbyRouter&) = delete;

  // The server for a read that must see every write up to token (std::nullopt: any standby
  // within max_lag will do). Never throws for a standby's failure: it skips that standby.
  ReadRoute route(const std::optional<ConsistencyToken>& token);

  // Reports that a read on a standby failed with a connection error, so that it is skipped for
  // down_for; the caller then retries on another route. No-op for standby -1.
  void failed(int standby, const std::string& why) noexcept;

  // What is known of each standby; refresh asks every standby and the primary first.
  std::vector<StandbyStatus> status(bool refresh);

  [[nodiscard]] std::size_t size() const noexcept;

  // The pool of standby i (for readers bound to it). Requires: i < size().
  [[nodiscard]] ConnectionPool& pool(std::size_t i) const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore::storage
