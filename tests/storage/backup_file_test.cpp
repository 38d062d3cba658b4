// The backup file format (docs/backup-format.md): records round-trip; the writer refuses what would
// make a wrong file; every truncation, flipped byte, swapped, duplicated, dropped or foreign chunk
// is found, named, and never handed out. No database.
#include "prefstore/storage/backup_file.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <rapidcheck.h>
#include <stdlib.h>

#include <array>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "prefstore/errors.hpp"
#include "property.hpp"
#include "unicode.hpp"

namespace prefstore::storage {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

// ---- files -------------------------------------------------------------------------------------

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A fresh folder per test, removed afterwards.
class BackupFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = (fs::temp_directory_path() / "prefstore-backup-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(name.data()), nullptr);
    m_dir = name;
  }
  void TearDown() override { fs::remove_all(m_dir); }
  [[nodiscard]] fs::path file(const std::string& name) const { return m_dir / name; }

 private:
  fs::path m_dir;
};

// ---- records -----------------------------------------------------------------------------------

BackupHeader header_for(std::int64_t events, std::int64_t snapshots) {
  BackupHeader h;
  h.backup_id = "0b1d8e51-6c1e-4a55-9d43-6f1c2a7be001";
  h.source = "postgresql://app:***@db.internal/prefs";
  h.schema_version = "0003";
  h.created_at = from_unix_micros(1'790'000'000'123'456);
  h.since_position = 100;
  h.until_position = 100 + events * 3;
  h.event_count = events;
  h.snapshot_count = snapshots;
  h.stream_count = 2;
  return h;
}

BackupEvent sample_event(int i) {
  BackupEvent e;
  e.global_position = 100 + 3 * (i + 1);
  e.stream_id = i % 2 == 0 ? "user-17" : "user-\xC3\xA9t\xC3\xA9";
  e.stream_version = i / 2 + 1;
  e.event_id = "6d0c1a1e-0000-4000-8000-" + std::to_string(100000000000 + i);
  e.event_type = "PreferenceSet";
  e.schema_version = 1;
  e.payload =
      R"({"key": "ui.theme", "type": "string", "value": "dark )" + std::to_string(i) + "\"}";
  e.metadata = i % 3 == 0 ? "{}" : R"({"ip": "10.0.0.)" + std::to_string(i) + "\"}";
  e.recorded_at = 1'790'000'000'000'000 + i;
  return e;
}

BackupSnapshot sample_snapshot(int i) {
  BackupSnapshot s;
  s.stream_id = "user-" + std::to_string(i);
  s.stream_version = 7 + i;
  s.format_version = 1;
  s.state = "state\0with\0NULs\xFF"s + std::to_string(i);
  s.checksum = std::string(32, static_cast<char>(0xA0 + i));
  s.last_position = 130 + i;
  s.last_recorded_at = 1'790'000'000'000'030 + i;
  s.created_at = 1'790'000'000'500'000 + i;
  return s;
}

struct Contents {
  BackupHeader header;
  std::vector<BackupEvent> events;
  std::vector<BackupSnapshot> snapshots;
};

Contents sample_contents(int events, int snapshots) {
  Contents c{header_for(events, snapshots), {}, {}};
  for (int i = 0; i < events; ++i) c.events.push_back(sample_event(i));
  for (int i = 0; i < snapshots; ++i) c.snapshots.push_back(sample_snapshot(i));
  return c;
}

BackupTrailer write_backup(const fs::path& path, const Contents& c,
                           BackupWriterOptions options = {}) {
  BackupWriter writer(path, c.header, options);
  for (const BackupEvent& e : c.events) writer.add(e);
  for (const BackupSnapshot& s : c.snapshots) writer.add(s);
  return writer.finish();
}

struct ReadBack {
  BackupHeader header;
  std::vector<BackupEvent> events;
  std::vector<BackupSnapshot> snapshots;
  BackupTrailer trailer;
};

ReadBack read_backup(const fs::path& path) {
  BackupReader reader(path);
  ReadBack r;
  r.header = reader.header();
  r.trailer = reader.read([&](const BackupEvent& e) { r.events.push_back(e); },
                          [&](const BackupSnapshot& s) { r.snapshots.push_back(s); });
  return r;
}

// ---- the layout, as docs/backup-format.md describes it (independent of the codec) -------------

std::uint64_t le(const std::string& bytes, std::size_t at, int width) {
  std::uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes.at(at + static_cast<std::size_t>(i)));
  }
  return value;
}

struct ChunkSpan {
  std::size_t begin = 0;
  std::size_t end = 0;  // one past its checksum
  std::uint64_t records = 0;
};

struct Layout {
  std::size_t header_end = 0;
  std::vector<ChunkSpan> chunks;
  std::size_t trailer_begin = 0;

