// The backup file codec: framing, checksums and cereal portable binary records. The byte layout is
// documented in docs/backup-format.md; every number outside cereal's payloads is little-endian.
#include "prefstore/storage/backup_file.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/string.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <istream>
#include <ostream>
#include <streambuf>
#include <string_view>
#include <utility>
#include <vector>

#include "prefstore/errors.hpp"

namespace prefstore::storage {
namespace {

// Persisted: the layout of format version 1. Never change these; a new layout is a new version.
constexpr std::string_view kFileMagic = "PREFSTORE-BACKUP";
constexpr std::string_view kChunkMagic = "CHNK";
constexpr std::string_view kTrailerMagic = "TRLR";
constexpr std::uint8_t kEventKind = 1;
constexpr std::uint8_t kSnapshotKind = 2;
constexpr std::size_t kDigestSize = 32;
constexpr std::size_t kHeaderPrefixSize = 24;  // magic (16), format version (4), blob length (4)
constexpr std::uint32_t kMaxHeaderBlob = 1 << 20;
constexpr std::size_t kFrameSize = 36;         // see docs/backup-format.md
constexpr std::size_t kFrameCheckedSize = 28;  // the frame bytes its frame check covers
constexpr std::size_t kFrameCheckSize = 8;
constexpr std::size_t kTrailerFieldsSize = 4 + 8 + 8 + 8 + kDigestSize;
constexpr std::size_t kTrailerSize = kTrailerFieldsSize + kDigestSize;
constexpr char kLittleEndianFlag = 1;  // cereal's first payload byte, for little-endian data

static_assert(kFileMagic.size() == 16);

using Digest = std::array<unsigned char, kDigestSize>;
using OutArchive = cereal::PortableBinaryOutputArchive;
using InArchive = cereal::PortableBinaryInputArchive;

std::string_view as_bytes(const Digest& digest) {
  return {reinterpret_cast<const char*>(digest.data()), digest.size()};
}

// An incremental SHA-256 through OpenSSL's EVP interface (raw 32-byte digests).
class Sha256 {
 public:
  Sha256() : m_ctx(EVP_MD_CTX_new()) {
    if (!m_ctx || EVP_DigestInit_ex(m_ctx.get(), EVP_sha256(), nullptr) != 1) {
      throw Error("OpenSSL failed to start a SHA-256 digest");
    }
  }
  Sha256& update(std::string_view bytes) {
    if (EVP_DigestUpdate(m_ctx.get(), bytes.data(), bytes.size()) != 1) {
      throw Error("OpenSSL failed to compute a SHA-256 digest");
    }
    return *this;
  }
  Sha256& update(const Digest& digest) { return update(as_bytes(digest)); }
  // The digest of everything given so far. Requires: called once.
  Digest finish() {
    Digest out{};
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(m_ctx.get(), out.data(), &length) != 1 || length != out.size()) {
      throw Error("OpenSSL failed to compute a SHA-256 digest");
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> m_ctx;
};

void put_u32(std::string& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

void put_u64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

std::uint32_t get_u32(const char* bytes) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

std::uint64_t get_u64(const char* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out += digits[static_cast<unsigned char>(c) >> 4];
    out += digits[static_cast<unsigned char>(c) & 0xF];
  }
  return out;
}

// An output streambuf appending to a string, so cereal writes straight into a chunk's payload.
class StringSink : public std::streambuf {
 public:
  explicit StringSink(std::string& out) : m_out(out) {}

 protected:
  std::streamsize xsputn(const char* bytes, std::streamsize count) override {
    m_out.append(bytes, static_cast<std::size_t>(count));
    return count;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) m_out += traits_type::to_char_type(c);
    return traits_type::not_eof(c);
  }

