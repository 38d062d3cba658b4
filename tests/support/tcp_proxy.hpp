// Test support: a TCP proxy in front of a PostgreSQL server, for fault injection.
//
// It listens on 127.0.0.1 only (an ephemeral port), forwards every accepted connection to the
// server's 127.0.0.1 port, and cuts connections on request: all of them now, at random moments,
// or right after a client's COMMIT reached the server and before the server's answer reaches the
// client (the commit's outcome is then unknown to the client, and the commit has landed: the
// proxy waits for the server's answer before closing the server side, and drops it). It can also
// end the server side of every session quietly, leaving the client side open and silent until
// the client next sends (a session ended whose notice has not reached the client yet).
//
// COMMIT is recognised in the PostgreSQL frontend protocol (v3) stream from client to server as
// a simple Query message ('Q') whose text is COMMIT or END (any case, optional ';'), which is how
// libpqxx 6.4 ends a transaction. A statement cut does the same after an extended-protocol Bind
// message ('B') naming a given prepared statement: that covers autocommit statements, whose
// implicit transaction commits at the Sync that follows in the same write.
//
// One thread runs poll() over every socket; the controls may be called from any thread and take
// effect at once (a cut is a shutdown() of both sockets). Writes to a peer are blocking (test
// traffic is small). Thread-safety: every member function may be called from any thread at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace prefstore::testing {

// Counters of a TcpProxy. A consistent snapshot.
struct TcpProxyCounters {
  std::uint64_t accepted = 0;         // client connections accepted
  std::uint64_t upstream_failed = 0;  // accepted connections whose server side could not connect
  std::uint64_t cut_all = 0;          // connections cut by cut_all()
  std::uint64_t random_cuts = 0;      // connections cut by the random-cut schedule
  std::uint64_t commit_cuts = 0;      // connections cut right after a COMMIT reached the server
  std::uint64_t statement_cuts = 0;   // connections cut right after an armed Bind reached it
  std::uint64_t quiet_ends = 0;       // connections ended by end_sessions_quietly()
  std::uint64_t commits_seen = 0;     // COMMIT messages seen (cut or not)
  std::uint64_t open = 0;             // connection pairs open now
  // Every cut made, whatever its kind.
  [[nodiscard]] std::uint64_t cuts() const noexcept {
    return cut_all + random_cuts + commit_cuts + statement_cuts + quiet_ends;
  }
};

class TcpProxy {
 public:
  // Listens on 127.0.0.1:<ephemeral> and starts the forwarding thread; connections go to
  // 127.0.0.1:upstream_port. Throws std::runtime_error (with errno's text) when the socket
  // cannot be set up.
  explicit TcpProxy(int upstream_port);
  // Stops the thread and closes every socket (stop()).
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // The port the proxy listens on (127.0.0.1).
  [[nodiscard]] int port() const noexcept { return m_port; }

  // Cuts every open connection now (both sides); returns how many were cut. New connections are
  // still accepted.
  std::size_t cut_all();

  // Ends every open connection's server side now but keeps its client side open and silent,
  // like a session the server ended whose notice has not reached the client yet: the client
  // sees nothing until it sends something, and then loses the connection (nothing is
  // forwarded). Returns how many connections it ended.
  std::size_t end_sessions_quietly();

  // From now on, every `interval` each open connection is cut with `probability` (0 to 1), at
  // whatever point of its traffic it is. probability 0 turns random cuts off (the default).
  void set_random_cuts(double probability, std::chrono::milliseconds interval);

  // The next `count` COMMITs (over all connections) are forwarded to the server, then their
  // connection is cut on the client side at once; the server side is closed once the server
  // has answered (or after 5 s). count 0 disarms. Replaces the previous count.
  void arm_commit_cuts(int count);

  // The next `count` Bind messages naming a prepared statement whose name contains
  // `statement_name` are cut like a COMMIT (see arm_commit_cuts), after the rest of the
  // client's write (Execute, Sync) has been forwarded too.
  void arm_statement_cuts(const std::string& statement_name, int count);

  // COMMIT / statement cuts still armed.
  [[nodiscard]] int armed_commit_cuts() const noexcept { return m_commit_armed.load(); }
  [[nodiscard]] int armed_statement_cuts() const noexcept { return m_statement_armed.load(); }

  [[nodiscard]] TcpProxyCounters counters() const;

  // Stops accepting and forwarding and closes every socket; idempotent.
  void stop();

 private:
  struct State;
  void loop();

  int m_port = 0;
  std::atomic<int> m_commit_armed{0};
  std::atomic<int> m_statement_armed{0};
  std::unique_ptr<State> m_state;
  std::thread m_thread;
};

}  // namespace prefstore::testing
