#include "prefstore/storage/local_server.hpp"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "error_translation.hpp"
#include "file_lock.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"
#include "process.hpp"

namespace fs = std::filesystem;

namespace prefstore::storage {
namespace {

// Stable across builds and runs (unlike std::hash): names folders derived from a path.
std::string fnv1a_hex(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  static const char* digits = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 0xF];
  return out;
}

std::string tail_of_file(const fs::path& file, std::size_t max_bytes = 2000) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "(no server log at " + file.string() + ")";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
  return s;
}

std::string conf_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

struct UserIds {
  uid_t uid;
  gid_t gid;
};

UserIds lookup_user(const std::string& name) {
  struct passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) {
    throw UsageError("the local PostgreSQL server cannot run as root, and the unprivileged user '" +
                     name +
                     "' to run it does not exist: install postgresql-15 (it creates 'postgres') "
                     "or set PREFSTORE_LOCAL_USER to an existing user");
  }
  return {pw->pw_uid, pw->pw_gid};
}

void make_dir_for(const fs::path& dir, const std::string& owner, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw UnavailableError("cannot create folder " + dir.string() + ": " + ec.message());
  if (!owner.empty()) {
    const UserIds ids = lookup_user(owner);
    if (::chown(dir.c_str(), ids.uid, ids.gid) != 0) {
      throw UnavailableError("cannot give folder " + dir.string() + " to user " + owner + ": " +
                             std::strerror(errno));
    }
  }
  ::chmod(dir.c_str(), mode);
}

// Copies a file the server must read (a TLS certificate or key) to `to`, owned by `owner` (when
// not empty) with `mode`: PostgreSQL refuses a key file that others can read.
void install_file_for(const fs::path& from, const fs::path& to, const std::string& owner,
                      mode_t mode) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    throw UnavailableError("cannot copy " + from.string() + " to " + to.string() + ": " +
                           ec.message());
  }
  if (::chmod(to.c_str(), mode) != 0) {
    throw UnavailableError("cannot set the mode of " + to.string() + ": " + std::strerror(errno));
  }
  if (!owner.empty()) {
    const UserIds ids = lookup_user(owner);
    if (::chown(to.c_str(), ids.uid, ids.gid) != 0) {
      throw UnavailableError("cannot give " + to.string() + " to user " + owner + ": " +
                             std::strerror(errno));
    }
  }
}

void check_ok(const detail::ProcessResult& r, const std::vector<std::string>& argv,
              const std::string& step, const fs::path& log) {
  if (r.exit_code == 0) return;
  std::string msg = "local PostgreSQL server: " + step + " failed (" +
                    detail::describe_command(argv) + " exited with " + std::to_string(r.exit_code) +
                    "): " + r.output;
  if (!log.empty()) msg += "\nserver log (" + log.string() + "):\n" + tail_of_file(log);
  throw UnavailableError(msg);
}

}  // namespace

LocalServerOptions local_server_options_from_environment() {
  LocalServerOptions o;
  if (const char* v = std::getenv("PREFSTORE_HOME"); v != nullptr && *v != '\0') o.home = v;
  if (const char* v = std::getenv("PREFSTORE_LOCAL_USER"); v != nullptr && *v != '\0') {
    o.run_as_user = v;
  }
  if (const char* v = std::getenv("PREFSTORE_PG_BINDIR"); v != nullptr && *v != '\0') o.bin_dir = v;
  return o;
}

LocalServer::LocalServer(LocalServerOptions options) : m_options(std::move(options)) {
  if (m_options.home.empty()) throw UsageError("LocalServerOptions::home must not be empty");
  if (m_options.ssl_cert_file.empty() != m_options.ssl_key_file.empty()) {
    throw UsageError(
        "LocalServerOptions::ssl_cert_file and ssl_key_file go together: give both or neither");
  }
  if (!m_options.ssl_ca_file.empty() && m_options.ssl_cert_file.empty()) {
    throw UsageError("LocalServerOptions::ssl_ca_file needs ssl_cert_file and ssl_key_file");
  }
  m_options.home = fs::absolute(m_options.home).lexically_normal();
}

std::string LocalServer::run_as() const {
  return ::geteuid() == 0 ? m_options.run_as_user : "";
}

fs::path LocalServer::cluster_dir() const {
  const fs::path link = m_options.home / "cluster";
  std::error_code ec;
  if (fs::is_symlink(link, ec)) return fs::read_symlink(link, ec);
  return link;
}

fs::path LocalServer::socket_dir() const {
  const fs::path preferred = cluster_dir() / "run";
  // A unix socket path must fit in sockaddr_un (107 bytes), ".s.PGSQL.NNNNN" included.
  if (preferred.string().size() + 16 < 100) return preferred;
  return fs::path("/tmp") / ("prefstore-" + fnv1a_hex(cluster_dir().string()));
}

fs::path LocalServer::choose_cluster_dir() const {
  const fs::path in_home = m_options.home / "cluster";
  const std::string user = run_as();
  if (user.empty()) return in_home;
  // Can the unprivileged user enter the home folder (every parent must be searchable)?
  const auto probe = detail::run_process({"test", "-x", m_options.home.string()}, user);
  if (probe.exit_code == 0) return in_home;
  return fs::path("/var/tmp/prefstore") / fnv1a_hex(m_options.home.string());
}

bool LocalServer::initialized() const {
  std::error_code ec;
  return fs::exists(data_dir() / "PG_VERSION", ec);
}

