#include "retention.hpp"

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "prefstore/storage/retention.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::cli {
namespace {

void print_stream(const storage::CompactedStream& s, bool dry_run) {
  if (!s.compacted) {
    std::cout << s.stream_id << ": skipped: " << s.skipped_reason << "\n";
    return;
  }
  std::cout << s.stream_id << ": " << (dry_run ? "would compact" : "compacted") << " versions "
            << s.first_version << "-" << s.up_to_version << " (" << s.events
            << " events, the last recorded " << format_timestamp(s.up_to_recorded_at)
            << ") into a baseline of " << s.preferences
            << (s.preferences == 1 ? " preference" : " preferences") << ", chain head "
            << s.chain_head;
  if (!dry_run) std::cout << "; recorded at position " << s.audit_position << " of $audit";
  std::cout << "\n";
}

}  // namespace

void RetentionCommand::add_to(CLI::App& app) {
  m_command = app.add_subcommand(
      "compact",
      "Retention (opt-in): compact each user's events recorded before a cut-off into one "
      "baseline event holding their preferences then, and record who, when, why, how many "
      "events and the chain head in the stream $audit. Reads as of a moment before the "
      "baseline are refused afterwards. Runs as prefstore_owner (--dry-run: prefstore_reader)");
  auto* older = m_command->add_option("--older-than", m_older_than_days,
                                      "Compact events older than this many days");
  older->check(CLI::NonNegativeNumber);
  auto* before = m_command->add_option(
      "--before", m_before, "Compact events recorded before this ISO 8601 time (UTC unless given)");
  older->excludes(before);
  m_command->add_option("--user", m_user, "Only this user (default: every user)");
  m_command->add_option("--reason", m_reason, "Why (recorded with every compaction)")->required();
  m_command->add_option("--actor", m_actor, "Who runs it (default: $PREFSTORE_ACTOR, else $USER)");
  m_command->add_flag("--dry-run", m_dry_run,
                      "Show what would be compacted and what would be skipped; write nothing");
}

std::optional<int> RetentionCommand::run() {
  if (m_command == nullptr || !m_command->parsed()) return std::nullopt;
  storage::CompactOptions options;
  if (m_older_than_days) {
    options.policy.older_than = std::chrono::days(*m_older_than_days);
  } else if (!m_before.empty()) {
    const auto before = parse_timestamp(m_before);
    if (!before) {
      throw UsageError("--before: \"" + m_before +
                       "\" is not an ISO 8601 time (2026-11-30T08:00:00Z, or a date)");
    }
    options.policy.before = *before;
  } else {
    throw UsageError("compact needs a cut-off: --older-than DAYS or --before TIME");
  }
  if (!m_user.empty()) options.user = m_user;
  options.reason = m_reason;
  options.actor = m_actor;
  if (options.actor.empty()) {
    if (const char* a = std::getenv("PREFSTORE_ACTOR")) {
      options.actor = a;
    } else if (const char* u = std::getenv("USER")) {
      options.actor = u;
    }
  }
  options.dry_run = m_dry_run;
  options.on_stream = [this](const storage::CompactedStream& s) { print_stream(s, m_dry_run); };
  Store store(store_options(true, m_dry_run ? Task::read : Task::administer));
  const storage::CompactReport report = store.compact(options);
  std::cout << (report.dry_run ? "would compact " : "compacted ") << report.streams_compacted
            << " of " << report.streams_examined << " user streams examined ("
            << report.events_removed << " events recorded before "
            << format_timestamp(report.cutoff) << (report.dry_run ? " would go" : " removed")
            << "), " << report.streams_skipped << " skipped"
            << (report.dry_run ? "; nothing was written" : "") << "\n";
  return report.streams_skipped == 0 ? kOk : kConflict;
}

}  // namespace prefstore::cli
