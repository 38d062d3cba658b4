// The backup file format: a streaming, chunked, checksummed file of event and snapshot rows, with
// a header (format version, source, position range, counts) and a trailer (docs/backup-format.md).
//
// No database code: BackupWriter turns rows into a file, BackupReader turns a file back into rows,
// verify_backup checks a file. Memory is bounded by one chunk on both sides.
// Thread-safety: a writer or reader is used by one thread at a time; distinct objects are
// independent. verify_backup may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "prefstore/timestamp.hpp"

namespace prefstore::storage {

// The format version this build writes, and the only one it reads. Persisted: a new layout gets a
// new number, and readers keep reading the old ones.
inline constexpr std::uint32_t kBackupFormatVersion = 1;

// Most records one chunk may hold (the writer's chunk_records may not exceed it).
inline constexpr std::size_t kBackupMaxChunkRecords = 1'000'000;

// Most payload bytes one chunk may hold (2 GiB: a 1 GB bytea snapshot fits). A reader refuses a
// larger length rather than allocating it.
inline constexpr std::uint64_t kBackupMaxChunkPayload = std::uint64_t{1} << 31;

// What a backup holds and where it came from: the first thing in the file, checked on its own.
struct BackupHeader {
  std::uint32_t format_version = kBackupFormatVersion;  // set by the writer
  std::string backup_id;                                // uuid of this backup
  std::string source;               // where it was taken (redacted connection string / db name)
  std::string schema_version;       // newest migration applied in the source, e.g. "0003"
  Timestamp created_at{};           // when the backup was taken
  std::int64_t since_position = 0;  // 0: full backup; else events with global_position > since
  std::int64_t until_position = 0;  // every event with position in (since, until] is in the file
  std::int64_t event_count = 0;     // records the writer will write (checked by the reader)
  std::int64_t snapshot_count = 0;
  std::int64_t stream_count = 0;  // informational
  friend bool operator==(const BackupHeader&, const BackupHeader&) = default;
};

// One row of prefstore.events, as text.
struct BackupEvent {
  std::int64_t global_position = 0;
  std::string stream_id;
  std::int64_t stream_version = 0;
  std::string event_id;
  std::string event_type;
  std::int32_t schema_version = 0;
  std::string payload;           // jsonb text
  std::string metadata;          // jsonb text
  std::int64_t recorded_at = 0;  // unix microseconds
  friend bool operator==(const BackupEvent&, const BackupEvent&) = default;
};

// One row of prefstore.snapshots.
struct BackupSnapshot {
  std::string stream_id;
  std::int64_t stream_version = 0;
  std::int32_t format_version = 0;
  std::string state;     // raw bytes
  std::string checksum;  // raw 32 bytes
  std::int64_t last_position = 0;
  std::int64_t last_recorded_at = 0;  // unix micros
  std::int64_t created_at = 0;        // unix micros
  friend bool operator==(const BackupSnapshot&, const BackupSnapshot&) = default;
};

// The totals at the end of a backup, as the writer wrote them and the reader found them.
struct BackupTrailer {
  std::uint64_t chunk_count = 0;
  std::int64_t event_count = 0;
  std::int64_t snapshot_count = 0;
  friend bool operator==(const BackupTrailer&, const BackupTrailer&) = default;
};

// How a writer cuts records into chunks. A chunk is closed by whichever limit comes first, so the
// writer's (and every reader's) memory stays below about one chunk.
struct BackupWriterOptions {
  // Records per chunk (1 to kBackupMaxChunkRecords). Bigger chunks: fewer frames and checksums;
  // smaller: less memory, and a damaged chunk loses fewer records.
  std::size_t chunk_records = 1000;
  // A chunk is also closed once its payload reaches this many bytes (1 to kBackupMaxChunkPayload),
  // so large rows do not make a chunk of chunk_records huge. One record alone may exceed it.
  std::size_t chunk_bytes = std::size_t{16} << 20;
};

// Writes a backup file: FILE.partial first, renamed to FILE by finish() after an fsync of the file
// and its directory, so FILE is either absent or complete (an existing FILE is replaced then).
// Records of one kind are buffered up to one chunk, then written with their checksum. Events come
// first, then snapshots. A destructor without a successful finish() removes FILE.partial.
// The partial file is created with mode 0600 (less the umask): backups hold user data.
// A moved-from writer may only be destroyed or assigned to.
class BackupWriter {
 public:
  // Creates (or truncates) FILE.partial and writes the header.
  // Throws UsageError for invalid options or header (negative counts or positions, since above
  // until, a header above 1 MiB); UnavailableError when the file cannot be created or written
  // (with the path and the system's reason).
  BackupWriter(std::filesystem::path path, BackupHeader header, BackupWriterOptions options = {});
  // Removes FILE.partial unless finish() succeeded. Never throws.
  ~BackupWriter();
  BackupWriter(BackupWriter&&) noexcept;
  BackupWriter& operator=(BackupWriter&&) noexcept;
  BackupWriter(const BackupWriter&) = delete;
  BackupWriter& operator=(const BackupWriter&) = delete;