 private:
  std::string& m_out;
};

// An input streambuf over bytes in memory (no copy), which knows how many bytes are left.
class BytesSource : public std::streambuf {
 public:
  explicit BytesSource(std::string_view bytes) {
    char* begin = const_cast<char*>(bytes.data());  // read only: streambuf's API wants char*
    setg(begin, begin, begin + bytes.size());
  }
  [[nodiscard]] std::uint64_t remaining() const {
    return static_cast<std::uint64_t>(egptr() - gptr());
  }
};

// A cereal string (u64 length, bytes) whose length is checked against the bytes left before
// anything is allocated, so a bad length cannot make the reader allocate more than it has read.
void read_text(InArchive& ar, const BytesSource& source, std::string& out) {
  cereal::size_type length = 0;
  ar(cereal::make_size_tag(length));
  if (length > source.remaining()) {
    throw cereal::Exception("a string of " + std::to_string(length) + " bytes runs past the end (" +
                            std::to_string(source.remaining()) + " bytes left)");
  }
  out.resize(static_cast<std::size_t>(length));
  ar(cereal::binary_data(out.data(), out.size()));
}

// Persisted: the field order of the records (format version 1).
void write_record(OutArchive& ar, const BackupEvent& e) {
  ar(e.global_position, e.stream_id, e.stream_version, e.event_id, e.event_type, e.schema_version,
     e.payload, e.metadata, e.recorded_at);
}

void write_record(OutArchive& ar, const BackupSnapshot& s) {
  ar(s.stream_id, s.stream_version, s.format_version, s.state, s.checksum, s.last_position,
     s.last_recorded_at, s.created_at);
}

void read_record(InArchive& ar, const BytesSource& source, BackupEvent& e) {
  ar(e.global_position);
  read_text(ar, source, e.stream_id);
  ar(e.stream_version);
  read_text(ar, source, e.event_id);
  read_text(ar, source, e.event_type);
  ar(e.schema_version);
  read_text(ar, source, e.payload);
  read_text(ar, source, e.metadata);
  ar(e.recorded_at);
}

void read_record(InArchive& ar, const BytesSource& source, BackupSnapshot& s) {
  read_text(ar, source, s.stream_id);
  ar(s.stream_version, s.format_version);
  read_text(ar, source, s.state);
  read_text(ar, source, s.checksum);
  ar(s.last_position, s.last_recorded_at, s.created_at);
}

// The bytes write_record produces for a record (cereal: 8-byte lengths, fixed-size integers).
std::uint64_t encoded_size(const BackupEvent& e) {
  return 8 + 8 + 4 + 8 + 5 * 8 + e.stream_id.size() + e.event_id.size() + e.event_type.size() +
         e.payload.size() + e.metadata.size();
}

std::uint64_t encoded_size(const BackupSnapshot& s) {
  return 8 + 4 + 8 + 8 + 8 + 3 * 8 + s.stream_id.size() + s.state.size() + s.checksum.size();
}

std::string encode_header_blob(const BackupHeader& h) {
  std::string blob;
  StringSink sink(blob);
  std::ostream stream(&sink);
  OutArchive ar(stream, OutArchive::Options::LittleEndian());
  ar(h.backup_id, h.source, h.schema_version, to_unix_micros(h.created_at), h.since_position,
     h.until_position, h.event_count, h.snapshot_count, h.stream_count);
  return blob;
}

// The frame of a chunk: marker, sequence, kind, reserved, record count, payload length, and the
// first 8 bytes of the SHA-256 of those 28 bytes.
std::string encode_frame(std::uint64_t sequence, std::uint8_t kind, std::uint32_t records,
                         std::uint64_t payload_length) {
  std::string frame(kChunkMagic);
  put_u64(frame, sequence);
  frame += static_cast<char>(kind);
  frame.append(3, '\0');
  put_u32(frame, records);
  put_u64(frame, payload_length);
  const Digest check = Sha256().update(frame).finish();
  frame.append(reinterpret_cast<const char*>(check.data()), kFrameCheckSize);
  return frame;
}

// The trailer's fields (without its checksum).
std::string encode_trailer_fields(const BackupTrailer& t, const Digest& chunks_digest) {
  std::string fields(kTrailerMagic);
  put_u64(fields, t.chunk_count);
  put_u64(fields, static_cast<std::uint64_t>(t.event_count));
  put_u64(fields, static_cast<std::uint64_t>(t.snapshot_count));
  fields += as_bytes(chunks_digest);
  return fields;
}

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  Fd(Fd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return m_fd; }
  void reset() noexcept {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
  }
  // Closes and reports close's error (0 when fine).
  int close() noexcept {
    const int fd = std::exchange(m_fd, -1);
    if (fd >= 0 && ::close(fd) != 0) return errno;
    return 0;
  }

 private:
  int m_fd = -1;
};

// A corrupt backup: CorruptDataError for callers, with the chunk to blame for verify_backup.
class BackupCorruption : public CorruptDataError {
 public:
  BackupCorruption(const std::filesystem::path& path, std::optional<std::uint64_t> chunk,
                   std::string problem)
      : CorruptDataError("backup file " + path.string() + ": " + problem),
        m_chunk(chunk),
        m_problem(std::move(problem)) {}
  [[nodiscard]] std::optional<std::uint64_t> chunk() const noexcept { return m_chunk; }
  [[nodiscard]] const std::string& problem() const noexcept { return m_problem; }