  // The chunk holding byte `offset`, if any.
  [[nodiscard]] std::optional<std::uint64_t> chunk_at(std::size_t offset) const {
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      if (offset >= chunks[i].begin && offset < chunks[i].end) return i;
    }
    return std::nullopt;
  }
  // Records in the chunks before chunk `index`.
  [[nodiscard]] std::uint64_t records_before(std::uint64_t index) const {
    std::uint64_t n = 0;
    for (std::uint64_t i = 0; i < index; ++i) n += chunks[i].records;
    return n;
  }
};

Layout parse_layout(const std::string& bytes) {
  Layout layout;
  EXPECT_EQ(bytes.substr(0, 16), "PREFSTORE-BACKUP");
  EXPECT_EQ(le(bytes, 16, 4), 1u);
  layout.header_end = 24 + le(bytes, 20, 4) + 32;
  std::size_t offset = layout.header_end;
  while (bytes.compare(offset, 4, "CHNK") == 0) {
    const std::size_t end = offset + 36 + le(bytes, offset + 20, 8) + 32;
    layout.chunks.push_back({offset, end, le(bytes, offset + 16, 4)});
    offset = end;
  }
  EXPECT_EQ(bytes.compare(offset, 4, "TRLR"), 0);
  layout.trailer_begin = offset;
  EXPECT_EQ(offset + 92, bytes.size());
  return layout;
}

// What verify_backup and BackupReader say about a file.
struct Attempt {
  BackupVerification verification;
  bool refused = false;  // BackupReader's constructor or read() threw CorruptDataError
  bool refused_by_constructor = false;
  std::string message;
  std::uint64_t records_seen = 0;
};

Attempt attempt(const fs::path& path) {
  Attempt a;
  a.verification = verify_backup(path);
  std::optional<BackupReader> reader;
  try {
    reader.emplace(path);
  } catch (const CorruptDataError& e) {
    a.refused = a.refused_by_constructor = true;
    a.message = e.what();
    return a;
  }
  try {
    reader->read([&](const BackupEvent&) { ++a.records_seen; },
                 [&](const BackupSnapshot&) { ++a.records_seen; });
  } catch (const CorruptDataError& e) {
    a.refused = true;
    a.message = e.what();
  }
  return a;
}

// The sample for the corruption tests: 10 events in chunks of 4, 4, 2 and 3 snapshots in one.
class CorruptBackup : public BackupFile {
 protected:
  void SetUp() override {
    BackupFile::SetUp();
    m_good = file("good.backup");
    write_backup(m_good, sample_contents(10, 3), {.chunk_records = 4});
    m_bytes = read_bytes(m_good);
    m_layout = parse_layout(m_bytes);
    ASSERT_EQ(m_layout.chunks.size(), 4u);
  }
  fs::path m_good;
  std::string m_bytes;
  Layout m_layout;
};

// ---- round trips -------------------------------------------------------------------------------

rc::Gen<std::string> gen_text() {
  const auto byte =
      rc::gen::map(rc::gen::inRange(0, 256), [](int b) { return static_cast<char>(b); });
  const auto code_point = rc::gen::oneOf(rc::gen::inRange<std::uint32_t>(0x20, 0x7F),
                                         rc::gen::inRange<std::uint32_t>(0x80, 0x800),
                                         rc::gen::inRange<std::uint32_t>(0x800, 0xD800),
                                         rc::gen::inRange<std::uint32_t>(0x10000, 0x110000));
  return rc::gen::oneOf(rc::gen::just(std::string()), rc::gen::container<std::string>(byte),
                        rc::gen::map(rc::gen::container<std::vector<std::uint32_t>>(code_point),
                                     [](const std::vector<std::uint32_t>& cps) {
                                       std::string out;
                                       for (std::uint32_t cp : cps) out += testing::utf8(cp);
                                       return out;
                                     }));
}

std::int64_t gen_int64() {
  return *rc::gen::arbitrary<std::int64_t>();
}

