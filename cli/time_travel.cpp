#include "time_travel.hpp"

#include <iostream>
#include <set>

#include "output.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::cli {
namespace {

std::string dash(const std::string& s) {
  return s.empty() ? std::string("-") : s;
}

std::string shown(const std::optional<PreferenceEntry>& entry) {
  return entry ? format_value(entry->value) : std::string("(default)");
}

std::string json_or_null(const std::optional<PreferenceEntry>& entry) {
  return entry ? to_json(entry->value) : std::string("null");
}

}  // namespace

void TimeTravelCommands::add_to(CLI::App& app) {
  m_diff = app.add_subcommand("diff",
                              "Show what changed in a user's preferences between two "
                              "moments, and who changed it");
  m_diff->add_option("user", m_user, "User id")->required();
  m_diff
      ->add_option("--from", m_from, "Start moment: ISO 8601 time, position:N, version:N (or now)")
      ->required();
  m_diff->add_option("--to", m_to, "End moment (default now)")->capture_default_str();
  m_diff->add_flag("--include-unchanged", m_include_unchanged,
                   "Also list keys that changed and came back");
  m_diff->add_flag("--json", m_json, "Print JSON lines");

  m_restore = app.add_subcommand(
      "restore",
      "Put a user's preferences (or every user's) back as they were at a moment, "
      "by appending a PreferencesRestored event");
  m_restore->add_option("user", m_user, "User id (or --all)");
  m_restore->add_flag("--all", m_all, "Restore every user, one at a time, with progress");
  m_restore->add_option("--to", m_to, "The moment: ISO 8601 time, position:N or version:N")
      ->required();
  m_restore->add_option("--keys", m_keys, "Only these keys (comma-separated)")->delimiter(',');
  m_restore->add_flag("--dry-run", m_dry_run, "Print the plan; write nothing");
  m_restore->add_option("--actor", m_flags.actor,
                        "Who restores (default: $PREFSTORE_ACTOR, else $USER)");
  m_restore->add_option("--reason", m_flags.reason, "Why (default: point-in-time restore to ...)");
  m_restore->add_option("--event-id", m_flags.event_id,
                        "UUID for the event (a retry with the same id stores nothing twice)");

  auto* snapshot = app.add_subcommand("snapshot", "Snapshots of users' folded state (a cache)");
  snapshot->require_subcommand(1);
  m_snapshot_create =
      snapshot->add_subcommand("create", "Take a snapshot of a user's current state, or --all");
  m_snapshot_create->add_option("user", m_user, "User id (or --all)");
  m_snapshot_create->add_flag("--all", m_all, "Every user, with progress");
  m_snapshot_list = snapshot->add_subcommand("list", "List snapshots with their checksum state");
  m_snapshot_list->add_option("user", m_user, "Only this user's");
  m_snapshot_list->add_option("--limit", m_limit, "At most this many rows")->capture_default_str();
  m_snapshot_prune = snapshot->add_subcommand(
      "prune", "Delete all but the newest snapshots of each user, and every corrupt one");
  m_snapshot_prune->add_option("--keep", m_keep, "Snapshots to keep per user")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

std::optional<int> TimeTravelCommands::run(bool open_mode) {
  if (m_diff->parsed()) return run_diff();
  if (m_restore->parsed()) return run_restore(open_mode);
  if (m_snapshot_create->parsed()) return run_snapshot_create();
  if (m_snapshot_list->parsed()) return run_snapshot_list();
  if (m_snapshot_prune->parsed()) return run_snapshot_prune();
  return std::nullopt;
}

int TimeTravelCommands::run_diff() {
  const AsOf from = parse_moment("--from", m_from);
  const AsOf to = parse_moment("--to", m_to);
  Store store(store_options(true, Task::read));
  const StateDiff diff = store.diff(m_user, from, to, m_include_unchanged);
  if (m_json) {
    for (const KeyDiff& k : diff.keys) {
      std::cout << "{\"key\":" << json_string(k.key) << ",\"before\":" << json_or_null(k.before)
                << ",\"after\":" << json_or_null(k.after) << ",\"changes\":" << k.changes
                << ",\"last_version\":" << k.last_version << ",\"last_changed_at\":\""
                << format_timestamp(k.last_changed_at) << "\",\"last_event\":\""
                << k.last_event_type << "\",\"actor\":" << json_string(k.last_metadata.actor)
                << ",\"source\":" << json_string(k.last_metadata.source)
                << ",\"reason\":" << json_string(k.last_metadata.reason) << "}\n";
    }
    return kOk;
  }
  std::cout << diff.user << " from " << from.describe() << " (version " << diff.from_version
            << ") to " << to.describe() << " (version " << diff.to_version << ")\n";
  Table table({"KEY", "BEFORE", "AFTER", "CHANGES", "LAST CHANGE AT", "BY", "SOURCE", "REASON"});
  for (const KeyDiff& k : diff.keys) {
    table.add({k.key, shown(k.before), shown(k.after), std::to_string(k.changes),
               format_timestamp(k.last_changed_at), dash(k.last_metadata.actor),
               dash(k.last_metadata.source), dash(k.last_metadata.reason)});
  }
  table.print(std::cout);
  std::cout << diff.keys.size() << (diff.keys.size() == 1 ? " key" : " keys") << " changed\n";
  return kOk;
}

int TimeTravelCommands::run_restore(bool open_mode) {
  if (m_all == !m_user.empty()) {
    throw UsageError("restore: give a user id or --all (not both)");
  }
  const AsOf to = parse_moment("--to", m_to);
  if (to.kind == AsOf::Kind::latest) {
    throw UsageError("restore: --to now restores nothing; give a past moment");
  }
  if (m_all && to.kind == AsOf::Kind::version) {
    throw UsageError("restore --all: version:N is a moment of one user; give a time or position");
  }
  RestoreOptions options;
  if (!m_keys.empty()) options.keys = std::set<std::string>(m_keys.begin(), m_keys.end());
  options.dry_run = m_dry_run;
  WriteFlags flags = m_flags;
  flags.source = "prefstore-cli restore";
  options.metadata = flags.metadata();
  options.event_id = m_flags.event_id;
  Store store(store_options(open_mode, Task::write));
  if (m_all) {
    const auto summary = store.restore_all(to, options, [](const RestoreAllProgress& p) {
      std::cerr << "\rrestore: " << p.users << "/" << p.total << " users, " << p.restored
                << (p.restored == 1 ? " change" : " changes") << ", " << p.failed << " failed"
                << std::flush;
    });
    std::cerr << "\n";
    for (const std::string& failure : summary.failures) std::cerr << "failed: " << failure << "\n";
    std::cout << (m_dry_run ? "dry run: " : "") << summary.users << " users visited, "
              << summary.restored << (m_dry_run ? " would be restored, " : " restored, ")
              << summary.failed << " failed\n";
    return summary.failed == 0 ? kOk : kValidation;
  }
  const auto now = store.state_as_of(m_user, AsOf::latest());  // for the NOW column
  const RestorePlan plan = store.restore(m_user, to, options);
  std::cout << "restore of " << plan.user << " to " << to.describe() << ": the state of version "
            << plan.target_version << ", made against version " << plan.current_version << "\n";
  if (plan.changes.empty()) {
    std::cout << "nothing to restore: the preferences are as they were then\n";
    return kOk;
  }
  Table table({"KEY", "NOW", "RESTORED TO"});
  for (const RestoredPreference& change : plan.changes) {
    const auto it = now.state.find(change.key);
    table.add({change.key, it == now.state.end() ? "(default)" : format_value(it->second.value),
               change.value ? format_value(*change.value) : "(default)"});
  }
  table.print(std::cout);
  if (!plan.appended) {
    std::cout << "dry run: nothing written\n";
    return kOk;
  }
  const auto& r = *plan.appended;
  std::cout << "restored" << (r.duplicate ? " (already stored: this retry wrote nothing)" : "")
            << ": PreferencesRestored at version " << r.stream_version << ", position "
            << r.global_position << ", at " << format_timestamp(r.recorded_at) << "\n";
  return kOk;
}

int TimeTravelCommands::run_snapshot_create() {
  if (m_all == !m_user.empty()) {
    throw UsageError("snapshot create: give a user id or --all (not both)");
  }
  Store store(store_options(true, Task::write));
  if (m_all) {
    const auto run = store.snapshot_all([](const storage::SnapshotRunProgress& p) {
      std::cerr << "\rsnapshot: " << p.streams << "/" << p.total << " users, " << p.written
                << " written" << std::flush;
    });
    std::cerr << "\n";
    std::cout << run.written << " snapshots written for " << run.streams << " users\n";
    return kOk;
  }
  const bool written = store.snapshot(m_user);
  const auto state = store.state_as_of(m_user, AsOf::latest());
  if (state.version == 0) {
    std::cout << m_user << " has no events: no snapshot\n";
  } else if (written) {
    std::cout << "snapshot of " << m_user << " at version " << state.version << " written ("
              << state.state.size() << " preferences)\n";
  } else {
    std::cout << "a snapshot of " << m_user << " at version " << state.version
              << " exists already\n";
  }
  return kOk;
}

int TimeTravelCommands::run_snapshot_list() {
  Store store(store_options(true, Task::read));
  std::optional<std::string> only;
  if (!m_user.empty()) only = m_user;
  const auto rows = storage::list_snapshots(store.pool(), only, m_limit);
  Table table(
      {"USER", "VERSION", "POSITION", "LAST EVENT AT", "BYTES", "FORMAT", "INTACT", "CREATED AT"});
  std::int64_t bad = 0;
  for (const auto& s : rows) {
    if (!s.intact) ++bad;
    table.add({s.stream_id, std::to_string(s.stream_version), std::to_string(s.last_position),
               format_timestamp(s.last_recorded_at), std::to_string(s.size_bytes),
               std::to_string(s.format_version), s.intact ? "yes" : "NO (ignored by reads)",
               format_timestamp(s.created_at)});
  }
  table.print(std::cout);
  std::cout << rows.size() << " snapshots"
            << (bad > 0 ? ", " + std::to_string(bad) + " corrupt" : "") << "\n";
  return kOk;
}

int TimeTravelCommands::run_snapshot_prune() {
  Store store(store_options(true, Task::write));
  const auto deleted = storage::prune_snapshots(store.pool(), m_keep);
  std::cout << deleted << " snapshots deleted (kept the newest " << m_keep << " of each user)\n";
  return kOk;
}

}  // namespace prefstore::cli