 private:
  std::optional<std::uint64_t> m_chunk;
  std::string m_problem;
};

std::string where(std::uint64_t chunk, std::uint64_t offset) {
  return "chunk " + std::to_string(chunk) + " at byte offset " + std::to_string(offset);
}

bool is_prefix(std::string_view bytes, std::string_view of) {
  return bytes.size() <= of.size() && of.substr(0, bytes.size()) == bytes;
}

int differing_bytes(std::string_view a, std::string_view b) {
  int count = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) count += a[i] != b[i] ? 1 : 0;
  return count;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// BackupWriter

struct BackupWriter::Impl {
  enum class State { open, finished, failed };

  std::filesystem::path path;
  std::filesystem::path partial;
  BackupHeader header;
  BackupWriterOptions options;
  Fd fd;
  bool created = false;  // this writer created the partial file (and removes it unless finished)
  State state = State::open;
  Digest header_digest{};
  Sha256 chunks_digest;  // header digest, then every chunk checksum in order
  std::int64_t bytes = 0;
  std::uint64_t chunks = 0;
  std::int64_t events = 0;
  std::int64_t snapshots = 0;

  // The chunk being filled.
  std::uint8_t kind = 0;
  std::uint32_t records = 0;
  std::string payload;
  StringSink sink{payload};
  std::ostream stream{&sink};
  std::optional<OutArchive> archive;

  Impl(std::filesystem::path p, BackupHeader h, BackupWriterOptions o)
      : path(std::move(p)), header(std::move(h)), options(o) {}

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  ~Impl() {
    fd.reset();
    if (created && state != State::finished) ::unlink(partial.c_str());
  }

  // The writer behind `impl`, when it may still be written to; else UsageError.
  static Impl& usable(const std::unique_ptr<Impl>& impl) {
    if (!impl) throw UsageError("BackupWriter used after it was moved from");
    if (impl->state == State::finished) {
      throw UsageError("backup " + impl->path.string() + ": the writer was already finished");
    }
    if (impl->state == State::failed) {
      throw UsageError("backup " + impl->path.string() + ": an earlier write failed");
    }
    return *impl;
  }

  [[noreturn]] void fail(const std::string& what, int err) {
    state = State::failed;
    throw UnavailableError(what + ": " + std::strerror(err));
  }

  void write_all(std::string_view bytes_to_write) {
    while (!bytes_to_write.empty()) {
      const ssize_t n = ::write(fd.get(), bytes_to_write.data(), bytes_to_write.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write backup file " + partial.string(), errno);
      }
      bytes_to_write.remove_prefix(static_cast<std::size_t>(n));
      bytes += n;
    }
  }

  // Writes the buffered records as one chunk (nothing when none are buffered).
  void flush() {
    if (records == 0) return;
    archive.reset();
    const std::string frame = encode_frame(chunks, kind, records, payload.size());
    const Digest checksum = Sha256().update(header_digest).update(frame).update(payload).finish();
    write_all(frame);
    write_all(payload);
    write_all(as_bytes(checksum));
    chunks_digest.update(checksum);
    ++chunks;
    records = 0;
    payload.clear();
  }

