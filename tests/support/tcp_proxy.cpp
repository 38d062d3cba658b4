#include "tcp_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <vector>

namespace prefstore::testing {

using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint32_t kProtocol3 = 196608;  // StartupMessage protocol 3.0
constexpr auto kDrainLimit = std::chrono::seconds(5);

std::uint32_t be32(const char* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("TcpProxy: " + what + ": " + std::strerror(errno));
}

// Sends all of data (blocking, bounded by the socket's send timeout); false when the peer is
// gone.
bool send_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t sent = ::send(fd, data, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data += sent;
    n -= static_cast<std::size_t>(sent);
  }
  return true;
}

void set_send_timeout(int fd) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// True for a simple query that ends a transaction by committing it.
bool is_commit_text(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  while (!text.empty() &&
         (std::isspace(static_cast<unsigned char>(text.back())) != 0 || text.back() == ';')) {
    text.pop_back();
  }
  std::size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start])) != 0) ++start;
  text.erase(0, start);
  return text == "COMMIT" || text == "END" || text == "COMMIT WORK" ||
         text == "COMMIT TRANSACTION" || text == "END WORK" || text == "END TRANSACTION";
}

// Takes one unit from an armed counter; false when it is at 0.
bool take(std::atomic<int>& armed) {
  int n = armed.load();
  while (n > 0) {
    if (armed.compare_exchange_weak(n, n - 1)) return true;
  }
  return false;
}

}  // namespace

struct TcpProxy::State {
  // One proxied connection. Sockets are closed only by the forwarding thread.
  struct Conn {
    int client = -1;
    int server = -1;
    bool startup_done = false;  // the StartupMessage went by: typed messages follow
    bool parse_broken = false;  // framing lost: stop looking for COMMITs on this connection
    std::string pending;        // bytes of an incomplete client message
    bool cut = false;           // shut down by a control: closed when next seen
    bool quiet = false;         // server side ended quietly: the client's next bytes end it
    bool draining = false;      // client side cut after a COMMIT: waiting for the server's answer
    Clock::time_point drain_until{};
  };

  mutable std::mutex mutex;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  int upstream_port = 0;
  bool stopping = false;
  std::vector<std::unique_ptr<Conn>> conns;
  double probability = 0.0;
  std::chrono::milliseconds interval{100};
  Clock::time_point next_random{};
  std::mt19937_64 random{std::random_device{}()};
  std::string statement_name;
  TcpProxyCounters counters;

  // Shuts both sockets down (the forwarding thread closes them when it sees the end).
  static void shut(Conn& c) {
    if (c.client >= 0) ::shutdown(c.client, SHUT_RDWR);
    if (c.server >= 0) ::shutdown(c.server, SHUT_RDWR);
    c.cut = true;
  }

  static void close_conn(Conn& c) {
    if (c.client >= 0) ::close(c.client);
    if (c.server >= 0) ::close(c.server);
    c.client = c.server = -1;
  }

  void poke() const {
    const char b = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake[1], &b, 1);
  }
};

TcpProxy::TcpProxy(int upstream_port) : m_state(std::make_unique<State>()) {
  State& s = *m_state;
  s.upstream_port = upstream_port;
  if (::pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) != 0) fail("pipe");
  s.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.listen_fd < 0) fail("socket");
  int one = 1;
  ::setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(s.listen_fd, 128) != 0) fail("listen");
  socklen_t len = sizeof addr;
  if (::getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fail("getsockname");
  }
  m_port = ntohs(addr.sin_port);
  m_thread = std::thread([this] { loop(); });
}

TcpProxy::~TcpProxy() {
  stop();
}

void TcpProxy::stop() {
  State& s = *m_state;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping && !m_thread.joinable()) return;
    s.stopping = true;
    s.poke();
  }
  if (m_thread.joinable()) m_thread.join();
  std::lock_guard lock(s.mutex);
  for (auto& c : s.conns) State::close_conn(*c);
  s.conns.clear();
  if (s.listen_fd >= 0) ::close(s.listen_fd);
  s.listen_fd = -1;
  for (int& fd : s.wake) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

