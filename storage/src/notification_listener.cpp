#include "prefstore/storage/notification_listener.hpp"

#include <pqxx/pqxx>
#include <thread>

namespace prefstore::storage {
namespace {

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& conn, const std::string& channel, int& count)
      : pqxx::notification_receiver(conn, channel), m_count(count) {}
  void operator()(const std::string&, int) override { ++m_count; }

 private:
  int& m_count;
};

}  // namespace

struct NotificationListener::Impl {
  std::string conninfo;
  std::string channel;
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<Receiver> receiver;
  int count = 0;

  void close() noexcept {
    receiver.reset();
    conn.reset();
  }
  bool open() noexcept {
    try {
      conn = std::make_unique<pqxx::connection>(conninfo);
      receiver = std::make_unique<Receiver>(*conn, channel, count);
      conn->get_notifs();  // issues the LISTEN
      return true;
    } catch (...) {
      close();
      return false;
    }
  }
};

NotificationListener::NotificationListener(std::string conninfo, std::string channel)
    : m_impl(std::make_unique<Impl>()) {
  m_impl->conninfo = std::move(conninfo);
  m_impl->channel = std::move(channel);
}

NotificationListener::~NotificationListener() {
  m_impl->close();
}

bool NotificationListener::connected() const noexcept {
  return m_impl->conn && m_impl->conn->is_open();
}

bool NotificationListener::wait(std::chrono::milliseconds timeout) noexcept {
  if (!connected() && !m_impl->open()) {
    std::this_thread::sleep_for(timeout);
    return false;
  }
  m_impl->count = 0;
  try {
    if (m_impl->conn->get_notifs() == 0) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
      (void)m_impl->conn->await_notification(static_cast<long>(us / 1000000),
                                             static_cast<long>(us % 1000000));
    }
  } catch (...) {
    m_impl->close();
    return false;
  }
  return m_impl->count > 0;
}

}  // namespace prefstore::storage
