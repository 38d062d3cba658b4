// The prefstore tool's observability commands: `status` (the store's state and a health
// verdict, usable as a health check) and `metrics` (Prometheus text format). Both read only
// (prefstore_reader) and never start the local server: a health check must not start what it
// checks.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "prefstore/store_status.hpp"

namespace prefstore::cli {

// `prefstore status [--json] [--max-lag-events N] [--max-lag-seconds S] [--max-backup-age H]
// [--require-projections]` and `prefstore metrics`.
class ObserveCommands {
 public:
  // Registers both commands on app. Requires: this object outlives parsing and run().
  void add_to(CLI::App& app);

  // Runs the command that was parsed, else returns std::nullopt. status: kOk when healthy,
  // kUnavailable when the database cannot be reached, kUnhealthy for any other problem.
  // metrics: kOk, also when the database is down (prefstore_up 0, as exporters do).
  std::optional<int> run();

 private:
  CLI::App* m_status = nullptr;
  CLI::App* m_metrics = nullptr;
  bool m_json = false;
  HealthThresholds m_thresholds;
  double m_max_backup_age_hours = 0;
};

}  // namespace prefstore::cli
