// LocalServer: prefstore's own PostgreSQL 15 cluster, the default when no database is configured.
//
// The cluster lives under a home folder (`.prefstore/` by default), listens on a unix socket
// only, and is created with initdb on first use. Started once, it is reused by every later
// process until stopped. Run as root, the server runs as an unprivileged user (PostgreSQL
// refuses root); when that user cannot reach the home folder (a checkout under /root), the
// cluster is placed under /var/tmp/prefstore/ and `home/cluster` links to it.
// Thread-safety: one object per thread; separate processes coordinate through a lock file.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace prefstore::storage {

// Settings of a local cluster. The defaults suit a developer machine.
struct LocalServerOptions {
  // Folder holding the lock file and the cluster (or a link to it). Default: $PREFSTORE_HOME, else
  // `.prefstore` in the current directory.
  std::filesystem::path home = ".prefstore";
  // OS user that runs the server when this process is root. Ignored otherwise. Default:
  // $PREFSTORE_LOCAL_USER, else `postgres` (created by Debian's postgresql package).
  std::string run_as_user = "postgres";
  // Folder of initdb, pg_ctl and postgres. Default: $PREFSTORE_PG_BINDIR, else Debian's
  // /usr/lib/postgresql/15/bin.
  std::filesystem::path bin_dir = "/usr/lib/postgresql/15/bin";
  // Port number; with a unix socket it only names the socket file (.s.PGSQL.<port>).
  int port = 5432;
  // Also listen on 127.0.0.1:port (TCP). Off by default: the socket is enough for one machine.
  bool listen_tcp = false;
  // False for throwaway test clusters: fsync, synchronous_commit and full_page_writes off.
  // Faster, but a machine crash can corrupt the cluster, and with synchronous_commit off even a
  // kill -9 of the server loses commits acknowledged just before it (docs/operations.md, "Faults
  // tested"). Default true (safe).
  bool durable = true;
  // Database created on first start, used by url() by default.
  std::string database = "prefstore";
  // Superuser created by initdb; the local socket trusts it (the socket folder is private).
  std::string superuser = "postgres";
  // Extra postgresql.conf settings written at initdb time, e.g. {"max_connections", "200"}.
  std::vector<std::pair<std::string, std::string>> settings;
  // TLS: the server's certificate chain (PEM). Default empty: no TLS. When set (with
  // ssl_key_file), initialization copies the files into the cluster folder, gives them to the
  // server's user (the key with mode 0600, as PostgreSQL requires) and sets ssl = on, so the
  // originals may lie anywhere the calling process can read. Only useful with listen_tcp.
  std::filesystem::path ssl_cert_file;
  // TLS: the private key of ssl_cert_file (PEM, unencrypted). Default empty. Required with
  // ssl_cert_file.
  std::filesystem::path ssl_key_file;
  // TLS: CA certificates (PEM) the server trusts for client certificates (pg_hba `cert` auth or
  // clientcert=verify-full). Default empty: client certificates are not requested.
  std::filesystem::path ssl_ca_file;
  // Lines written at the top of pg_hba.conf at initialization, before initdb's own ("local all
  // all trust", "host all all 127.0.0.1/32 scram-sha-256", ...); the first matching line wins.
  // E.g. {"hostnossl all all 127.0.0.1/32 reject", "hostssl all all 127.0.0.1/32
  // scram-sha-256"} to require TLS over TCP. Default none: initdb's lines only.
  std::vector<std::string> hba_lines;
};

// Reads PREFSTORE_HOME, PREFSTORE_LOCAL_USER and PREFSTORE_PG_BINDIR over the defaults above.
[[nodiscard]] LocalServerOptions local_server_options_from_environment();

enum class StopMode {
  smart,      // wait for clients to disconnect
  fast,       // disconnect clients, shut down cleanly (the default)
  immediate,  // abort without a checkpoint, like a crash (recovery runs at next start)
};

class LocalServer {
 public:
  // Requires: options.home is not empty. Creates nothing until start().
  explicit LocalServer(LocalServerOptions options);

  // Creates the cluster if it does not exist, starts it if it is not running, and creates the
  // database. Idempotent and safe when several processes call it at once (a lock file serialises
  // them). Throws UnavailableError naming the step and showing the server log's tail on failure,
  // UsageError when run as root and the run-as user does not exist.
  void start();

  // Stops the server if it runs; no-op otherwise. Throws UnavailableError if pg_ctl fails.
  void stop(StopMode mode = StopMode::fast);

  // True when the cluster exists and its postmaster is running.
  [[nodiscard]] bool running() const;

  // True when the cluster has been created (initdb ran).
  [[nodiscard]] bool initialized() const;

  // libpq connection string (key=value form) for the given database (default: options.database).
  [[nodiscard]] std::string url(const std::string& database = {}) const;

  // Folder holding the cluster: home/cluster, or the folder it links to.
  [[nodiscard]] std::filesystem::path cluster_dir() const;
  [[nodiscard]] std::filesystem::path data_dir() const { return cluster_dir() / "data"; }
  [[nodiscard]] std::filesystem::path socket_dir() const;
  [[nodiscard]] std::filesystem::path log_file() const { return cluster_dir() / "server.log"; }

  // Process id of the running postmaster, or 0.
  [[nodiscard]] long postmaster_pid() const;

  [[nodiscard]] const LocalServerOptions& options() const noexcept { return m_options; }

 private:
  void initialize();
  void create_database();
  [[nodiscard]] std::string run_as() const;
  [[nodiscard]] std::filesystem::path choose_cluster_dir() const;

  LocalServerOptions m_options;
};

}  // namespace prefstore::storage