  // Adds one event; writes a chunk when one is full.
  // Throws UsageError after an add(snapshot), when the header's event_count would be exceeded,
  // when global_position is outside (since_position, until_position] of the header, after
  // finish() or a failed write; UnavailableError when a write fails (the writer is then unusable).
  void add(const BackupEvent& event);

  // Adds one snapshot; writes a chunk when one is full. Throws as add(event), for the header's
  // snapshot_count.
  void add(const BackupSnapshot& snapshot);

  // Writes the last chunk and the trailer, fsyncs FILE.partial, renames it to FILE and fsyncs the
  // directory. Returns the totals written.
  // Throws UsageError when the records added differ from the header's counts (nothing is written
  // then, and more records may still be added) or when called twice; UnavailableError when a write,
  // fsync or the rename fails (the partial file is removed by the destructor), or when only the
  // directory's fsync fails (FILE is then in place, but may not survive a crash).
  BackupTrailer finish();

  // Bytes handed to the operating system so far (header, chunks and, after finish(), trailer).
  [[nodiscard]] std::int64_t bytes_written() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// Reads a backup chunk by chunk: a chunk's checksum is checked before any of its records is handed
// out, so a caller never sees a record of a bad chunk. The file's tail is checked first: a file
// that does not end with its trailer (a truncated copy, garbage appended) hands out no record.
// A moved-from reader may only be destroyed or assigned to.
class BackupReader {
 public:
  // Opens the file, reads the header and checks its checksum and version.
  // Throws UnavailableError when the file does not exist or cannot be read (with the path and the
  // system's reason); CorruptDataError when it is not a prefstore backup, the header is truncated
  // or damaged, or its format version is not kBackupFormatVersion.
  explicit BackupReader(std::filesystem::path path);
  ~BackupReader();
  BackupReader(BackupReader&&) noexcept;
  BackupReader& operator=(BackupReader&&) noexcept;
  BackupReader(const BackupReader&) = delete;
  BackupReader& operator=(const BackupReader&) = delete;

  // The header, as checked by the constructor.
  [[nodiscard]] const BackupHeader& header() const noexcept;

  // Calls on_event / on_snapshot for every record in file order (an empty function skips those
  // records); checks each chunk, the sequence numbers, the counts and the trailer. Returns the
  // trailer. May be called again: it reads from the first chunk each time.
  // Throws CorruptDataError naming the file, the chunk number (0-based) and its byte offset, and
  // what is wrong ("checksum mismatch", "truncated: file ends inside chunk 3", "missing trailer",
  // "chunk 4 out of sequence", "counts differ from header"...); records of earlier chunks may have
  // been handed out then, so treat the whole read as one unit (e.g. one transaction).
  // UnavailableError when reading fails. A callback returning normally continues; exceptions
  // from callbacks propagate, and the read stops there.
  BackupTrailer read(const std::function<void(const BackupEvent&)>& on_event,
                     const std::function<void(const BackupSnapshot&)>& on_snapshot);

  // What the last read() found good so far: chunks whose checksum and records were checked, and
  // the records in them; after a read() that threw, the part before the problem. Zero before any
  // read().
  [[nodiscard]] BackupTrailer checked() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// The outcome of verify_backup: whether the file is sound, and if not, the first problem.
struct BackupVerification {
  bool ok = false;
  std::optional<BackupHeader> header;      // when the header itself was readable
  std::uint64_t chunks_checked = 0;        // chunks whose checksum and records were good
  std::int64_t events = 0, snapshots = 0;  // records in those chunks
  std::optional<std::uint64_t> bad_chunk;  // the first bad chunk, when a chunk is to blame
  // What is wrong, without the path (e.g. "chunk 3 at byte offset 4096: checksum mismatch");
  // empty when ok.
  std::string problem;
};

// Reads the whole file, checking every chunk, the sequence, the counts and the trailer, without
// keeping records (memory: one chunk). Never throws for a bad or missing file (ok = false, with
// the problem); only for programming errors or resource exhaustion.
[[nodiscard]] BackupVerification verify_backup(const std::filesystem::path& path);

}  // namespace prefstore::storage
