// Credentials and transport, end to end (issue 6, point 3). A cluster of its own serves TLS on
// 127.0.0.1 with certificates made at run time by the openssl tool, and refuses plaintext TCP.
// libpq, the Store and the CLI reach it with sslmode=verify-full; a wrong CA, a host name the
// certificate does not name, and plaintext are refused. Passwords come from the environment
// (PGPASSWORD, a password file, a service file) and never show in any output of a failing
// command, in `--help`, or in an exception a Store throws.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/storage/database_url.hpp"
#include "prefstore/storage/local_server.hpp"
#include "prefstore/store.hpp"
#include "scoped_environment.hpp"
#include "test_cluster.hpp"

namespace fs = std::filesystem;

namespace prefstore {
namespace {

using prefstore::testing::CommandResult;
using prefstore::testing::free_port;
using prefstore::testing::run_cli;
using prefstore::testing::run_shell;
using Env = std::map<std::string, std::string>;
using ScopedEnv = prefstore::testing::ScopedDatabaseEnvironment;

// The login role of the services, its password (distinctive: searched for in every output) and
// its database. The role logs in with scram-sha-256, over TLS only.
constexpr const char* kRole = "calendar_svc";
constexpr const char* kPassword = "Xq7-tls-Pa55word";
constexpr const char* kDatabase = "prefs";
// A role that logs in with a client certificate (CN=cert_svc) instead of a password.
constexpr const char* kCertRole = "cert_svc";
// A wrong password, as distinctive.
constexpr const char* kWrongPassword = "Wr0ng-Zebra-Pa55";
// The preference every test may set: an int from 5 to 480, default 30.
constexpr const char* kKey = "calendar.default_meeting_minutes";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs a shell command line; throws with its output when it fails.
void sh(const std::string& command_line) {
  const CommandResult r = run_shell(command_line);
  if (r.exit_code != 0) {
    throw std::runtime_error("`" + command_line + "` exited with " + std::to_string(r.exit_code) +
                             ": " + r.output);
  }
}

void write_file(const fs::path& file, const std::string& text, fs::perms mode) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + file.string());
  fs::permissions(file, mode);
}

// The certificates of one run, made with the openssl tool (EC P-256 keys: instant to generate).
struct Certificates {
  fs::path ca;             // the CA that signed the server's and the client's certificates
  fs::path other_ca;       // an unrelated CA
  fs::path server_cert;    // CN localhost, SAN DNS:localhost and IP:127.0.0.1, signed by `ca`
  fs::path server_key;     // its private key
  fs::path client_cert;    // CN cert_svc, signed by `ca`
  fs::path client_key;     // mode 0600, as libpq requires
  fs::path unrelated_key;  // a key that is not the client certificate's
};

Certificates make_certificates(const fs::path& dir) {
  const std::string cd = "cd '" + dir.string() + "' && ";
  const std::string new_key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string ca_ext =
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign";
  for (const std::string name : {"ca", "other_ca"}) {
    sh(cd + "openssl req -x509" + new_key + " -keyout " + name + ".key -out " + name +
       ".crt -days 2 -subj '/CN=prefstore " + name + "'" + ca_ext);
  }
  write_file(dir / "server.ext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
             "extendedKeyUsage=serverAuth\n",
             fs::perms::owner_read | fs::perms::owner_write);
  write_file(dir / "client.ext", "extendedKeyUsage=clientAuth\n",
             fs::perms::owner_read | fs::perms::owner_write);
  int serial = 100;
  for (const auto& [name, cn] : {std::pair<std::string, std::string>{"server", "localhost"},
                                 std::pair<std::string, std::string>{"client", kCertRole}}) {
    sh(cd + "openssl req -new" + new_key + " -keyout " + name + ".key -out " + name +
       ".csr -subj '/CN=" + cn + "'");
    sh(cd + "openssl x509 -req -in " + name + ".csr -CA ca.crt -CAkey ca.key -set_serial " +
       std::to_string(++serial) + " -days 2 -out " + name + ".crt -extfile " + name + ".ext");
  }
  fs::permissions(dir / "client.key", fs::perms::owner_read | fs::perms::owner_write);
  fs::permissions(dir / "other_ca.key", fs::perms::owner_read | fs::perms::owner_write);
  return {dir / "ca.crt",     dir / "other_ca.crt", dir / "server.crt",  dir / "server.key",
          dir / "client.crt", dir / "client.key",   dir / "other_ca.key"};
}

