#include "backup.hpp"

#include <iostream>

#include "prefstore/projections/registry.hpp"
#include "prefstore/projections/runner.hpp"
#include "prefstore/storage/backup_file.hpp"
#include "prefstore/storage/distribution.hpp"
#include "prefstore/timestamp.hpp"

namespace prefstore::cli {
namespace {

void print_header(const storage::BackupHeader& h) {
  std::cout << "backup " << h.backup_id << " (format " << h.format_version << ", schema "
            << h.schema_version << ")\n"
            << "  taken at  " << format_timestamp(h.created_at) << " from " << h.source << "\n"
            << "  positions (" << h.since_position << ", " << h.until_position << "]"
            << (h.since_position == 0 ? " (full)" : " (incremental)") << "\n"
            << "  " << h.event_count << " events of " << h.stream_count << " streams, "
            << h.snapshot_count << " snapshots\n";
}

}  // namespace

void BackupCommands::add_to(CLI::App& app) {
  auto* backup = app.add_subcommand("backup", "Logical backups: create, verify, restore");
  backup->require_subcommand(1);
  m_create = backup->add_subcommand(
      "create", "Write a consistent backup of the log and the snapshots while writes go on");
  m_create->add_option("file", m_file, "Backup file to write (replaced only when complete)")
      ->required();
  m_create
      ->add_option("--since", m_since,
                   "Incremental: only events after this position (the until position of "
                   "the previous backup)")
      ->capture_default_str();
  m_create->add_option("--chunk-records", m_chunk_records, "Records per checksummed chunk")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  m_create->add_flag("--quiet", m_quiet, "No progress on stderr");

  m_verify = backup->add_subcommand(
      "verify", "Check a backup file: header, every chunk's checksum, order, counts, trailer");
  m_verify->add_option("file", m_file, "Backup file")->required()->check(CLI::ExistingFile);

  m_restore = backup->add_subcommand(
      "restore",
      "Restore a backup file into an empty database (or an incremental one on top of "
      "its chain), then rebuild the read models");
  m_restore->add_option("file", m_file, "Backup file")->required()->check(CLI::ExistingFile);
  m_restore->add_option("--until", m_until,
                        "Restore only events recorded at or before this ISO 8601 time");
  m_restore->add_option("--position", m_position, "Restore only events up to this global position");
  m_restore->add_flag("--force", m_force,
                      "Restore a full backup into a database that already holds events");
  m_restore->add_flag("--quiet", m_quiet, "No progress on stderr");
}

std::optional<int> BackupCommands::run() {
  if (m_create->parsed()) return run_create();
  if (m_verify->parsed()) return run_verify();
  if (m_restore->parsed()) return run_restore();
  return std::nullopt;
}

int BackupCommands::run_create() {
  Store store(store_options(true, Task::administer));
  storage::BackupOptions options;
  options.since_position = m_since;
  options.chunk_records = m_chunk_records;
  if (!m_quiet) {
    options.progress = [](const storage::BackupProgress& p) {
      std::cerr << "\rbackup: " << p.events << "/" << p.total_events << " events, " << p.snapshots
                << "/" << p.total_snapshots << " snapshots" << std::flush;
    };
  }
  const auto summary = store.backup(m_file, options);
  if (!m_quiet) std::cerr << "\n";
  print_header(summary.header);
  std::cout << "wrote " << m_file << ": " << summary.bytes << " bytes in "
            << summary.trailer.chunk_count << " chunks\n";
  if (prefstore::storage::is_distributed(store.pool())) {
    std::cout << "distributed store: incremental backups are not supported; take full ones\n";
  } else {
    std::cout << "next incremental backup: prefstore backup create FILE --since "
              << summary.header.until_position << "\n";
  }
  return kOk;
}

int BackupCommands::run_verify() {
  const auto result = storage::verify_backup(m_file);
  if (result.header) print_header(*result.header);
  if (!result.ok) {
    std::cout << "BAD: " << result.problem << "\n";
    if (result.bad_chunk) std::cout << "first bad chunk: " << *result.bad_chunk << "\n";
    return kCorrupt;
  }
  std::cout << "OK: " << result.chunks_checked << " chunks, " << result.events << " events, "
            << result.snapshots << " snapshots checked\n";
  return kOk;
}

int BackupCommands::run_restore() {
  storage::BackupRestoreOptions options;
  if (!m_until.empty()) {
    const auto t = parse_timestamp(m_until);
    if (!t) throw UsageError("--until: \"" + m_until + "\" is not an ISO 8601 time");
    options.until_time = t;
  }
  options.until_position = m_position;
  options.allow_non_empty = m_force;
  if (!m_quiet) {
    options.progress = [](const storage::BackupProgress& p) {
      std::cerr << "\rrestore: " << p.events << "/" << p.total_events << " events, " << p.snapshots
                << "/" << p.total_snapshots << " snapshots" << std::flush;
    };
  }
  Store store(store_options(true, Task::administer));
  const auto summary = store.restore_backup(m_file, options);
  if (!m_quiet) std::cerr << "\n";
  print_header(summary.header);
  std::cout << "restored " << summary.events << " events and " << summary.snapshots << " snapshots";
  if (summary.skipped_events > 0) {
    std::cout << " (" << summary.skipped_events << " later events of the file left out)";
  }
  std::cout << "; the database is complete up to position " << summary.until_position << "\n";
  // The asynchronous read models were emptied with their checkpoints: fill them again now.
  projections::ProjectionRunner runner(store.pool(), projections::default_projections(), {});
  const auto applied = runner.catch_up();
  std::cout << "projections rebuilt: " << applied << " events applied\n";
  return kOk;
}

}  // namespace prefstore::cli