std::size_t TcpProxy::cut_all() {
  State& s = *m_state;
  std::lock_guard lock(s.mutex);
  std::size_t n = 0;
  for (auto& c : s.conns) {
    if (c->cut || c->draining) continue;
    State::shut(*c);
    ++n;
  }
  s.counters.cut_all += n;
  s.poke();
  return n;
}

std::size_t TcpProxy::end_sessions_quietly() {
  State& s = *m_state;
  std::lock_guard lock(s.mutex);
  std::size_t n = 0;
  for (auto& c : s.conns) {
    if (c->cut || c->draining || c->quiet || c->server < 0) continue;
    ::shutdown(c->server, SHUT_RDWR);
    c->quiet = true;
    ++n;
  }
  s.counters.quiet_ends += n;
  s.poke();
  return n;
}

void TcpProxy::set_random_cuts(double probability, std::chrono::milliseconds interval) {
  State& s = *m_state;
  std::lock_guard lock(s.mutex);
  s.probability = std::clamp(probability, 0.0, 1.0);
  s.interval = std::max(interval, std::chrono::milliseconds(1));
  s.next_random = Clock::now() + s.interval;
  s.poke();
}

void TcpProxy::arm_commit_cuts(int count) {
  m_commit_armed = std::max(0, count);
}

void TcpProxy::arm_statement_cuts(const std::string& statement_name, int count) {
  {
    std::lock_guard lock(m_state->mutex);
    m_state->statement_name = statement_name;
  }
  m_statement_armed = std::max(0, count);
}

TcpProxyCounters TcpProxy::counters() const {
  std::lock_guard lock(m_state->mutex);
  TcpProxyCounters c = m_state->counters;
  c.open = m_state->conns.size();
  return c;
}