// The cluster of this test program: TLS on 127.0.0.1:port, plaintext TCP refused, the services'
// role with a password, the certificate role, and the database `prefs`, migrated, with kKey
// defined. Started once before the first test, removed after the last.
struct TlsCluster {
  fs::path dir;  // certificates, password and service files
  Certificates certs;
  int port = 0;
  int closed_port = 0;  // nothing listens there
  std::unique_ptr<storage::LocalServer> server;

  // Superuser connection over the unix socket (trusted, no password).
  [[nodiscard]] std::string admin_url(const std::string& database = kDatabase) const {
    return server->url(database);
  }

  // key=value connection string to the TLS port: verify-full against the right CA, no password.
  [[nodiscard]] std::string url(const std::string& extra = {}) const {
    return "host=localhost port=" + std::to_string(port) + " dbname=" + kDatabase +
           " user=" + kRole +
           " sslmode=verify-full sslrootcert=" + storage::quote_conninfo_value(certs.ca.string()) +
           (extra.empty() ? "" : " " + extra);
  }

  // The same in URI form; `query` is appended to sslmode and sslrootcert.
  [[nodiscard]] std::string uri(const std::string& user_info, const std::string& query = {},
                                const std::string& database = kDatabase) const {
    return "postgresql://" + user_info + "@localhost:" + std::to_string(port) + "/" + database +
           "?sslmode=verify-full&sslrootcert=" + certs.ca.string() +
           (query.empty() ? "" : "&" + query);
  }
};

TlsCluster* g_tls = nullptr;

void admin_exec(const std::string& database, const std::string& sql) {
  pqxx::connection conn(g_tls->admin_url(database));
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

class TlsClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    try {
      auto tls = std::make_unique<TlsCluster>();
      tls->dir = prefstore::testing::make_temp_dir("prefstore-tls");
      tls->certs = make_certificates(tls->dir);
      tls->port = free_port();
      tls->closed_port = free_port();
      storage::LocalServerOptions o = storage::local_server_options_from_environment();
      o.home = tls->dir / "home";
      o.durable = false;
      o.database = "postgres";
      o.port = tls->port;
      o.listen_tcp = true;
      o.ssl_cert_file = tls->certs.server_cert;
      o.ssl_key_file = tls->certs.server_key;
      o.ssl_ca_file = tls->certs.ca;
      o.hba_lines = {"hostnossl all all 127.0.0.1/32 reject",
                     std::string("hostssl all ") + kCertRole + " 127.0.0.1/32 cert",
                     "hostssl all all 127.0.0.1/32 scram-sha-256"};
      tls->server = std::make_unique<storage::LocalServer>(o);
      g_tls = tls.release();
      g_tls->server->start();

      pqxx::connection conn(g_tls->admin_url("postgres"));
      pqxx::nontransaction tx(conn);
      tx.exec(std::string("CREATE ROLE ") + kRole + " LOGIN PASSWORD " + tx.quote(kPassword));
      tx.exec(std::string("CREATE ROLE ") + kCertRole + " LOGIN");
      tx.exec(std::string("CREATE DATABASE ") + kDatabase + " OWNER " + kRole);
      // Migrated by the superuser (migrations create roles); the services use the owner role.
      StoreOptions so;
      so.database_url = g_tls->admin_url();
      Store store(so);
      PreferenceDefinition minutes;
      minutes.key = kKey;
      minutes.type = ValueType::integer;
      minutes.default_value = std::int64_t{30};
      minutes.constraints.min = 5;
      minutes.constraints.max = 480;
      (void)store.define(minutes, {"grace@ops", "transport-test", "setup", "", ""});
      admin_exec(kDatabase, std::string("GRANT prefstore_owner TO ") + kRole + ", " + kCertRole +
                                "; GRANT CREATE ON DATABASE " + kDatabase + " TO " + kCertRole);
    } catch (const std::exception& e) {
      GTEST_FAIL() << "cannot set up the TLS cluster: " << e.what();
    }
  }

  void TearDown() override {
    if (g_tls == nullptr) return;
    std::error_code ec;
    if (g_tls->server) {
      try {
        g_tls->server->stop(storage::StopMode::immediate);
      } catch (const std::exception& e) {
        std::cerr << "TLS cluster: stop failed: " << e.what() << std::endl;
      }
      fs::remove_all(g_tls->server->cluster_dir(), ec);
    }
    fs::remove_all(g_tls->dir, ec);
    delete g_tls;
    g_tls = nullptr;
  }
};

