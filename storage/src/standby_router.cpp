#include "prefstore/storage/standby_router.hpp"

#include <mutex>
#include <thread>

#include "error_translation.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/logging.hpp"
#include "prefstore/storage/database_url.hpp"

namespace prefstore::storage {

using Clock = std::chrono::steady_clock;

namespace {

// The standby's side of a check, in one statement.
constexpr const char* kStandbySql =
    "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text, "
    "coalesce(extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8, -1)";

struct Replay {
  bool in_recovery = false;
  std::optional<ConsistencyToken> replayed;
  double replay_age_seconds = -1;  // now minus the last replayed transaction's commit time
};

Replay ask_standby(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_standby_replay", kStandbySql);
    Replay out;
    out.in_recovery = r.at(0).at(0).as<bool>();
    if (!r[0][1].is_null()) out.replayed = parse_consistency_token(r[0][1].c_str());
    out.replay_age_seconds = r[0][2].as<double>();
    return out;
  } catch (...) {
    detail::rethrow_translated("asking standby for its replay position");
  }
}

std::optional<ConsistencyToken> ask_primary(ConnectionPool& pool) {
  auto handle = pool.acquire();
  try {
    pqxx::nontransaction tx(detail::native(handle));
    const auto r = detail::exec_statement(tx, handle, "prefstore_primary_wal_position",
                                          "SELECT pg_catalog.pg_current_wal_lsn()::text");
    return parse_consistency_token(r.at(0).at(0).c_str());
  } catch (...) {
    detail::rethrow_translated("asking the primary for its WAL position");
  }
}

}  // namespace

struct StandbyRouter::Impl {
  struct Standby {
    std::string redacted;
    std::unique_ptr<ConnectionPool> pool;
    // Guarded by Impl::mutex:
    StandbyStatus status;
    Clock::time_point checked{};     // last check (refresh) started
    Clock::time_point down_until{};  // skipped until then
  };

  ConnectionPool& primary;
  StandbyOptions options;
  std::vector<Standby> standbys;
  std::mutex mutex;
  std::size_t next = 0;  // round robin

  // Asks standby i (and the primary, for the lag) and records the answer. Never throws.
  void check(std::size_t i, const std::optional<ConsistencyToken>& primary_position) {
    Standby& s = standbys[i];
    try {
      const Replay replay = ask_standby(*s.pool);
      std::lock_guard lock(mutex);
      s.status.in_recovery = replay.in_recovery;
      s.status.replayed = replay.replayed;
      if (!replay.in_recovery) {
        s.status.problem = "not in recovery (promoted, or not a standby): not used for reads";
        s.down_until = Clock::now() + options.down_for;
        return;
      }
      s.status.problem.clear();
      if (primary_position && replay.replayed) {
        s.status.lag_bytes =
            primary_position->lsn > replay.replayed->lsn
                ? static_cast<std::int64_t>(primary_position->lsn - replay.replayed->lsn)
                : 0;
        s.status.lag_seconds =
            s.status.lag_bytes == 0 ? 0.0 : std::max(0.0, replay.replay_age_seconds);
      }
    } catch (const Error& e) {
      failed(i, e.what());
    }
  }

  void failed(std::size_t i, const std::string& why) noexcept {
    Standby& s = standbys[i];
    {
      std::lock_guard lock(mutex);
      s.status.in_recovery = false;
      s.status.problem = why;
      s.down_until = Clock::now() + options.down_for;
    }
    log(LogLevel::warn, "standby_skipped",
        {{"standby", s.redacted},
         {"for_ms", std::to_string(options.down_for.count())},
         {"reason", why}});
  }

  std::optional<ConsistencyToken> primary_position() noexcept {
    try {
      return ask_primary(primary);
    } catch (const Error&) {
      return std::nullopt;  // the lag stays unknown; reads still route on what is known
    }
  }

  // Refreshes the standbys whose knowledge is older than refresh_interval (at most one thread
  // refreshes a standby at a time).
  void refresh_stale() {
    std::vector<std::size_t> due;
    {
      std::lock_guard lock(mutex);
      const auto now = Clock::now();
      for (std::size_t i = 0; i < standbys.size(); ++i) {
        if (now - standbys[i].checked >= options.refresh_interval &&
            now >= standbys[i].down_until) {
          standbys[i].checked = now;
          due.push_back(i);
        }
      }
    }
    if (due.empty()) return;
    const auto position = primary_position();
    for (const std::size_t i : due) check(i, position);
  }