long LocalServer::postmaster_pid() const {
  std::ifstream in(data_dir() / "postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) return pid;
  return 0;
}

bool LocalServer::running() const {
  return initialized() && postmaster_pid() != 0;
}

std::string LocalServer::url(const std::string& database) const {
  return "host=" + quote_conninfo_value(socket_dir().string()) +
         " port=" + std::to_string(m_options.port) +
         " dbname=" + quote_conninfo_value(database.empty() ? m_options.database : database) +
         " user=" + quote_conninfo_value(m_options.superuser);
}

void LocalServer::initialize() {
  const std::string user = run_as();
  if (!user.empty()) lookup_user(user);  // fail early with a clear message
  const fs::path dir = choose_cluster_dir();
  const fs::path link = m_options.home / "cluster";
  if (dir != link) {
    make_dir_for(dir.parent_path(), "", 01777);
    std::error_code ec;
    fs::remove(link, ec);
    fs::create_directory_symlink(dir, link, ec);
    if (ec)
      throw UnavailableError("cannot link " + link.string() + " to " + dir.string() + ": " +
                             ec.message());
  }
  make_dir_for(dir, user, 0700);
  const fs::path data = dir / "data";

  std::vector<std::string> argv = {(m_options.bin_dir / "initdb").string(),
                                   "-D",
                                   data.string(),
                                   "-U",
                                   m_options.superuser,
                                   "--auth-local=trust",
                                   "--auth-host=scram-sha-256",
                                   "-E",
                                   "UTF8",
                                   "--no-locale"};
  if (!m_options.durable) argv.push_back("--no-sync");
  check_ok(detail::run_process(argv, user), argv, "initdb", {});

  std::ofstream conf(data / "postgresql.conf", std::ios::app);
  conf << "\n# --- written by prefstore's LocalServer ---\n"
       << "listen_addresses = " << conf_quote(m_options.listen_tcp ? "127.0.0.1" : "") << "\n"
       << "port = " << m_options.port << "\n"
       << "unix_socket_directories = " << conf_quote(socket_dir().string()) << "\n"
       << "unix_socket_permissions = 0700\n";
  if (!m_options.durable) {
    conf << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
  }
  if (!m_options.ssl_cert_file.empty()) {
    // Copies in the cluster's private folder, readable by the server's user only.
    install_file_for(m_options.ssl_cert_file, data / "server.crt", user, 0644);
    install_file_for(m_options.ssl_key_file, data / "server.key", user, 0600);
    conf << "ssl = on\n"
         << "ssl_cert_file = " << conf_quote((data / "server.crt").string()) << "\n"
         << "ssl_key_file = " << conf_quote((data / "server.key").string()) << "\n";
    if (!m_options.ssl_ca_file.empty()) {
      install_file_for(m_options.ssl_ca_file, data / "root.crt", user, 0644);
      conf << "ssl_ca_file = " << conf_quote((data / "root.crt").string()) << "\n";
    }
  }
  for (const auto& [key, value] : m_options.settings)
    conf << key << " = " << conf_quote(value) << "\n";
  if (!conf) throw UnavailableError("cannot write " + (data / "postgresql.conf").string());

  if (!m_options.hba_lines.empty()) {
    const fs::path hba = data / "pg_hba.conf";
    std::string initdb_lines;
    {
      std::ifstream in(hba, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      initdb_lines = ss.str();
    }
    std::ofstream out(hba, std::ios::binary | std::ios::trunc);
    out << "# --- written by prefstore's LocalServer (first match wins) ---\n";
    for (const auto& line : m_options.hba_lines) out << line << "\n";
    out << "# --- initdb's lines ---\n" << initdb_lines;
    if (!out) throw UnavailableError("cannot write " + hba.string());
  }
}

void LocalServer::start() {
  make_dir_for(m_options.home, "", 0755);
  detail::FileLock lock(m_options.home / "lock");
  if (!initialized()) initialize();
  if (postmaster_pid() == 0) {
    const std::string user = run_as();
    make_dir_for(socket_dir(), user, 0700);
    std::vector<std::string> argv = {(m_options.bin_dir / "pg_ctl").string(),
                                     "-D",
                                     data_dir().string(),
                                     "-l",
                                     log_file().string(),
                                     "-w",
                                     "-t",
                                     "60",
                                     "start"};
    check_ok(detail::run_process(argv, user), argv, "start", log_file());
  }
  create_database();
}

void LocalServer::stop(StopMode mode) {
  if (!running()) return;
  const char* m = mode == StopMode::smart ? "smart" : mode == StopMode::fast ? "fast" : "immediate";
  std::vector<std::string> argv = {(m_options.bin_dir / "pg_ctl").string(),
                                   "-D",
                                   data_dir().string(),
                                   "-m",
                                   m,
                                   "-w",
                                   "-t",
                                   "60",
                                   "stop"};
  check_ok(detail::run_process(argv, run_as()), argv, "stop", log_file());
}

void LocalServer::create_database() {
  try {
    pqxx::connection conn(url("postgres"));
    pqxx::nontransaction tx(conn);
    const auto r =
        tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", m_options.database);
    if (r.empty()) tx.exec("CREATE DATABASE " + tx.quote_name(m_options.database));
  } catch (...) {
    detail::rethrow_translated("creating database " + m_options.database + " on the local server");
  }
}

}  // namespace prefstore::storage