TEST_F(BackupFile, RandomRecordsRoundTrip) {
  const fs::path path = file("random.backup");
  testing::check_property(
      [&] {
        const auto chunk_records = *rc::gen::inRange<std::size_t>(1, 8);
        const int event_count = *rc::gen::inRange(0, 40);
        const int snapshot_count = *rc::gen::inRange(0, 20);
        Contents c;
        c.header.backup_id = *gen_text();
        c.header.source = *gen_text();
        c.header.schema_version = *gen_text();
        c.header.created_at = from_unix_micros(gen_int64());
        c.header.since_position = *rc::gen::inRange<std::int64_t>(0, std::int64_t{1} << 40);
        c.header.stream_count = *rc::gen::inRange<std::int64_t>(0, 1000);
        std::int64_t position = c.header.since_position;
        for (int i = 0; i < event_count; ++i) {
          BackupEvent e;
          position += *rc::gen::inRange<std::int64_t>(1, 1000);
          e.global_position = position;
          e.stream_id = *gen_text();
          e.stream_version = gen_int64();
          e.event_id = *gen_text();
          e.event_type = *gen_text();
          e.schema_version = *rc::gen::arbitrary<std::int32_t>();
          e.payload = *gen_text();
          e.metadata = *gen_text();
          e.recorded_at = gen_int64();
          c.events.push_back(std::move(e));
        }
        c.header.until_position = position + *rc::gen::inRange<std::int64_t>(0, 1000);
        for (int i = 0; i < snapshot_count; ++i) {
          BackupSnapshot s;
          s.stream_id = *gen_text();
          s.stream_version = gen_int64();
          s.format_version = *rc::gen::arbitrary<std::int32_t>();
          s.state = *gen_text();
          s.checksum = *gen_text();
          s.last_position = gen_int64();
          s.last_recorded_at = gen_int64();
          s.created_at = gen_int64();
          c.snapshots.push_back(std::move(s));
        }
        c.header.event_count = event_count;
        c.header.snapshot_count = snapshot_count;
        c.header.format_version = 77;  // set by the writer

        const BackupTrailer written = write_backup(path, c, {.chunk_records = chunk_records});
        const auto chunks_of = [&](int n) { return (n + chunk_records - 1) / chunk_records; };
        RC_ASSERT(written == (BackupTrailer{chunks_of(event_count) + chunks_of(snapshot_count),
                                            event_count, snapshot_count}));
        const ReadBack back = read_backup(path);
        BackupHeader expected_header = c.header;
        expected_header.format_version = kBackupFormatVersion;
        RC_ASSERT(back.header == expected_header);
        RC_ASSERT(back.events == c.events);
        RC_ASSERT(back.snapshots == c.snapshots);
        RC_ASSERT(back.trailer == written);
        const BackupVerification v = verify_backup(path);
        RC_ASSERT(v.ok);
        RC_ASSERT(v.problem.empty());
        RC_ASSERT(v.chunks_checked == written.chunk_count);
        RC_ASSERT(v.events == event_count);
        RC_ASSERT(v.snapshots == snapshot_count);
      },
      150, 80);
}

TEST_F(BackupFile, BackupWithNoRecordsHasHeaderAndTrailerOnly) {
  const fs::path path = file("empty.backup");
  const Contents c = sample_contents(0, 0);
  EXPECT_EQ(write_backup(path, c), (BackupTrailer{0, 0, 0}));
  const ReadBack back = read_backup(path);
  EXPECT_EQ(back.header, c.header);
  EXPECT_TRUE(back.events.empty());
  EXPECT_TRUE(back.snapshots.empty());
  const Layout layout = parse_layout(read_bytes(path));
  EXPECT_TRUE(layout.chunks.empty());
  EXPECT_EQ(layout.trailer_begin, layout.header_end);
  EXPECT_TRUE(verify_backup(path).ok);
}

TEST_F(BackupFile, ChunksHoldChunkRecordsOfOneKind) {
  const fs::path path = file("chunks.backup");
  EXPECT_EQ(write_backup(path, sample_contents(10, 5), {.chunk_records = 3}),
            (BackupTrailer{4 + 2, 10, 5}));
  const Layout layout = parse_layout(read_bytes(path));
  std::vector<std::uint64_t> records;
  for (const ChunkSpan& chunk : layout.chunks) records.push_back(chunk.records);
  EXPECT_EQ(records, (std::vector<std::uint64_t>{3, 3, 3, 1, 3, 2}));
}

TEST_F(BackupFile, ChunkBytesClosesAChunkEarly) {
  const fs::path path = file("small-chunks.backup");
  EXPECT_EQ(write_backup(path, sample_contents(6, 2), {.chunk_records = 1000, .chunk_bytes = 1}),
            (BackupTrailer{8, 6, 2}));
  EXPECT_EQ(read_backup(path).events, sample_contents(6, 2).events);
}

TEST_F(BackupFile, ReadCanBeRepeated) {
  const fs::path path = file("twice.backup");
  write_backup(path, sample_contents(5, 2), {.chunk_records = 2});
  BackupReader reader(path);
  int seen = 0;
  for (int round = 0; round < 2; ++round) {
    reader.read([&](const BackupEvent&) { ++seen; }, {});  // an empty callback skips snapshots
  }
  EXPECT_EQ(seen, 10);
  EXPECT_EQ(reader.checked(), (BackupTrailer{3 + 1, 5, 2}));
}

TEST_F(BackupFile, ACallbackExceptionStopsTheRead) {
  const fs::path path = file("callback.backup");
  write_backup(path, sample_contents(10, 3), {.chunk_records = 4});
  BackupReader reader(path);
  int seen = 0;
  EXPECT_THROW(reader.read(
                   [&](const BackupEvent&) {
                     if (++seen == 6) throw std::logic_error("stop");
                   },
                   [&](const BackupSnapshot&) { ++seen; }),
               std::logic_error);
  EXPECT_EQ(seen, 6);
  EXPECT_EQ(reader.checked(), (BackupTrailer{2, 8, 0}));
}

