#include "prefstore/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <ctime>
#include <memory>
#include <mutex>

namespace prefstore {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::off)};

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

std::shared_ptr<const std::function<void(const LogRecord&)>>& custom_sink() {
  static std::shared_ptr<const std::function<void(const LogRecord&)>> sink;
  return sink;
}

// The default sink: a thread-safe spdlog logger on stderr that prints the line as given.
spdlog::logger& stderr_logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("prefstore",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (const char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  for (const char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[(c >> 4) & 0xf];
          out += hex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string utc_time(std::chrono::system_clock::time_point t) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(micros % 1000000));
  return buf;
}

}  // namespace

const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace:
      return "trace";
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
    case LogLevel::off:
      return "off";
  }
  return "off";
}

std::optional<LogLevel> parse_log_level(std::string_view text) noexcept {
  for (const LogLevel l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn,
                           LogLevel::error, LogLevel::off}) {
    if (text == to_string(l)) return l;
  }
  if (text == "warning") return LogLevel::warn;
  return std::nullopt;
}

std::string format_logfmt(const LogRecord& record) {
  std::string out =
      "time=" + utc_time(record.time) + " level=" + to_string(record.level) + " event=";
  append_value(out, record.event);
  for (const auto& [key, value] : record.fields) {
    out += ' ';
    out += key;
    out += '=';
    append_value(out, value);
  }
  return out;
}

void set_log_level(LogLevel level) noexcept {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() noexcept {
  return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed));
}

bool log_enabled(LogLevel level) noexcept {
  return level != LogLevel::off &&
         static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void set_log_sink(std::function<void(const LogRecord&)> sink) {
  std::lock_guard lock(sink_mutex());
  custom_sink() =
      sink ? std::make_shared<const std::function<void(const LogRecord&)>>(std::move(sink))
           : nullptr;
}

void log(LogLevel level, std::string_view event,
         std::vector<std::pair<std::string, std::string>> fields) noexcept {
  if (!log_enabled(level)) return;
  try {
    LogRecord record{level, std::chrono::system_clock::now(), std::string(event),
                     std::move(fields)};
    std::shared_ptr<const std::function<void(const LogRecord&)>> sink;
    {
      std::lock_guard lock(sink_mutex());
      sink = custom_sink();
    }
    if (sink) {
      (*sink)(record);
    } else {
      stderr_logger().log(spdlog::level::info, format_logfmt(record));
    }
  } catch (...) {
    // Logging never breaks the caller.
  }
}

}  // namespace prefstore