[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new TlsClusterEnvironment);

// What the server says about the session: "ssl=t version=TLSv1.3 user=calendar_svc".
std::string session_of(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  const auto r =
      tx.exec("SELECT ssl, version, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  return "ssl=" + r[0][0].as<std::string>() + " version=" + r[0][1].as<std::string>("-") +
         " user=" + r[0][2].as<std::string>();
}

// The message of the exception `connect` throws, or "(connected)".
template <class Connect>
std::string refusal_of(Connect&& connect) {
  try {
    connect();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(connected)";
}

// ---------------------------------------------------------------------------------------------
// TLS

TEST(Tls, VerifyFullConnectsAndTheServerReportsTls) {
  pqxx::connection conn(g_tls->url(std::string("password=") + kPassword));
  const std::string session = session_of(conn);
  EXPECT_TRUE(contains(session, "ssl=t version=TLSv1.")) << session;
  EXPECT_TRUE(contains(session, std::string("user=") + kRole)) << session;
}

TEST(Tls, StoreWorksOverVerifyFull) {
  ScopedEnv env;
  env.set("PGPASSWORD", kPassword);
  StoreOptions o;
  o.database_url = g_tls->uri(kRole);  // no password: it comes from PGPASSWORD
  o.pool.application_name = "transport-test-store";
  Store store(o);
  (void)store.set("ada", kKey, std::int64_t{45}, {"ada@example.com", "calendar-web", "", "", ""});
  EXPECT_EQ(store.get("ada", kKey), std::optional<Value>(std::int64_t{45}));
  EXPECT_FALSE(contains(store.redacted_database_url(), kPassword));

  // The store's pooled sessions, seen from the server: every one over TLS.
  pqxx::connection admin(g_tls->admin_url("postgres"));
  pqxx::nontransaction tx(admin);
  const auto r = tx.exec(
      "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a "
      "JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'transport-test-store'");
  EXPECT_GE(r[0][0].as<int>(), 1);
  EXPECT_EQ(r[0][0].as<int>(), r[0][1].as<int>()) << "a session of the store is not over TLS";
}

TEST(Tls, CliWorksOverVerifyFull) {
  const Env env = {{"PREFSTORE_DATABASE_URL", g_tls->url(std::string("password=") + kPassword)}};
  auto r = run_cli(std::string("set bob ") + kKey + " 50 --source transport-test", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli(std::string("get bob ") + kKey, env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "50\n");
  r = run_cli("migrate --status", env);  // prints the database it uses
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "sslmode=verify-full")) << r.output;
  EXPECT_TRUE(contains(r.output, "password=***")) << r.output;
  EXPECT_FALSE(contains(r.output, kPassword)) << r.output;
}

TEST(Tls, WrongCaIsRefusedNamingTheCertificateProblem) {
  const std::string url = "host=localhost port=" + std::to_string(g_tls->port) +
                          " dbname=" + kDatabase + " user=" + kRole + " password=" + kPassword +
                          " sslmode=verify-full sslrootcert=" + g_tls->certs.other_ca.string();
  const std::string libpq = refusal_of([&] { pqxx::connection conn(url); });
  EXPECT_TRUE(contains(libpq, "certificate verify failed")) << libpq;

  StoreOptions o;
  o.database_url = url;
  try {
    Store store(o);
    ADD_FAILURE() << "a store opened with the wrong CA";
  } catch (const UnavailableError& e) {
    EXPECT_TRUE(contains(e.what(), "certificate verify failed")) << e.what();
    EXPECT_FALSE(contains(e.what(), kPassword)) << e.what();
  }

  const auto r = run_cli("migrate --status", {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_TRUE(contains(r.output, "certificate verify failed")) << r.output;
  EXPECT_FALSE(contains(r.output, kPassword)) << r.output;
}

TEST(Tls, HostNameTheCertificateDoesNotNameIsRefusedUnderVerifyFull) {
  // Reaches 127.0.0.1 (hostaddr) while checking the certificate against another name (host).
  const std::string other_name =
      "host=db.example.invalid hostaddr=127.0.0.1 port=" + std::to_string(g_tls->port) +
      " dbname=" + kDatabase + " user=" + kRole + " password=" + kPassword +
      " sslrootcert=" + g_tls->certs.ca.string();
  const std::string refused =
      refusal_of([&] { pqxx::connection conn(other_name + " sslmode=verify-full"); });
  EXPECT_TRUE(contains(refused, "does not match host name \"db.example.invalid\"")) << refused;
  // verify-ca checks the chain only, so the same connection succeeds: verify-full is the one
  // that stops a server with someone else's valid certificate.
  EXPECT_EQ(refusal_of([&] { pqxx::connection conn(other_name + " sslmode=verify-ca"); }),
            "(connected)");
}

TEST(Tls, PlaintextIsRefusedByTheServer) {
  const std::string refused = refusal_of([] {
    pqxx::connection conn("host=127.0.0.1 port=" + std::to_string(g_tls->port) +
                          " dbname=" + kDatabase + " user=" + kRole + " password=" + kPassword +
                          " sslmode=disable");
  });
  EXPECT_TRUE(contains(refused, "rejects connection")) << refused;
  EXPECT_TRUE(contains(refused, "no encryption")) << refused;
  // The CLI calls it what it is: credentials refused (7), not a passing outage (5).
  const auto r = run_cli(
      "migrate --status",
      {{"PREFSTORE_DATABASE_URL",
        g_tls->url("password=" + std::string(kPassword) + " host=127.0.0.1 sslmode=disable")}});
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "no encryption")) << r.output;
  EXPECT_FALSE(contains(r.output, kPassword)) << r.output;
}

TEST(Tls, ClientCertificateLogsInWithoutPassword) {
  const std::string url = "host=localhost port=" + std::to_string(g_tls->port) +
                          " dbname=" + kDatabase + " user=" + kCertRole +
                          " sslmode=verify-full sslrootcert=" + g_tls->certs.ca.string();
  const std::string with_cert = url + " sslcert=" + g_tls->certs.client_cert.string() +
                                " sslkey=" + g_tls->certs.client_key.string();
  auto r = run_cli(std::string("get carol ") + kKey, {{"PREFSTORE_DATABASE_URL", with_cert}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "30\n");
  // The certificate's key only: a key that does not match is refused by libpq itself.
  r = run_cli(std::string("get carol ") + kKey,
              {{"PREFSTORE_DATABASE_URL", url + " sslcert=" + g_tls->certs.client_cert.string() +
                                              " sslkey=" + g_tls->certs.unrelated_key.string()}});
  EXPECT_NE(r.exit_code, 0) << r.output;
  // Without a certificate the server refuses the role.
  r = run_cli(std::string("get carol ") + kKey, {{"PREFSTORE_DATABASE_URL", url}});
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "certificate")) << r.output;
}