void TcpProxy::loop() {
  State& s = *m_state;
  std::vector<pollfd> fds;
  std::vector<std::pair<State::Conn*, bool>> owners;  // per pollfd from index 2: conn, is_client
  char buf[65536];
  for (;;) {
    int timeout_ms = 200;
    {
      std::lock_guard lock(s.mutex);
      if (s.stopping) return;
      fds.clear();
      owners.clear();
      fds.push_back({s.listen_fd, POLLIN, 0});
      fds.push_back({s.wake[0], POLLIN, 0});
      const auto now = Clock::now();
      for (auto& c : s.conns) {
        if (c->client >= 0 && !c->draining) {
          fds.push_back({c->client, POLLIN, 0});
          owners.emplace_back(c.get(), true);
        }
        if (c->server >= 0) {
          fds.push_back({c->server, POLLIN, 0});
          owners.emplace_back(c.get(), false);
        }
        if (c->draining) {
          const auto left =
              std::chrono::duration_cast<std::chrono::milliseconds>(c->drain_until - now).count();
          timeout_ms = std::clamp(static_cast<int>(left), 0, timeout_ms);
        }
      }
      if (s.probability > 0.0) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(s.next_random - now).count();
        timeout_ms = std::clamp(static_cast<int>(left), 0, timeout_ms);
      }
    }
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) return;

    std::lock_guard lock(s.mutex);
    if (s.stopping) return;
    const auto now = Clock::now();
    if ((fds[1].revents & POLLIN) != 0) {
      while (::read(s.wake[0], buf, sizeof buf) > 0) {
      }
    }

    // Connections are cut, read and closed here only; a control may shut sockets meanwhile.
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto [c, is_client] = owners[i - 2];
      const int fd = is_client ? c->client : c->server;
      if (fd < 0) continue;  // closed earlier in this round
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (c->quiet && !is_client) {
        // The server side ended quietly: close it, keep the client waiting in silence.
        if (n <= 0) {
          ::close(c->server);
          c->server = -1;
        }
        continue;
      }
      if (n <= 0 || (c->quiet && is_client)) {
        State::close_conn(*c);
        continue;
      }
      if (!is_client) {
        if (c->draining) {
          // The server answered the COMMIT: it has landed. The answer is dropped.
          State::close_conn(*c);
        } else if (!send_all(c->client, buf, static_cast<std::size_t>(n))) {
          State::close_conn(*c);
        }
        continue;
      }
      // Client to server: look for COMMIT / armed Bind messages, then forward the whole chunk.
      bool cut_commit = false;
      bool cut_statement = false;
      if (!c->parse_broken) {
        c->pending.append(buf, static_cast<std::size_t>(n));
        std::size_t at = 0;
        for (;;) {
          const std::size_t left = c->pending.size() - at;
          const char* p = c->pending.data() + at;
          if (!c->startup_done) {
            if (left < 4) break;
            const std::uint32_t len = be32(p);
            if (len < 4) {
              c->parse_broken = true;
              break;
            }
            if (left < len) break;
            if (len >= 8 && be32(p + 4) == kProtocol3) c->startup_done = true;
            at += len;
            continue;
          }
          if (left < 5) break;
          const char type = p[0];
          const std::uint32_t len = be32(p + 1);
          if (len < 4) {
            c->parse_broken = true;
            break;
          }
          if (left < 1 + static_cast<std::size_t>(len)) break;
          const std::string body(p + 5, len - 4);
          if (type == 'Q' && is_commit_text(body.substr(0, body.find('\0')))) {
            ++s.counters.commits_seen;
            if (take(m_commit_armed)) cut_commit = true;
          } else if (type == 'B' && !s.statement_name.empty()) {
            const std::size_t portal_end = body.find('\0');
            if (portal_end != std::string::npos) {
              const std::string name =
                  body.substr(portal_end + 1, body.find('\0', portal_end + 1) - portal_end - 1);
              if (name.find(s.statement_name) != std::string::npos && take(m_statement_armed)) {
                cut_statement = true;
              }
            }
          }
          at += 1 + static_cast<std::size_t>(len);
        }
        c->pending.erase(0, at);
        if (c->parse_broken) c->pending.clear();
      }
      if (!send_all(c->server, buf, static_cast<std::size_t>(n))) {
        State::close_conn(*c);
        continue;
      }
      if (cut_commit || cut_statement) {
        ::shutdown(c->client, SHUT_RDWR);
        ::close(c->client);
        c->client = -1;
        c->draining = true;
        c->drain_until = now + kDrainLimit;
        ++(cut_commit ? s.counters.commit_cuts : s.counters.statement_cuts);
      }
    }

    for (auto& c : s.conns) {
      if (c->draining && c->server >= 0 && now >= c->drain_until) State::close_conn(*c);
    }

    if (s.probability > 0.0 && now >= s.next_random) {
      std::uniform_real_distribution<double> draw(0.0, 1.0);
      for (auto& c : s.conns) {
        if (c->cut || c->draining || c->quiet || c->client < 0) continue;
        if (draw(s.random) < s.probability) {
          State::shut(*c);
          ++s.counters.random_cuts;
        }
      }
      s.next_random = now + s.interval;
    }

    std::erase_if(s.conns, [](const auto& c) { return c->client < 0 && c->server < 0; });

    if ((fds[0].revents & POLLIN) != 0) {
      const int client = ::accept4(s.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        ++s.counters.accepted;
        const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<std::uint16_t>(s.upstream_port));
        if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          ++s.counters.upstream_failed;
          if (server >= 0) ::close(server);
          ::close(client);
        } else {
          set_send_timeout(client);
          set_send_timeout(server);
          auto c = std::make_unique<State::Conn>();
          c->client = client;
          c->server = server;
          s.conns.push_back(std::move(c));
        }
      }
    }
  }
}

}  // namespace prefstore::testing
