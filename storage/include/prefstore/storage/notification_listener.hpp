// NotificationListener: waits for PostgreSQL NOTIFYs on one channel, over a connection of its
// own. Notifications are hints: they are lost while the connection is down and do not pass
// PgBouncer in transaction mode (DESIGN pitfall 11), so callers always poll as well.
// Thread-safety: one listener belongs to one thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace prefstore::storage {

// The channel EventLog::append notifies at every commit that appended events (empty payload).
inline constexpr const char* kEventsChannel = "prefstore_events";

class NotificationListener {
 public:
  // Opens nothing yet. conninfo may hold a password; it is never shown.
  NotificationListener(std::string conninfo, std::string channel);
  ~NotificationListener();
  NotificationListener(const NotificationListener&) = delete;
  NotificationListener& operator=(const NotificationListener&) = delete;

  // Waits up to timeout; true when at least one notification arrived. Never throws: when the
  // connection cannot be opened or breaks, it waits out the timeout, returns false, and tries
  // again on the next call.
  bool wait(std::chrono::milliseconds timeout) noexcept;

  // True while the LISTEN connection is open.
  [[nodiscard]] bool connected() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace prefstore::storage