// ---------------------------------------------------------------------------------------------
// Credentials from the environment only

TEST(Credentials, LibpqVariablesAloneConnect) {
  const Env env = {{"PGHOST", "localhost"},
                   {"PGPORT", std::to_string(g_tls->port)},
                   {"PGDATABASE", kDatabase},
                   {"PGUSER", kRole},
                   {"PGPASSWORD", kPassword},
                   {"PGSSLMODE", "verify-full"},
                   {"PGSSLROOTCERT", g_tls->certs.ca.string()}};
  auto r = run_cli(std::string("set dan ") + kKey + " 55", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli(std::string("get dan ") + kKey, env);
  EXPECT_EQ(r.output, "55\n");
  // PGPASSWORD with a URL that names everything else.
  r = run_cli(std::string("get dan ") + kKey,
              {{"PREFSTORE_DATABASE_URL", g_tls->url()}, {"PGPASSWORD", kPassword}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "55\n");
}

TEST(Credentials, PasswordFileConnects) {
  const fs::path passfile = g_tls->dir / "pgpass";
  write_file(passfile,
             "# host:port:database:user:password\nlocalhost:" + std::to_string(g_tls->port) + ":" +
                 kDatabase + ":" + kRole + ":" + kPassword + "\n",
             fs::perms::owner_read | fs::perms::owner_write);
  const Env env = {{"PREFSTORE_DATABASE_URL", g_tls->url()}, {"PGPASSFILE", passfile.string()}};
  auto r = run_cli(std::string("set erin ") + kKey + " 60", env);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_cli(std::string("get erin ") + kKey, env);
  EXPECT_EQ(r.output, "60\n");

  // libpq ignores a password file that others can read (and says so): no password, refused.
  fs::permissions(passfile, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                fs::perms::others_read);
  r = run_cli(std::string("get erin ") + kKey, env);
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "no password supplied")) << r.output;
  EXPECT_FALSE(contains(r.output, kPassword)) << r.output;
  fs::remove(passfile);
}