  bool usable(const Standby& s, Clock::time_point now) const {
    return now >= s.down_until && s.status.in_recovery && s.status.lag_seconds >= 0 &&
           s.status.lag_seconds * 1000.0 <= static_cast<double>(options.max_lag.count());
  }
};

StandbyRouter::StandbyRouter(ConnectionPool& primary, StandbyOptions options)
    : m_impl(new Impl{primary, std::move(options), {}, {}, 0}) {
  Impl& im = *m_impl;
  for (const std::string& url : im.options.urls) {
    PoolOptions pool = im.options.pool;
    pool.conninfo = url;
    if (pool.application_name == "prefstore") pool.application_name = "prefstore-reader";
    Impl::Standby s;
    s.redacted = redact_conninfo(url);
    s.pool = std::make_unique<ConnectionPool>(pool);
    s.status.url = s.redacted;
    s.status.problem = "not checked yet";
    im.standbys.push_back(std::move(s));
  }
}

StandbyRouter::~StandbyRouter() = default;

std::size_t StandbyRouter::size() const noexcept {
  return m_impl->standbys.size();
}

ConnectionPool& StandbyRouter::pool(std::size_t i) const noexcept {
  return *m_impl->standbys[i].pool;
}

ReadRoute StandbyRouter::route(const std::optional<ConsistencyToken>& token) {
  Impl& im = *m_impl;
  if (im.standbys.empty()) return ReadRoute{&im.primary, -1, ""};
  im.refresh_stale();
  const std::size_t n = im.standbys.size();
  std::size_t first = 0;
  std::optional<std::size_t> candidate;  // up and in recovery, for a token read
  {
    std::lock_guard lock(im.mutex);
    first = im.next++ % n;
    const auto now = Clock::now();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (first + k) % n;
      Impl::Standby& s = im.standbys[i];
      if (!token) {
        if (im.usable(s, now)) {
          ++s.status.reads;
          return ReadRoute{s.pool.get(), static_cast<int>(i), ""};
        }
        continue;
      }
      if (now < s.down_until || !s.status.in_recovery) continue;
      if (s.status.replayed && *s.status.replayed >= *token) {
        ++s.status.reads;
        return ReadRoute{s.pool.get(), static_cast<int>(i), ""};
      }
      if (!candidate) candidate = i;
    }
  }
  if (!token || !candidate) return ReadRoute{&im.primary, -1, "no standby usable"};
  // Wait for the candidate to replay the token's position.
  Impl::Standby& s = im.standbys[*candidate];
  const auto deadline = Clock::now() + im.options.token_wait;
  for (;;) {
    Replay replay;
    try {
      replay = ask_standby(*s.pool);
    } catch (const Error& e) {
      im.failed(*candidate, e.what());
      return ReadRoute{&im.primary, -1, "no standby usable"};
    }
    if (replay.in_recovery && replay.replayed && *replay.replayed >= *token) {
      std::lock_guard lock(im.mutex);
      if (!s.status.replayed || *s.status.replayed < *replay.replayed) {
        s.status.replayed = replay.replayed;
      }
      ++s.status.reads;
      return ReadRoute{s.pool.get(), static_cast<int>(*candidate), ""};
    }
    if (!replay.in_recovery || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return ReadRoute{&im.primary, -1, "token not replayed within token_wait"};
}

void StandbyRouter::failed(int standby, const std::string& why) noexcept {
  if (standby < 0 || static_cast<std::size_t>(standby) >= m_impl->standbys.size()) return;
  m_impl->failed(static_cast<std::size_t>(standby), why);
}

std::vector<StandbyStatus> StandbyRouter::status(bool refresh) {
  Impl& im = *m_impl;
  if (refresh && !im.standbys.empty()) {
    const auto position = im.primary_position();
    for (std::size_t i = 0; i < im.standbys.size(); ++i) {
      {
        std::lock_guard lock(im.mutex);
        im.standbys[i].checked = Clock::now();
        im.standbys[i].down_until = {};
      }
      im.check(i, position);
    }
  }
  std::lock_guard lock(im.mutex);
  std::vector<StandbyStatus> out;
  const auto now = Clock::now();
  for (const auto& s : im.standbys) {
    StandbyStatus st = s.status;
    st.usable = im.usable(s, now);
    if (!st.usable && st.problem.empty() && st.lag_seconds >= 0) {
      st.problem = "replay lag " + std::to_string(st.lag_seconds) + " s is over max_lag";
    }
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace prefstore::storage