// ---- format version 1, as first written (never change these bytes) ----------------------------

// One event and one snapshot (chunk_records 1000): header, two chunks, trailer.
constexpr const char* kGoldenVersion1 =
    "5052454653544f52452d4241434b555001000000550000000103000000000000"
    "00622d310500000000000000707265667304000000000000003030303300e025"
    "dafe5b0600040000000000000005000000000000000100000000000000010000"
    "000000000001000000000000007f2419f4536c7c19641aca9f22b185ddd20f79"
    "402b45694c3fe2b76e0169cca643484e4b000000000000000001000000010000"
    "0062000000000000009e6d7da4b0926e4f010500000000000000030000000000"
    "0000752d3101000000000000000300000000000000652d310d00000000000000"
    "507265666572656e63655365740100000002000000000000007b7d0800000000"
    "0000007b2261223a20317d01e025dafe5b0600455e0236a155f369ded8af9e52"
    "c0959ff84b34a86ec752f0d80bc4fad75791a143484e4b010000000000000002"
    "000000010000004400000000000000120cdf5608cb10d6010300000000000000"
    "752d3101000000000000000100000003000000000000007300ff010000000000"
    "000063050000000000000001e025dafe5b060002e025dafe5b0600d4aa81967b"
    "042200c34ec595d0152572a91aeace0d242bf4249f4da8a85d726454524c5202"
    "0000000000000001000000000000000100000000000000907a3f8fbcdb250867"
    "d7476c988c5bf089f03a624b7dfc793e4be1fa4b8062900e141e208b637e515c"
    "bd785031082059fc4a2585dbe49f09ca1dd0147d345f04";

