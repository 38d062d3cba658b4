// Logging: prefstore's structured log lines, quiet by default.
//
// Every layer logs through log() below: an event name and key=value fields, never free prose,
// so lines can be filtered and parsed (logfmt: `level=warn event=retry operation=set ...`).
// The library logs nothing until the application calls set_log_level(); the default sink
// writes to stderr through spdlog, set_log_sink() sends the records elsewhere (to the
// service's own logger). Messages hold no passwords: connection strings are always redacted
// before they reach a field (storage::redact_conninfo).
// Thread-safety: every function may be called from any thread at once.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prefstore {

enum class LogLevel { trace, debug, info, warn, error, off };

// "trace", "debug", "info", "warn", "error", "off".
[[nodiscard]] const char* to_string(LogLevel level) noexcept;
// The level named by text (the names above, also "warning"), or std::nullopt.
[[nodiscard]] std::optional<LogLevel> parse_log_level(std::string_view text) noexcept;

// One log line: an event name and its fields, in order.
struct LogRecord {
  LogLevel level = LogLevel::info;
  std::chrono::system_clock::time_point time;
  std::string event;                                        // e.g. "retry", "connection_failed"
  std::vector<std::pair<std::string, std::string>> fields;  // e.g. {"operation", "set"}
};

// The record as one logfmt line without a newline: `time=... level=warn event=retry k=v ...`;
// values with spaces, quotes or '=' are quoted and escaped.
[[nodiscard]] std::string format_logfmt(const LogRecord& record);

// Lines below level are dropped before they are built. Default LogLevel::off (quiet).
void set_log_level(LogLevel level) noexcept;
[[nodiscard]] LogLevel log_level() noexcept;
// True when a line of this level would be written: check it before building costly fields.
[[nodiscard]] bool log_enabled(LogLevel level) noexcept;

// Sends every record at or above the level to sink instead of stderr; an empty function
// restores the default (logfmt lines on stderr, through spdlog). The sink may be called from
// any thread at once and must not throw (exceptions are swallowed).
void set_log_sink(std::function<void(const LogRecord&)> sink);

// Writes a record when level is enabled. Never throws.
void log(LogLevel level, std::string_view event,
         std::vector<std::pair<std::string, std::string>> fields = {}) noexcept;

}  // namespace prefstore