  // Buffers one record of `record_kind`, writing chunks as they fill.
  template <class Record>
  void append(std::uint8_t record_kind, const Record& record) {
    const std::uint64_t size = encoded_size(record);
    if (size + 1 > kBackupMaxChunkPayload) {
      throw UsageError("backup " + path.string() + ": a record of " + std::to_string(size) +
                       " bytes is above the chunk maximum of " +
                       std::to_string(kBackupMaxChunkPayload) + " bytes");
    }
    if (records > 0 && (record_kind != kind || payload.size() + size > kBackupMaxChunkPayload)) {
      flush();
    }
    if (records == 0) {
      kind = record_kind;
      payload.clear();
      archive.emplace(stream, OutArchive::Options::LittleEndian());
    }
    write_record(*archive, record);
    ++records;
    if (records >= options.chunk_records || payload.size() >= options.chunk_bytes) flush();
  }
};

namespace {

void check_header_for_writing(const std::filesystem::path& path, const BackupHeader& h) {
  const auto refuse = [&](const std::string& what) {
    throw UsageError("backup " + path.string() + ": " + what);
  };
  if (h.since_position < 0) refuse("since_position " + std::to_string(h.since_position) + " < 0");
  if (h.until_position < h.since_position) {
    refuse("until_position " + std::to_string(h.until_position) + " is below since_position " +
           std::to_string(h.since_position));
  }
  if (h.event_count < 0 || h.snapshot_count < 0 || h.stream_count < 0) {
    refuse("negative count in the header (events " + std::to_string(h.event_count) +
           ", snapshots " + std::to_string(h.snapshot_count) + ", streams " +
           std::to_string(h.stream_count) + ")");
  }
}

}  // namespace

BackupWriter::BackupWriter(std::filesystem::path path, BackupHeader header,
                           BackupWriterOptions options) {
  if (path.empty() || !path.has_filename()) {
    throw UsageError("backup file path \"" + path.string() + "\" names no file");
  }
  if (options.chunk_records < 1 || options.chunk_records > kBackupMaxChunkRecords) {
    throw UsageError("backup " + path.string() + ": chunk_records " +
                     std::to_string(options.chunk_records) + " is outside 1.." +
                     std::to_string(kBackupMaxChunkRecords));
  }
  if (options.chunk_bytes < 1 || options.chunk_bytes > kBackupMaxChunkPayload) {
    throw UsageError("backup " + path.string() + ": chunk_bytes " +
                     std::to_string(options.chunk_bytes) + " is outside 1.." +
                     std::to_string(kBackupMaxChunkPayload));
  }
  check_header_for_writing(path, header);
  header.format_version = kBackupFormatVersion;
  const std::string blob = encode_header_blob(header);
  if (blob.size() > kMaxHeaderBlob) {
    throw UsageError("backup " + path.string() + ": the header takes " +
                     std::to_string(blob.size()) + " bytes, above the maximum of " +
                     std::to_string(kMaxHeaderBlob));
  }

  m_impl = std::make_unique<Impl>(std::move(path), std::move(header), options);
  Impl& w = *m_impl;
  w.partial = w.path;
  w.partial += ".partial";
  w.fd = Fd(::open(w.partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (w.fd.get() < 0) w.fail("cannot create backup file " + w.partial.string(), errno);
  w.created = true;

  std::string prefix(kFileMagic);
  put_u32(prefix, kBackupFormatVersion);
  put_u32(prefix, static_cast<std::uint32_t>(blob.size()));
  w.header_digest = Sha256().update(prefix).update(blob).finish();
  w.chunks_digest.update(w.header_digest);
  w.write_all(prefix);
  w.write_all(blob);
  w.write_all(as_bytes(w.header_digest));
}

BackupWriter::~BackupWriter() = default;
BackupWriter::BackupWriter(BackupWriter&&) noexcept = default;
BackupWriter& BackupWriter::operator=(BackupWriter&&) noexcept = default;

void BackupWriter::add(const BackupEvent& event) {
  Impl& w = Impl::usable(m_impl);
  if (w.snapshots > 0) {
    throw UsageError("backup " + w.path.string() +
                     ": add(event) after add(snapshot): events come before snapshots");
  }
  if (w.events >= w.header.event_count) {
    throw UsageError("backup " + w.path.string() + ": one event more than the header's " +
                     std::to_string(w.header.event_count));
  }
  if (event.global_position <= w.header.since_position ||
      event.global_position > w.header.until_position) {
    throw UsageError("backup " + w.path.string() + ": event at global position " +
                     std::to_string(event.global_position) + " is outside the header's range (" +
                     std::to_string(w.header.since_position) + ", " +
                     std::to_string(w.header.until_position) + "]");
  }
  w.append(kEventKind, event);
  ++w.events;
}

void BackupWriter::add(const BackupSnapshot& snapshot) {
  Impl& w = Impl::usable(m_impl);
  if (w.snapshots >= w.header.snapshot_count) {
    throw UsageError("backup " + w.path.string() + ": one snapshot more than the header's " +
                     std::to_string(w.header.snapshot_count));
  }
  w.append(kSnapshotKind, snapshot);
  ++w.snapshots;
}

BackupTrailer BackupWriter::finish() {
  Impl& w = Impl::usable(m_impl);
  if (w.events != w.header.event_count || w.snapshots != w.header.snapshot_count) {
    throw UsageError(
        "backup " + w.path.string() + ": " + std::to_string(w.events) + " events and " +
        std::to_string(w.snapshots) + " snapshots were added, the header says " +
        std::to_string(w.header.event_count) + " and " + std::to_string(w.header.snapshot_count));
  }
  w.flush();
  const BackupTrailer trailer{w.chunks, w.events, w.snapshots};
  const std::string fields = encode_trailer_fields(trailer, w.chunks_digest.finish());
  w.write_all(fields);
  w.write_all(as_bytes(Sha256().update(w.header_digest).update(fields).finish()));
  if (::fsync(w.fd.get()) != 0) w.fail("cannot fsync backup file " + w.partial.string(), errno);
  if (const int err = w.fd.close(); err != 0) {
    w.fail("cannot close backup file " + w.partial.string(), err);
  }
  if (::rename(w.partial.c_str(), w.path.c_str()) != 0) {
    w.fail("cannot rename " + w.partial.string() + " to " + w.path.string(), errno);
  }
  w.state = Impl::State::finished;  // FILE is complete; the partial file is gone
  const std::filesystem::path dir =
      w.path.has_parent_path() ? w.path.parent_path() : std::filesystem::path(".");
  const Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    const int err = errno;
    throw UnavailableError("backup file " + w.path.string() + " was written, but fsync of " +
                           dir.string() + " failed: " + std::strerror(err));
  }
  return trailer;
}

std::int64_t BackupWriter::bytes_written() const noexcept {
  return m_impl ? m_impl->bytes : 0;
}

// ---------------------------------------------------------------------------------------------
// BackupReader

struct BackupReader::Impl {
  std::filesystem::path path;
  Fd fd;
  std::uint64_t size = 0;
  BackupHeader header;
  Digest header_digest{};
  std::uint64_t body_offset = 0;  // where the first chunk starts
  BackupTrailer checked;

  [[noreturn]] void corrupt(std::optional<std::uint64_t> chunk, std::string problem) const {
    throw BackupCorruption(path, chunk, std::move(problem));
  }

  void refresh_size() {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      throw UnavailableError("cannot read backup file " + path.string() + ": " +
                             std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
      throw UnavailableError("cannot read backup file " + path.string() + ": it is a directory");
    }
    size = static_cast<std::uint64_t>(st.st_size);
  }

  // Reads up to `count` bytes at `offset` into `out`; returns how many there were (fewer at the
  // end of the file).
  std::size_t read_at(std::uint64_t offset, char* out, std::size_t count) const {
    std::size_t done = 0;
    while (done < count) {
      const ssize_t n =
          ::pread(fd.get(), out + done, count - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw UnavailableError("cannot read backup file " + path.string() + " at byte offset " +
                               std::to_string(offset + done) + ": " + std::strerror(errno));
      }
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  void read_header() {
    refresh_size();
    std::string prefix(kHeaderPrefixSize, '\0');
    const std::size_t got = read_at(0, prefix.data(), prefix.size());
    prefix.resize(got);
    if (!is_prefix(std::string_view(prefix).substr(0, kFileMagic.size()), kFileMagic)) {
      corrupt(std::nullopt, "not a prefstore backup file: it does not start with \"" +
                                std::string(kFileMagic) + "\"");
    }
    if (got < kHeaderPrefixSize) {
      corrupt(std::nullopt,
              "truncated: file ends inside the header (file size " + std::to_string(size) + ")");
    }
    const std::uint32_t blob_length = get_u32(prefix.data() + 20);
    if (blob_length > kMaxHeaderBlob) {
      corrupt(std::nullopt, "header at byte offset 0: header length " +
                                std::to_string(blob_length) + " is above the maximum of " +
                                std::to_string(kMaxHeaderBlob));
    }
    const std::uint64_t header_size = kHeaderPrefixSize + blob_length + kDigestSize;
    if (header_size > size) {
      corrupt(std::nullopt, "truncated: file ends inside the header (the header needs " +
                                std::to_string(header_size) + " bytes, file size " +
                                std::to_string(size) + ")");
    }
    std::string rest(blob_length + kDigestSize, '\0');
    if (read_at(kHeaderPrefixSize, rest.data(), rest.size()) != rest.size()) {
      corrupt(std::nullopt, "truncated: file ends inside the header");
    }
    const std::string_view blob = std::string_view(rest).substr(0, blob_length);
    const std::string_view stored = std::string_view(rest).substr(blob_length);
    header_digest = Sha256().update(prefix).update(blob).finish();
    if (stored != as_bytes(header_digest)) {
      corrupt(std::nullopt, "header at byte offset 0: checksum mismatch (stored " + hex(stored) +
                                ", computed " + hex(as_bytes(header_digest)) + ")");
    }
    header.format_version = get_u32(prefix.data() + 16);
    if (header.format_version != kBackupFormatVersion) {
      corrupt(std::nullopt, "format version " + std::to_string(header.format_version) +
                                " is not supported: this build reads version " +
                                std::to_string(kBackupFormatVersion) + " only");
    }
    try {
      if (blob.empty() || blob[0] != kLittleEndianFlag) {
        throw cereal::Exception("its first byte is not the little-endian flag");
      }
      BytesSource source(blob);
      std::istream in(&source);
      InArchive ar(in);
      read_text(ar, source, header.backup_id);
      read_text(ar, source, header.source);
      read_text(ar, source, header.schema_version);
      std::int64_t created_micros = 0;
      ar(created_micros, header.since_position, header.until_position, header.event_count,
         header.snapshot_count, header.stream_count);
      header.created_at = from_unix_micros(created_micros);
      if (source.remaining() != 0) {
        throw cereal::Exception(std::to_string(source.remaining()) + " bytes after its fields");
      }
    } catch (const cereal::Exception& e) {
      corrupt(std::nullopt, std::string("header at byte offset 0 does not decode: ") + e.what());
    }
    if (header.since_position < 0 || header.until_position < header.since_position ||
        header.event_count < 0 || header.snapshot_count < 0 || header.stream_count < 0) {
      corrupt(std::nullopt, "header at byte offset 0 holds impossible values (positions (" +
                                std::to_string(header.since_position) + ", " +
                                std::to_string(header.until_position) + "], events " +
                                std::to_string(header.event_count) + ", snapshots " +
                                std::to_string(header.snapshot_count) + ")");
    }
    body_offset = header_size;
  }

  // The trailer's checksum over its fields, bound to this backup's header.
  [[nodiscard]] Digest trailer_checksum(std::string_view fields) const {
    return Sha256().update(header_digest).update(fields).finish();
  }

  // True when the file's last bytes are this backup's trailer, with the header's counts: then
  // records may be handed out as their chunks are checked (a truncated file, or one with bytes
  // appended, hands out none).
  [[nodiscard]] bool tail_is_trailer() const {
    if (size < body_offset + kTrailerSize) return false;
    std::string tail(kTrailerSize, '\0');
    if (read_at(size - kTrailerSize, tail.data(), tail.size()) != tail.size()) return false;
    const std::string_view fields = std::string_view(tail).substr(0, kTrailerFieldsSize);
    if (std::string_view(tail).substr(kTrailerFieldsSize) != as_bytes(trailer_checksum(fields))) {
      return false;
    }
    return static_cast<std::int64_t>(get_u64(tail.data() + 12)) == header.event_count &&
           static_cast<std::int64_t>(get_u64(tail.data() + 20)) == header.snapshot_count;
  }

  // Checks the trailer at `offset`, after `chunks` chunks holding the given records.
  BackupTrailer read_trailer(std::uint64_t offset, std::uint64_t chunks, std::int64_t events,
                             std::int64_t snapshots, const Digest& chunks_digest) const {
    const std::string at = "trailer at byte offset " + std::to_string(offset);
    if (size - offset < kTrailerSize) {
      corrupt(std::nullopt, "truncated: file ends inside the trailer (" + at + ", file size " +
                                std::to_string(size) + ")");
    }
    std::string trailer(kTrailerSize, '\0');
    if (read_at(offset, trailer.data(), trailer.size()) != trailer.size()) {
      corrupt(std::nullopt, "truncated: file ends inside the trailer (" + at + ")");
    }
    const std::string_view fields = std::string_view(trailer).substr(0, kTrailerFieldsSize);
    const std::string_view stored = std::string_view(trailer).substr(kTrailerFieldsSize);
    const Digest computed = trailer_checksum(fields);
    if (stored != as_bytes(computed)) {
      corrupt(std::nullopt, at + ": checksum mismatch (stored " + hex(stored) + ", computed " +
                                hex(as_bytes(computed)) + ")");
    }
    const BackupTrailer found{get_u64(trailer.data() + 4),
                              static_cast<std::int64_t>(get_u64(trailer.data() + 12)),
                              static_cast<std::int64_t>(get_u64(trailer.data() + 20))};
    if (found.chunk_count != chunks) {
      corrupt(std::nullopt, at + " says " + std::to_string(found.chunk_count) +
                                " chunks, the file has " + std::to_string(chunks));
    }
    if (fields.substr(28) != as_bytes(chunks_digest)) {
      corrupt(std::nullopt, at + ": the chunks' checksums do not match the trailer's digest");
    }
    if (found.event_count != events || found.snapshot_count != snapshots) {
      corrupt(std::nullopt, at + " counts " + std::to_string(found.event_count) + " events and " +
                                std::to_string(found.snapshot_count) +
                                " snapshots, the chunks hold " + std::to_string(events) + " and " +
                                std::to_string(snapshots));
    }
    if (events != header.event_count || snapshots != header.snapshot_count) {
      corrupt(std::nullopt, "counts differ from header: the file holds " + std::to_string(events) +
                                " events and " + std::to_string(snapshots) +
                                " snapshots, the header says " +
                                std::to_string(header.event_count) + " and " +
                                std::to_string(header.snapshot_count));
    }
    if (offset + kTrailerSize != size) {
      corrupt(std::nullopt,
              "garbage after the trailer: " + std::to_string(size - offset - kTrailerSize) +
                  " bytes at byte offset " + std::to_string(offset + kTrailerSize));
    }
    return found;
  }

  // Walks every chunk and the trailer, checking each; hands records out only when `deliver`.
  BackupTrailer walk(bool deliver, const std::function<void(const BackupEvent&)>& on_event,
                     const std::function<void(const BackupSnapshot&)>& on_snapshot) {
    std::uint64_t offset = body_offset;
    std::uint64_t sequence = 0;
    std::int64_t events = 0;
    std::int64_t snapshots = 0;
    bool in_snapshots = false;
    Sha256 chunks_digest;
    chunks_digest.update(header_digest);
    std::string frame(kFrameSize, '\0');
    std::string payload;
    std::vector<BackupEvent> event_records;
    std::vector<BackupSnapshot> snapshot_records;

    for (;;) {
      const auto truncated_in_chunk = [&] {
        corrupt(sequence, "truncated: file ends inside chunk " + std::to_string(sequence) +
                              " (it starts at byte offset " + std::to_string(offset) +
                              ", file size " + std::to_string(size) + ")");
      };
      frame.assign(kFrameSize, '\0');
      const std::size_t got = read_at(offset, frame.data(), 4);
      const std::string_view marker = std::string_view(frame).substr(0, got);
      if (got == 0) {
        corrupt(std::nullopt, "missing trailer: file ends after " +
                                  (sequence == 0 ? std::string("the header")
                                                 : "chunk " + std::to_string(sequence - 1)) +
                                  ", at byte offset " + std::to_string(offset));
      }
      if (got < 4) {
        if (is_prefix(marker, kTrailerMagic)) {
          corrupt(std::nullopt, "truncated: file ends inside the trailer (trailer at byte offset " +
                                    std::to_string(offset) + ", file size " + std::to_string(size) +
                                    ")");
        }
        truncated_in_chunk();
      }
      const bool looks_like_trailer =
          marker == kTrailerMagic ||
          (marker != kChunkMagic && size - offset == kTrailerSize &&
           differing_bytes(marker, kTrailerMagic) < differing_bytes(marker, kChunkMagic));
      if (looks_like_trailer) {
        return read_trailer(offset, sequence, events, snapshots, chunks_digest.finish());
      }
      const std::string at = where(sequence, offset);
      if (marker != kChunkMagic) {
        corrupt(sequence, at + ": no chunk marker (found 0x" + hex(marker) + ", expected \"" +
                              std::string(kChunkMagic) + "\")");
      }
      if (read_at(offset + 4, frame.data() + 4, kFrameSize - 4) != kFrameSize - 4) {
        truncated_in_chunk();
      }
      const Digest frame_check =
          Sha256().update(std::string_view(frame).substr(0, kFrameCheckedSize)).finish();
      if (std::string_view(frame).substr(kFrameCheckedSize) !=
          as_bytes(frame_check).substr(0, kFrameCheckSize)) {
        corrupt(sequence, at + ": frame check mismatch (the chunk's frame is damaged)");
      }
      const std::uint64_t frame_sequence = get_u64(frame.data() + 4);
      const auto kind = static_cast<std::uint8_t>(frame[12]);
      const std::uint32_t count = get_u32(frame.data() + 16);
      const std::uint64_t length = get_u64(frame.data() + 20);
      if (frame_sequence != sequence) {
        corrupt(sequence, "chunk " + std::to_string(sequence) + " out of sequence: the frame at " +
                              "byte offset " + std::to_string(offset) + " says chunk " +
                              std::to_string(frame_sequence));
      }
      if (frame[13] != 0 || frame[14] != 0 || frame[15] != 0) {
        corrupt(sequence, at + ": reserved frame bytes are not zero");
      }
      if (kind != kEventKind && kind != kSnapshotKind) {
        corrupt(sequence, at + ": unknown record kind " + std::to_string(kind));
      }
      if (kind == kEventKind && in_snapshots) {
        corrupt(sequence, at + ": events after snapshot chunks");
      }
      if (count == 0) corrupt(sequence, at + ": holds no records");
      if (length > kBackupMaxChunkPayload) {
        corrupt(sequence, at + ": payload length " + std::to_string(length) +
                              " is above the maximum of " + std::to_string(kBackupMaxChunkPayload));
      }
      const std::uint64_t chunk_size = kFrameSize + length + kDigestSize;
      if (chunk_size > size - offset) {
        corrupt(sequence, "truncated: file ends inside chunk " + std::to_string(sequence) +
                              " (it starts at byte offset " + std::to_string(offset) +
                              " and needs " + std::to_string(chunk_size) + " bytes, file size " +
                              std::to_string(size) + ")");
      }
      payload.resize(static_cast<std::size_t>(length + kDigestSize));
      if (read_at(offset + kFrameSize, payload.data(), payload.size()) != payload.size()) {
        truncated_in_chunk();
      }
      const std::string_view body = std::string_view(payload).substr(0, length);
      const std::string_view stored = std::string_view(payload).substr(length);
      const Digest checksum = Sha256().update(header_digest).update(frame).update(body).finish();
      if (stored != as_bytes(checksum)) {
        corrupt(sequence, at + ": checksum mismatch (stored " + hex(stored) + ", computed " +
                              hex(as_bytes(checksum)) + ")");
      }

      // The chunk is intact; decode all its records before handing out any.
      event_records.clear();
      snapshot_records.clear();
      try {
        if (body.empty() || body[0] != kLittleEndianFlag) {
          throw cereal::Exception("the payload does not start with the little-endian flag");
        }
        BytesSource source(body);
        std::istream in(&source);
        InArchive ar(in);
        for (std::uint32_t i = 0; i < count; ++i) {
          if (kind == kEventKind) {
            read_record(ar, source, event_records.emplace_back());
          } else {
            read_record(ar, source, snapshot_records.emplace_back());
          }
        }
        if (source.remaining() != 0) {
          throw cereal::Exception(std::to_string(source.remaining()) +
                                  " bytes after its last record");
        }
      } catch (const cereal::Exception& e) {
        corrupt(sequence, at + ": records do not decode: " + e.what());
      }
      if (kind == kEventKind) {
        if (events + count > header.event_count) {
          corrupt(sequence, "counts differ from header: " + at + " brings the events to " +
                                std::to_string(events + count) + ", the header says " +
                                std::to_string(header.event_count));
        }
        for (const BackupEvent& e : event_records) {
          if (e.global_position <= header.since_position ||
              e.global_position > header.until_position) {
            corrupt(sequence,
                    at + ": event at global position " + std::to_string(e.global_position) +
                        " is outside the header's range (" + std::to_string(header.since_position) +
                        ", " + std::to_string(header.until_position) + "]");
          }
        }
        events += count;
      } else {
        if (snapshots + count > header.snapshot_count) {
          corrupt(sequence, "counts differ from header: " + at + " brings the snapshots to " +
                                std::to_string(snapshots + count) + ", the header says " +
                                std::to_string(header.snapshot_count));
        }
        snapshots += count;
        in_snapshots = true;
      }
      chunks_digest.update(checksum);
      ++sequence;
      offset += chunk_size;
      checked = {sequence, events, snapshots};

      if (deliver) {
        if (on_event) {
          for (const BackupEvent& e : event_records) on_event(e);
        }
        if (on_snapshot) {
          for (const BackupSnapshot& s : snapshot_records) on_snapshot(s);
        }
      }
    }
  }
};

BackupReader::BackupReader(std::filesystem::path path) : m_impl(std::make_unique<Impl>()) {
  Impl& r = *m_impl;
  r.path = std::move(path);
  r.fd = Fd(::open(r.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (r.fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) throw UnavailableError("backup file " + r.path.string() + " does not exist");
    throw UnavailableError("cannot open backup file " + r.path.string() + ": " +
                           std::strerror(err));
  }
  r.read_header();
}

BackupReader::~BackupReader() = default;
BackupReader::BackupReader(BackupReader&&) noexcept = default;
BackupReader& BackupReader::operator=(BackupReader&&) noexcept = default;

const BackupHeader& BackupReader::header() const noexcept {
  return m_impl->header;
}

BackupTrailer BackupReader::checked() const noexcept {
  return m_impl ? m_impl->checked : BackupTrailer{};
}

BackupTrailer BackupReader::read(const std::function<void(const BackupEvent&)>& on_event,
                                 const std::function<void(const BackupSnapshot&)>& on_snapshot) {
  if (!m_impl) throw UsageError("BackupReader used after it was moved from");
  Impl& r = *m_impl;
  r.checked = {};
  r.refresh_size();
  if (r.tail_is_trailer()) return r.walk(true, on_event, on_snapshot);
  // The file does not end with its trailer: find and name the first problem, handing out nothing.
  r.walk(false, on_event, on_snapshot);
  r.corrupt(std::nullopt, "the file does not end with its trailer");
}

BackupVerification verify_backup(const std::filesystem::path& path) {
  BackupVerification result;
  std::optional<BackupReader> reader;
  try {
    reader.emplace(path);
    result.header = reader->header();
    reader->read({}, {});
    result.ok = true;
  } catch (const BackupCorruption& e) {
    result.bad_chunk = e.chunk();
    result.problem = e.problem();
  } catch (const UnavailableError& e) {
    result.problem = e.what();
  }
  if (reader) {
    const BackupTrailer checked = reader->checked();
    result.chunks_checked = checked.chunk_count;
    result.events = checked.event_count;
    result.snapshots = checked.snapshot_count;
  }
  return result;
}

}  // namespace prefstore::storage
