// Logging (core/logging.hpp): quiet by default, levels filter before a record is built, logfmt
// quoting, and a sink of the application's own.
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "prefstore/logging.hpp"

namespace prefstore {
namespace {

// Captures records for one test and puts the defaults back afterwards.
class CapturedLog {
 public:
  CapturedLog() {
    set_log_sink([this](const LogRecord& r) {
      std::lock_guard lock(m_mutex);
      m_records.push_back(r);
    });
  }
  ~CapturedLog() {
    set_log_sink({});
    set_log_level(LogLevel::off);
  }
  std::vector<LogRecord> records() {
    std::lock_guard lock(m_mutex);
    return m_records;
  }

 private:
  std::mutex m_mutex;
  std::vector<LogRecord> m_records;
};

TEST(Logging, TheLibraryIsQuietByDefault) {
  EXPECT_EQ(log_level(), LogLevel::off);
  CapturedLog captured;
  log(LogLevel::error, "something_failed", {{"key", "value"}});
  EXPECT_TRUE(captured.records().empty());
  EXPECT_FALSE(log_enabled(LogLevel::error));
}

TEST(Logging, RecordsBelowTheLevelAreDropped) {
  CapturedLog captured;
  set_log_level(LogLevel::warn);
  log(LogLevel::debug, "dropped");
  log(LogLevel::info, "dropped");
  log(LogLevel::warn, "kept_warn", {{"attempt", "2"}});
  log(LogLevel::error, "kept_error");
  log(LogLevel::off, "never");
  const auto records = captured.records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].event, "kept_warn");
  EXPECT_EQ(records[0].level, LogLevel::warn);
  ASSERT_EQ(records[0].fields.size(), 1u);
  EXPECT_EQ(records[0].fields[0].first, "attempt");
  EXPECT_EQ(records[1].event, "kept_error");
}

TEST(Logging, LogfmtQuotesAndEscapesValues) {
  LogRecord r;
  r.level = LogLevel::warn;
  r.time = std::chrono::system_clock::time_point(std::chrono::microseconds(1764500000123456));
  r.event = "retry";
  r.fields = {{"operation", "set"},
              {"message", "lost \"connection\"\nagain"},
              {"empty", ""},
              {"eq", "a=b"}};
  EXPECT_EQ(format_logfmt(r),
            "time=2025-11-30T10:53:20.123456Z level=warn event=retry operation=set "
            "message=\"lost \\\"connection\\\"\\nagain\" empty=\"\" eq=\"a=b\"");
}

TEST(Logging, LevelsParseByName) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::debug);
  EXPECT_EQ(parse_log_level("warning"), LogLevel::warn);
  EXPECT_EQ(parse_log_level("off"), LogLevel::off);
  EXPECT_FALSE(parse_log_level("loud").has_value());
  EXPECT_STREQ(to_string(LogLevel::error), "error");
}

TEST(Logging, AThrowingSinkNeverBreaksTheCaller) {
  set_log_sink([](const LogRecord&) { throw std::runtime_error("sink down"); });
  set_log_level(LogLevel::trace);
  EXPECT_NO_THROW(log(LogLevel::error, "x"));
  set_log_sink({});
  set_log_level(LogLevel::off);
}

}  // namespace
}  // namespace prefstore
