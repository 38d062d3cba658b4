#include "prefstore/store_status.hpp"

#include <cmath>

namespace prefstore {
namespace {

// 42 s, 12 min, 3 h, 1.5 h.
std::string seconds_text(double s) {
  if (s < 120) return std::to_string(static_cast<long long>(std::lround(s))) + " s";
  if (s < 3600) return std::to_string(static_cast<long long>(std::lround(s / 60))) + " min";
  const long long tenths = std::llround(s / 360);
  return std::to_string(tenths / 10) + (tenths % 10 ? "." + std::to_string(tenths % 10) : "") +
         " h";
}

}  // namespace

std::string StoreStatus::verdict() const {
  if (problems.empty()) return "healthy";
  std::string out = "unhealthy: ";
  for (std::size_t i = 0; i < problems.size(); ++i) {
    out += (i ? "; " : "") + problems[i];
  }
  return out;
}

void judge(StoreStatus& s, const HealthThresholds& t) {
  s.problems.clear();
  if (!s.reachable) {
    s.problems.push_back("database unreachable: " + s.error);
    return;
  }
  if (!s.database_status) {
    s.problems.push_back("schema unreadable: " + s.error);
    return;
  }
  if (s.schema_version > s.build_schema_version) {
    s.problems.push_back("schema version " + std::to_string(s.schema_version) +
                         " is newer than this build's " + std::to_string(s.build_schema_version) +
                         " (upgrade prefstore)");
  } else if (s.pending_migrations > 0) {
    s.problems.push_back(std::to_string(s.pending_migrations) +
                         " migration(s) pending (run `prefstore migrate`)");
  }
  for (const ProjectionStatus& p : s.projections) {
    if (p.never_run && !t.require_projections) continue;
    if (p.state == "failed") {
      s.problems.push_back("projection " + p.name + " failed at position " +
                           std::to_string(p.position) + ": " + p.last_error.value_or("?"));
      continue;
    }
    if (t.max_lag_events >= 0 && p.lag_events > t.max_lag_events) {
      s.problems.push_back("projection " + p.name + " is " + std::to_string(p.lag_events) +
                           (p.lag_events == 1 ? " event" : " events") + " behind (limit " +
                           std::to_string(t.max_lag_events) + ")");
    } else if (t.max_lag_seconds > 0 && p.lag_seconds > t.max_lag_seconds) {
      s.problems.push_back("projection " + p.name + " is " + seconds_text(p.lag_seconds) +
                           " behind (limit " + seconds_text(t.max_lag_seconds) + ")");
    }
  }
  if (t.max_backup_age) {
    const auto& b = s.database_status->newest_backup;
    const double limit = static_cast<double>(t.max_backup_age->count());
    if (!b) {
      s.problems.push_back("no backup has been taken from this database");
    } else {
      const double age =
          static_cast<double>((s.database_status->server_time - b->recorded_at).count()) / 1e6;
      if (age > limit) {
        s.problems.push_back("newest backup is " + seconds_text(age) + " old (limit " +
                             seconds_text(limit) + ")");
      }
    }
  }
  if (s.pool.timeouts > 0 && s.pool.waiting > 0) {
    s.problems.push_back("connection pool exhausted: " + std::to_string(s.pool.waiting) +
                         " callers waiting, " + std::to_string(s.pool.timeouts) + " timed out");
  }
}

}  // namespace prefstore