TEST(Credentials, ServiceFileConnects) {
  const fs::path service_file = g_tls->dir / "pg_service.conf";
  write_file(service_file,
             "[prefs_tls]\nhost=localhost\nport=" + std::to_string(g_tls->port) +
                 "\ndbname=" + kDatabase + "\nuser=" + kRole + "\npassword=" + kPassword +
                 "\nsslmode=verify-full\nsslrootcert=" + g_tls->certs.ca.string() + "\n",
             fs::perms::owner_read | fs::perms::owner_write);
  // PGSERVICE alone chooses the database (libpq's variables)...
  auto r = run_cli(std::string("set finn ") + kKey + " 65",
                   {{"PGSERVICEFILE", service_file.string()}, {"PGSERVICE", "prefs_tls"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // ... as does service=NAME in the URL.
  r = run_cli(std::string("get finn ") + kKey, {{"PGSERVICEFILE", service_file.string()},
                                                {"PREFSTORE_DATABASE_URL", "service=prefs_tls"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "65\n");
  r = run_cli("migrate --status",
              {{"PGSERVICEFILE", service_file.string()}, {"PGSERVICE", "prefs_tls"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, kPassword)) << r.output;
  fs::remove(service_file);
}

// ---------------------------------------------------------------------------------------------
// Redaction: a password in the connection string appears in no output of a failing command.

// A connection string, `password` in one of the forms libpq accepts.
struct UrlForm {
  std::string name;
  std::string (*make)(const std::string& password, const std::string& extra);
};

const std::vector<UrlForm>& url_forms() {
  static const std::vector<UrlForm> forms = {
      {"URI user info", [](const std::string& pw,
                           const std::string& q) { return g_tls->uri(kRole + (":" + pw), q); }},
      {"URI ?password=",
       [](const std::string& pw, const std::string& q) {
         return g_tls->uri(kRole, "password=" + pw + (q.empty() ? "" : "&" + q));
       }},
      {"key=value",
       [](const std::string& pw, const std::string& extra) {
         return "password=" + pw + " " + g_tls->url(extra);
       }},
      {"key=value quoted",
       [](const std::string& pw, const std::string& extra) {
         return g_tls->url("password = " + storage::quote_conninfo_value(pw) + " " + extra);
       }},
  };
  return forms;
}

// One way to fail, and what the message must name.
struct Failure {
  std::string name;
  std::string password;       // the password in the string (the right one or a wrong one)
  std::string uri_query;      // added to the URI forms
  std::string kv_extra;       // added to the key=value forms
  std::string expected_text;  // the problem, as the message names it
  int exit_code;
};

std::vector<Failure> failures() {
  const std::string closed = std::to_string(g_tls->closed_port);
  const std::string other_ca = g_tls->certs.other_ca.string();
  return {
      {"wrong password", kWrongPassword, "", "", "password authentication failed", 7},
      // The later port wins, in both forms.
      {"unreachable port", kPassword, "port=" + closed, "port=" + closed, "Connection refused", 5},
      {"wrong CA", kPassword, "sslrootcert=" + other_ca, "sslrootcert=" + other_ca,
       "certificate verify failed", 5},
      {"bad database name", kPassword, "dbname=no_such_db", "dbname=no_such_db",
       "database \"no_such_db\" does not exist", 5},
      {"bad setting value", kPassword, "sslmode=bogus", "sslmode=bogus", "sslmode", 5},
  };
}

// The passwords of these tests need no percent-encoding: as written is as libpq reads them.
void expect_no_password(const std::string& output, const std::string& password,
                        const std::string& what) {
  EXPECT_FALSE(contains(output, password)) << what << "\n" << output;
}

TEST(Redaction, FailingCommandsNeverPrintThePassword) {
  const fs::path backup = g_tls->dir / "redaction.psb";
  const std::vector<std::string> commands = {"migrate",
                                             "migrate --status",
                                             "get ada",
                                             std::string("set ada ") + kKey + " 45",
                                             "projections status",
                                             "history ada",
                                             "backup create '" + backup.string() + "'"};
  int runs = 0;
  for (const Failure& f : failures()) {
    for (const UrlForm& form : url_forms()) {
      const bool uri = form.name.rfind("URI", 0) == 0;
      const std::string url = form.make(f.password, uri ? f.uri_query : f.kv_extra);
      for (const std::string& command : commands) {
        const std::string what = f.name + ", " + form.name + ": prefstore " + command;
        const auto r = run_cli(command, {{"PREFSTORE_DATABASE_URL", url}});
        ++runs;
        expect_no_password(r.output, f.password, what);
        EXPECT_EQ(r.exit_code, f.exit_code) << what << "\n" << r.output;
        EXPECT_TRUE(contains(r.output, f.expected_text)) << what << "\n" << r.output;
      }
    }
  }
  EXPECT_EQ(runs, 5 * 4 * 7);
  EXPECT_FALSE(fs::exists(backup));
}

TEST(Redaction, RefusedValueOverAWorkingUrlNeverPrintsThePassword) {
  for (const UrlForm& form : url_forms()) {
    const Env env = {{"PREFSTORE_DATABASE_URL", form.make(kPassword, "")}};
    auto r = run_cli(std::string("set ada ") + kKey + " 9999", env);
    EXPECT_EQ(r.exit_code, 3) << form.name << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "9999 is above the maximum 480")) << r.output;
    expect_no_password(r.output, kPassword, form.name + ": set");
    r = run_cli("get ada --as-of yesterday-ish", env);
    EXPECT_EQ(r.exit_code, 2) << form.name << "\n" << r.output;
    expect_no_password(r.output, kPassword, form.name + ": get --as-of");
    r = run_cli("projections rebuild no_such_projection", env);
    EXPECT_EQ(r.exit_code, 3) << form.name << "\n" << r.output;
    expect_no_password(r.output, kPassword, form.name + ": projections rebuild");
    r = run_cli("migrate", env);  // succeeds, and shows the database it used
    EXPECT_EQ(r.exit_code, 0) << form.name << "\n" << r.output;
    expect_no_password(r.output, kPassword, form.name + ": migrate");
  }
}

TEST(Redaction, UnparsableUrlNeverPrintsThePassword) {
  for (const std::string& url :
       {"postgresql://" + std::string(kRole) + ":" + kPassword + "%zz@localhost/prefs",
        "host='unterminated password=" + std::string(kPassword),
        "password=" + std::string(kPassword) + " host=localhost nonsense_option=1",
        "postgresql://localhost/prefs?password=" + std::string(kPassword) + "&nonsense=1"}) {
    const auto r = run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}});
    EXPECT_NE(r.exit_code, 0) << url << "\n" << r.output;
    expect_no_password(r.output, kPassword, url);
  }
}

// Regression: libpq percent-decodes URI query keywords, so "pass%77ord=" sets the password too.
TEST(Redaction, PercentEncodedPasswordKeywordIsHidden) {
  for (const std::string keyword : {"pass%77ord", "%70assword", "%70%61%73%73%77%6f%72%64"}) {
    const std::string url = g_tls->uri(kRole, keyword + "=" + kPassword);
    EXPECT_FALSE(contains(storage::redact_conninfo(url), kPassword))
        << storage::redact_conninfo(url);
    // The password is the right one, so the connection works: it did reach libpq as a password.
    auto r = run_cli("migrate", {{"PREFSTORE_DATABASE_URL", url}});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    expect_no_password(r.output, kPassword, url);
    r = run_cli("migrate", {{"PREFSTORE_DATABASE_URL",
                             g_tls->uri(kRole, keyword + "=" + kPassword + "&dbname=no_such_db")}});
    EXPECT_NE(r.exit_code, 0) << r.output;
    expect_no_password(r.output, kPassword, url);
  }
}

// Every subcommand path below `prefix`, read from the help of `prefix` ("Subcommands:" lists).
std::vector<std::string> subcommands_of(const std::string& prefix, const Env& env) {
  const auto r = run_cli(prefix + " --help", env);
  std::vector<std::string> out;
  std::istringstream lines(r.output);
  std::string line;
  bool in_list = false;
  while (std::getline(lines, line)) {
    if (line.empty()) {
      in_list = false;
      continue;
    }
    if (line == "Subcommands:" || line == "SUBCOMMANDS:") {
      in_list = true;
      continue;
    }
    if (!in_list || line[0] != ' ') continue;
    std::istringstream words(line);
    std::string name;
    words >> name;
    if (!name.empty()) out.push_back((prefix.empty() ? "" : prefix + " ") + name);
  }
  return out;
}

TEST(Redaction, HelpNeverPrintsThePassword) {
  for (const UrlForm& form : url_forms()) {
    // -h as well as --help, once (each run costs a process).
    const bool both_flags = &form == &url_forms().front();
    const Env env = {{"PREFSTORE_DATABASE_URL", form.make(kPassword, "")},
                     {"PGPASSWORD", kPassword}};
    std::vector<std::string> pending = {""};
    std::set<std::string> seen;
    while (!pending.empty()) {
      const std::string command = pending.back();
      pending.pop_back();
      if (!seen.insert(command).second) continue;
      for (const char* flag : {"--help", "-h"}) {
        if (!both_flags && std::string(flag) == "-h") continue;
        const auto r = run_cli(command + " " + flag, env);
        EXPECT_EQ(r.exit_code, 0) << "prefstore " << command << " " << flag << "\n" << r.output;
        EXPECT_TRUE(contains(r.output, "Usage")) << r.output;
        expect_no_password(r.output, kPassword, form.name + ": prefstore " + command + " " + flag);
      }
      for (auto& sub : subcommands_of(command, env)) pending.push_back(sub);
    }
    // The walk found every command (a broken parse would pass vacuously).
    for (const char* expected :
         {"migrate", "local", "set", "get", "define", "history", "projections", "projections run",
          "diff", "restore", "snapshot", "snapshot create", "backup", "backup restore"}) {
      EXPECT_EQ(seen.count(expected), 1u) << "help walk missed " << expected;
    }
    const auto version = run_cli("--version", env);
    expect_no_password(version.output, kPassword, "--version");
  }
}

TEST(Redaction, StoreExceptionsNeverCarryThePassword) {
  struct Case {
    std::string url;
    std::string expected_text;
  };
  const std::vector<Case> cases = {
      {g_tls->uri(kRole + (":" + std::string(kWrongPassword))), "password authentication failed"},
      {g_tls->url("password=" + std::string(kPassword) +
                  " port=" + std::to_string(g_tls->closed_port)),
       "Connection refused"},
      {g_tls->uri(kRole, "password=" + std::string(kPassword) +
                             "&sslrootcert=" + g_tls->certs.other_ca.string()),
       "certificate verify failed"},
      {g_tls->uri(kRole + (":" + std::string(kPassword)), "", "no_such_db"), "does not exist"},
      {"host='unterminated password=" + std::string(kPassword), "invalid database connection"},
  };
  for (const Case& c : cases) {
    StoreOptions o;
    o.database_url = c.url;
    try {
      Store store(o);
      ADD_FAILURE() << "opened " << storage::redact_conninfo(c.url);
    } catch (const Error& e) {
      EXPECT_FALSE(contains(e.what(), kPassword)) << e.what();
      EXPECT_FALSE(contains(e.what(), kWrongPassword)) << e.what();
      EXPECT_TRUE(contains(e.what(), c.expected_text)) << e.what();
    }
  }
}

}  // namespace
}  // namespace prefstore