Contents golden_contents() {
  Contents c;
  c.header.backup_id = "b-1";
  c.header.source = "prefs";
  c.header.schema_version = "0003";
  c.header.created_at = from_unix_micros(1'790'000'000'000'000);
  c.header.since_position = 4;
  c.header.until_position = 5;
  c.header.event_count = 1;
  c.header.snapshot_count = 1;
  c.header.stream_count = 1;
  c.events.push_back(
      {5, "u-1", 1, "e-1", "PreferenceSet", 1, "{}", R"({"a": 1})", 1'790'000'000'000'001});
  c.snapshots.push_back(
      {"u-1", 1, 1, "s\0\xFF"s, "c", 5, 1'790'000'000'000'001, 1'790'000'000'000'002});
  return c;
}

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

TEST_F(BackupFile, GoldenFileOfFormatVersion1Decodes) {
  const fs::path path = file("golden.backup");
  write_bytes(path, from_hex(kGoldenVersion1));
  const Contents c = golden_contents();
  const ReadBack back = read_backup(path);
  EXPECT_EQ(back.header, c.header);
  EXPECT_EQ(back.events, c.events);
  EXPECT_EQ(back.snapshots, c.snapshots);
  EXPECT_EQ(back.trailer, (BackupTrailer{2, 1, 1}));
}

TEST_F(BackupFile, WriterStillWritesTheGoldenBytes) {
  const fs::path path = file("rewritten.backup");
  write_backup(path, golden_contents());
  EXPECT_EQ(read_bytes(path), from_hex(kGoldenVersion1));
}

// ---- the writer --------------------------------------------------------------------------------

TEST_F(BackupFile, FinishRenamesThePartialFileIntoPlace) {
  const fs::path path = file("done.backup");
  write_bytes(path, "an older backup");
  const Contents c = sample_contents(3, 1);
  BackupWriter writer(path, c.header);
  for (const BackupEvent& e : c.events) writer.add(e);
  writer.add(c.snapshots[0]);
  EXPECT_TRUE(fs::exists(file("done.backup.partial")));
  writer.finish();
  EXPECT_FALSE(fs::exists(file("done.backup.partial")));
  EXPECT_EQ(static_cast<std::uintmax_t>(writer.bytes_written()), fs::file_size(path));
  EXPECT_EQ(read_backup(path).events, c.events);
  EXPECT_THROW(writer.finish(), UsageError);
  EXPECT_THROW(writer.add(c.events[0]), UsageError);
}

TEST_F(BackupFile, AnUnfinishedWriterRemovesItsPartialFile) {
  const fs::path path = file("abandoned.backup");
  {
    const Contents c = sample_contents(5, 0);
    BackupWriter writer(path, c.header, {.chunk_records = 2});
    for (int i = 0; i < 4; ++i) writer.add(c.events[static_cast<std::size_t>(i)]);
    EXPECT_TRUE(fs::exists(file("abandoned.backup.partial")));
    EXPECT_GT(writer.bytes_written(), 0);
  }
  EXPECT_FALSE(fs::exists(file("abandoned.backup.partial")));
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(BackupFile, WriterRefusesFewerRecordsThanTheHeaderSays) {
  const fs::path path = file("short.backup");
  {
    const Contents c = sample_contents(3, 2);
    BackupWriter writer(path, c.header);
    for (const BackupEvent& e : c.events) writer.add(e);
    writer.add(c.snapshots[0]);
    try {
      writer.finish();
      FAIL() << "finish() accepted 1 snapshot of 2";
    } catch (const UsageError& e) {
      EXPECT_STREQ(e.what(), ("backup " + path.string() +
                              ": 3 events and 1 snapshots were added, the header says 3 and 2")
                                 .c_str());
    }
    writer.add(c.snapshots[1]);  // nothing was written: the writer goes on
    EXPECT_EQ(writer.finish(), (BackupTrailer{2, 3, 2}));
  }
  EXPECT_TRUE(verify_backup(path).ok);
  {
    BackupWriter writer(file("none.backup"), header_for(1, 0));
    EXPECT_THROW(writer.finish(), UsageError);
  }
  EXPECT_FALSE(fs::exists(file("none.backup")));
  EXPECT_FALSE(fs::exists(file("none.backup.partial")));
}

TEST_F(BackupFile, WriterRefusesMoreRecordsThanTheHeaderSays) {
  const Contents c = sample_contents(2, 1);
  BackupWriter writer(file("long.backup"), c.header);
  writer.add(c.events[0]);
  writer.add(c.events[1]);
  EXPECT_THROW(writer.add(sample_event(2)), UsageError);
  writer.add(c.snapshots[0]);
  EXPECT_THROW(writer.add(sample_snapshot(1)), UsageError);
  EXPECT_EQ(writer.finish(), (BackupTrailer{2, 2, 1}));
}

TEST_F(BackupFile, WriterRefusesAnEventAfterASnapshot) {
  const Contents c = sample_contents(2, 1);
  BackupWriter writer(file("order.backup"), c.header);
  writer.add(c.events[0]);
  writer.add(c.snapshots[0]);
  EXPECT_THROW(writer.add(c.events[1]), UsageError);
}

TEST_F(BackupFile, WriterRefusesAnEventOutsideThePositionRange) {
  BackupHeader h = header_for(1, 0);
  h.since_position = 10;
  h.until_position = 20;
  BackupWriter writer(file("range.backup"), h);
  BackupEvent e = sample_event(0);
  for (std::int64_t position : {std::int64_t{10}, std::int64_t{21}, std::int64_t{-1}}) {
    e.global_position = position;
    EXPECT_THROW(writer.add(e), UsageError) << position;
  }
  e.global_position = 20;
  writer.add(e);
  EXPECT_EQ(writer.finish().event_count, 1);
}

TEST_F(BackupFile, WriterRefusesBadOptionsAndHeaders) {
  const fs::path path = file("bad.backup");
  EXPECT_THROW(BackupWriter(path, header_for(1, 0), {.chunk_records = 0}), UsageError);
  EXPECT_THROW(BackupWriter(path, header_for(1, 0), {.chunk_records = kBackupMaxChunkRecords + 1}),
               UsageError);
  EXPECT_THROW(BackupWriter(path, header_for(1, 0), {.chunk_bytes = 0}), UsageError);
  BackupHeader h = header_for(1, 0);
  h.until_position = h.since_position - 1;
  EXPECT_THROW(BackupWriter(path, h), UsageError);
  h = header_for(1, 0);
  h.since_position = -1;
  EXPECT_THROW(BackupWriter(path, h), UsageError);
  h = header_for(1, 0);
  h.snapshot_count = -1;
  EXPECT_THROW(BackupWriter(path, h), UsageError);
  h = header_for(1, 0);
  h.source = std::string(2 << 20, 'x');
  EXPECT_THROW(BackupWriter(path, h), UsageError);
  EXPECT_FALSE(fs::exists(file("bad.backup.partial")));
}

TEST_F(BackupFile, WriterNamesAFolderItCannotWriteTo) {
  try {
    BackupWriter writer(file("no-such-folder") / "x.backup", header_for(0, 0));
    FAIL() << "created a file in a missing folder";
  } catch (const UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find("x.backup.partial: No such file or directory"),
              std::string::npos)
        << e.what();
  }
}

// ---- files that are not backups ----------------------------------------------------------------

TEST_F(BackupFile, AMissingFileIsNamed) {
  const fs::path path = file("missing.backup");
  try {
    BackupReader reader(path);
    FAIL() << "opened a missing file";
  } catch (const UnavailableError& e) {
    EXPECT_EQ(std::string(e.what()), "backup file " + path.string() + " does not exist");
  }
  const BackupVerification v = verify_backup(path);
  EXPECT_FALSE(v.ok);
  EXPECT_FALSE(v.header.has_value());
  EXPECT_EQ(v.problem, "backup file " + path.string() + " does not exist");
}

TEST_F(BackupFile, AnotherFileIsNotABackup) {
  const fs::path path = file("notes.txt");
  write_bytes(path, "just some notes, long enough to hold a header and then some more bytes");
  const Attempt a = attempt(path);
  EXPECT_TRUE(a.refused_by_constructor);
  EXPECT_EQ(a.verification.problem,
            "not a prefstore backup file: it does not start with \"PREFSTORE-BACKUP\"");
}

// ---- corruption --------------------------------------------------------------------------------

TEST_F(CorruptBackup, EveryTruncationIsFoundAndNothingIsHandedOut) {
  for (std::size_t cut = 0; cut < m_bytes.size(); ++cut) {
    // A new file each time: truncating one file again and again makes ext4 flush it each time.
    const fs::path cut_file = file("cut-" + std::to_string(cut) + ".backup");
    write_bytes(cut_file, m_bytes.substr(0, cut));
    const Attempt a = attempt(cut_file);
    fs::remove(cut_file);
    SCOPED_TRACE("cut at " + std::to_string(cut) + ": " + a.verification.problem);
    ASSERT_FALSE(a.verification.ok);
    ASSERT_FALSE(a.verification.problem.empty());
    ASSERT_TRUE(a.refused);
    ASSERT_EQ(a.records_seen, 0u);
    ASSERT_EQ(a.verification.header.has_value(), cut >= m_layout.header_end);
    ASSERT_EQ(a.refused_by_constructor, cut < m_layout.header_end);
    std::optional<std::uint64_t> inside;
    for (std::size_t i = 0; i < m_layout.chunks.size(); ++i) {
      if (cut > m_layout.chunks[i].begin && cut < m_layout.chunks[i].end) inside = i;
    }
    ASSERT_EQ(a.verification.bad_chunk, inside);
    if (inside) {
      ASSERT_EQ(a.verification.chunks_checked, *inside);
      ASSERT_EQ(a.verification.problem.rfind(
                    "truncated: file ends inside chunk " + std::to_string(*inside) + " (", 0),
                0u);
      ASSERT_NE(a.message.find(cut_file.string()), std::string::npos);
    } else if (cut >= m_layout.header_end) {
      const bool at_boundary = cut == m_layout.header_end || cut == m_layout.trailer_begin ||
                               m_layout.chunk_at(cut).has_value();
      ASSERT_EQ(a.verification.problem.rfind(at_boundary ? "missing trailer"
                                                         : "truncated: file ends inside the "
                                                           "trailer",
                                             0),
                0u);
    }
  }
}

TEST_F(CorruptBackup, EveryFlippedByteIsFoundInItsChunk) {
  for (std::size_t offset = 0; offset < m_bytes.size(); ++offset) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string bytes = m_bytes;
      bytes[offset] = static_cast<char>(bytes[offset] ^ mask);
      const fs::path flipped_file =
          file("flip-" + std::to_string(offset) + "-" + std::to_string(mask) + ".backup");
      write_bytes(flipped_file, bytes);
      const Attempt a = attempt(flipped_file);
      fs::remove(flipped_file);
      SCOPED_TRACE("flip at " + std::to_string(offset) + ": " + a.verification.problem);
      ASSERT_FALSE(a.verification.ok);
      ASSERT_TRUE(a.refused);
      const std::optional<std::uint64_t> chunk = m_layout.chunk_at(offset);
      ASSERT_EQ(a.verification.bad_chunk, chunk);
      if (offset < m_layout.header_end) {
        ASSERT_TRUE(a.refused_by_constructor);
        ASSERT_FALSE(a.verification.header.has_value());
      } else if (chunk) {
        ASSERT_EQ(a.verification.chunks_checked, *chunk);
        ASSERT_EQ(a.records_seen, m_layout.records_before(*chunk));
        ASSERT_NE(a.message.find("chunk " + std::to_string(*chunk) + " at byte offset " +
                                 std::to_string(m_layout.chunks[*chunk].begin)),
                  std::string::npos);
      } else {
        ASSERT_EQ(a.verification.problem.rfind(
                      "trailer at byte offset " + std::to_string(m_layout.trailer_begin), 0),
                  0u);
        ASSERT_EQ(a.verification.chunks_checked, m_layout.chunks.size());
        ASSERT_EQ(a.records_seen, 0u);  // the tail is not a trailer: nothing is handed out
      }
    }
  }
}

TEST_F(CorruptBackup, AFlippedPayloadByteIsAChecksumMismatch) {
  std::string bytes = m_bytes;
  bytes[m_layout.chunks[2].begin + 40] ^= 0x10;
  write_bytes(file("x.backup"), bytes);
  const Attempt a = attempt(file("x.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 2u);
  EXPECT_EQ(
      a.message.rfind("backup file " + file("x.backup").string() + ": chunk 2 at byte offset " +
                          std::to_string(m_layout.chunks[2].begin) + ": checksum mismatch (stored ",
                      0),
      0u)
      << a.message;
}

std::string chunk_bytes(const std::string& bytes, const ChunkSpan& chunk) {
  return bytes.substr(chunk.begin, chunk.end - chunk.begin);
}

TEST_F(CorruptBackup, ASwappedChunkIsOutOfSequence) {
  const auto& ch = m_layout.chunks;
  const std::string bytes = m_bytes.substr(0, ch[1].begin) + chunk_bytes(m_bytes, ch[2]) +
                            chunk_bytes(m_bytes, ch[1]) + m_bytes.substr(ch[2].end);
  write_bytes(file("swapped.backup"), bytes);
  const Attempt a = attempt(file("swapped.backup"));
  EXPECT_FALSE(a.verification.ok);
  EXPECT_EQ(a.verification.bad_chunk, 1u);
  EXPECT_EQ(a.verification.problem, "chunk 1 out of sequence: the frame at byte offset " +
                                        std::to_string(ch[1].begin) + " says chunk 2");
  EXPECT_TRUE(a.refused);
  EXPECT_EQ(a.records_seen, ch[0].records);
}

TEST_F(CorruptBackup, ADuplicatedChunkIsOutOfSequence) {
  const auto& ch = m_layout.chunks;
  const std::string bytes =
      m_bytes.substr(0, ch[2].begin) + chunk_bytes(m_bytes, ch[1]) + m_bytes.substr(ch[2].begin);
  write_bytes(file("duplicated.backup"), bytes);
  const Attempt a = attempt(file("duplicated.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 2u);
  EXPECT_EQ(a.verification.problem.rfind("chunk 2 out of sequence", 0), 0u);
  EXPECT_TRUE(a.refused);
  EXPECT_EQ(a.records_seen, ch[0].records + ch[1].records);
}

TEST_F(CorruptBackup, ADroppedChunkIsFound) {
  const auto& ch = m_layout.chunks;
  write_bytes(file("middle.backup"), m_bytes.substr(0, ch[1].begin) + m_bytes.substr(ch[1].end));
  Attempt a = attempt(file("middle.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 1u);
  EXPECT_EQ(a.verification.problem.rfind("chunk 1 out of sequence", 0), 0u);

  write_bytes(file("last.backup"), m_bytes.substr(0, ch[3].begin) + m_bytes.substr(ch[3].end));
  a = attempt(file("last.backup"));
  EXPECT_EQ(a.verification.bad_chunk, std::nullopt);
  EXPECT_EQ(a.verification.problem, "trailer at byte offset " + std::to_string(ch[3].begin) +
                                        " says 4 chunks, the file has 3");
  EXPECT_TRUE(a.refused);
}

TEST_F(CorruptBackup, AChunkOfAnotherBackupIsRefused) {
  // The same records under another backup id: each chunk checksum is bound to its header.
  Contents other = sample_contents(10, 3);
  other.header.backup_id = "0b1d8e51-6c1e-4a55-9d43-6f1c2a7be002";
  write_backup(file("other.backup"), other, {.chunk_records = 4});
  const std::string other_bytes = read_bytes(file("other.backup"));
  const Layout other_layout = parse_layout(other_bytes);
  ASSERT_EQ(chunk_bytes(other_bytes, other_layout.chunks[1]).size(),
            chunk_bytes(m_bytes, m_layout.chunks[1]).size());
  const auto& ch = m_layout.chunks;
  write_bytes(file("spliced.backup"), m_bytes.substr(0, ch[1].begin) +
                                          chunk_bytes(other_bytes, other_layout.chunks[1]) +
                                          m_bytes.substr(ch[1].end));
  const Attempt a = attempt(file("spliced.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 1u);
  EXPECT_NE(a.verification.problem.find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(a.records_seen, ch[0].records);
}

TEST_F(CorruptBackup, GarbageAfterTheTrailerIsFound) {
  write_bytes(file("garbage.backup"), m_bytes + "garbage");
  const Attempt a = attempt(file("garbage.backup"));
  EXPECT_FALSE(a.verification.ok);
  EXPECT_EQ(a.verification.bad_chunk, std::nullopt);
  EXPECT_EQ(a.verification.problem,
            "garbage after the trailer: 7 bytes at byte offset " + std::to_string(m_bytes.size()));
  EXPECT_EQ(a.verification.chunks_checked, 4u);
  EXPECT_TRUE(a.refused);
  EXPECT_EQ(a.records_seen, 0u);

  // A second copy of the whole file appended.
  write_bytes(file("twice.backup"), m_bytes + m_bytes);
  EXPECT_EQ(attempt(file("twice.backup")).verification.problem.rfind("garbage after the trailer"),
            0u);
}

// ---- forged files: intact checksums around wrong contents
// ----------------------------------------

std::string sha256(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr), 1);
  return {reinterpret_cast<const char*>(digest), length};
}

void put_le(std::string& bytes, std::size_t at, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) {
    bytes[at + static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xFF);
  }
}

// Re-signs a file after its header blob or a frame was changed: recomputes the header checksum,
// every frame check and chunk checksum, and the trailer, as docs/backup-format.md describes.
std::string resign(std::string bytes) {
  const std::size_t blob_end = 24 + le(bytes, 20, 4);
  const std::string header_digest = sha256(std::string_view(bytes).substr(0, blob_end));
  bytes.replace(blob_end, 32, header_digest);
  std::size_t offset = blob_end + 32;
  std::string chunk_digests = header_digest;
  while (bytes.compare(offset, 4, "CHNK") == 0) {
    bytes.replace(offset + 28, 8, sha256(bytes.substr(offset, 28)).substr(0, 8));
    const std::size_t checksum_at = offset + 36 + le(bytes, offset + 20, 8);
    const std::string checksum = sha256(header_digest + bytes.substr(offset, checksum_at - offset));
    bytes.replace(checksum_at, 32, checksum);
    chunk_digests += checksum;
    offset = checksum_at + 32;
  }
  bytes.replace(offset + 28, 32, sha256(chunk_digests));
  bytes.replace(offset + 60, 32, sha256(header_digest + bytes.substr(offset, 60)));
  return bytes;
}

// Recomputes the frame check of the chunk at `offset` only (its checksum stays as it was).
std::string resign_frame(std::string bytes, std::size_t offset) {
  bytes.replace(offset + 28, 8, sha256(bytes.substr(offset, 28)).substr(0, 8));
  return bytes;
}

TEST_F(CorruptBackup, ResigningAnUnchangedFileKeepsItsBytes) {
  EXPECT_EQ(resign(m_bytes), m_bytes);  // the test's reading of the format matches the codec's
}

TEST_F(CorruptBackup, AHeaderWithOtherCountsIsRefused) {
  // The header blob ends with event_count, snapshot_count, stream_count (8 bytes each).
  const std::size_t blob_end = 24 + le(m_bytes, 20, 4);
  std::string more = m_bytes;
  put_le(more, blob_end - 24, 11, 8);
  write_bytes(file("more.backup"), resign(more));
  Attempt a = attempt(file("more.backup"));
  EXPECT_EQ(a.verification.problem,
            "counts differ from header: the file holds 10 events and 3 snapshots, the header says "
            "11 and 3");
  EXPECT_EQ(a.records_seen, 0u);

  std::string fewer = m_bytes;
  put_le(fewer, blob_end - 24, 7, 8);
  write_bytes(file("fewer.backup"), resign(fewer));
  a = attempt(file("fewer.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 1u);
  EXPECT_EQ(a.verification.problem, "counts differ from header: chunk 1 at byte offset " +
                                        std::to_string(m_layout.chunks[1].begin) +
                                        " brings the events to 8, the header says 7");
  EXPECT_EQ(a.records_seen, 0u);
}

TEST_F(CorruptBackup, AHugePayloadLengthIsRefusedWithoutAllocatingIt) {
  for (std::uint64_t length : {std::uint64_t{1} << 62, (std::uint64_t{1} << 31) + 1}) {
    std::string bytes = m_bytes;
    put_le(bytes, m_layout.chunks[1].begin + 20, length, 8);
    write_bytes(file("huge.backup"), resign_frame(bytes, m_layout.chunks[1].begin));
    const Attempt a = attempt(file("huge.backup"));
    EXPECT_EQ(a.verification.bad_chunk, 1u);
    EXPECT_EQ(a.verification.problem, "chunk 1 at byte offset " +
                                          std::to_string(m_layout.chunks[1].begin) +
                                          ": payload length " + std::to_string(length) +
                                          " is above the maximum of 2147483648");
  }
  std::string bytes = m_bytes;
  put_le(bytes, m_layout.chunks[1].begin + 20, 1 << 20, 8);  // past the end of the file
  write_bytes(file("long.backup"), resign_frame(bytes, m_layout.chunks[1].begin));
  const Attempt a = attempt(file("long.backup"));
  EXPECT_EQ(a.verification.bad_chunk, 1u);
  EXPECT_EQ(a.verification.problem.rfind("truncated: file ends inside chunk 1 (", 0), 0u);
}

TEST_F(CorruptBackup, AnotherFormatVersionIsRefused) {
  std::string bytes = m_bytes;
  put_le(bytes, 16, 2, 4);
  write_bytes(file("v2.backup"), resign(bytes));
  EXPECT_EQ(verify_backup(file("v2.backup")).problem,
            "format version 2 is not supported: this build reads version 1 only");
}

}  // namespace
}  // namespace prefstore::storage
