// Connection strings: where the database comes from, and that passwords never show.
#include "prefstore/storage/database_url.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "prefstore/errors.hpp"
#include "scoped_environment.hpp"

namespace prefstore::storage {
namespace {

// Clears the database variables for one test, sets some, and restores them afterwards.
using ScopedEnv = prefstore::testing::ScopedDatabaseEnvironment;

TEST(ConfiguredDatabaseUrl, NoneMeansTheLocalServer) {
  ScopedEnv env;
  EXPECT_EQ(configured_database_url(), std::nullopt);
}

TEST(ConfiguredDatabaseUrl, PrefstoreVariableWins) {
  ScopedEnv env;
  env.set("PGHOST", "elsewhere");
  env.set("PREFSTORE_DATABASE_URL", "postgresql://app@db.internal/prefs");
  EXPECT_EQ(configured_database_url(), "postgresql://app@db.internal/prefs");
}

TEST(ConfiguredStandbyUrls, AreSeparatedBySemicolonsWithBlanksAndEmptyItemsIgnored) {
  ScopedEnv env;
  EXPECT_TRUE(configured_standby_urls().empty());
  env.set("PREFSTORE_STANDBY_URLS",
          " host=/run/standby1 port=5433 dbname=prefs ;postgresql://reader@standby2/prefs;; \t");
  EXPECT_EQ(configured_standby_urls(),
            (std::vector<std::string>{"host=/run/standby1 port=5433 dbname=prefs",
                                      "postgresql://reader@standby2/prefs"}));
  env.set("PREFSTORE_STANDBY_URLS", "");
  EXPECT_TRUE(configured_standby_urls().empty());
}

TEST(ConfiguredDatabaseUrl, AnyLibpqVariableMeansLibpqDefaults) {
  for (const char* name : {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"}) {
    ScopedEnv env;
    env.set(name, "x");
    EXPECT_EQ(configured_database_url(), std::string()) << name;
  }
}

TEST(ConfiguredDatabaseUrl, EmptyPrefstoreVariableIsIgnored) {
  ScopedEnv env;
  env.set("PREFSTORE_DATABASE_URL", "");
  EXPECT_EQ(configured_database_url(), std::nullopt);
}

TEST(RedactConninfo, HidesUriPassword) {
  EXPECT_EQ(redact_conninfo("postgresql://calendar:s3cret@db:5432/prefs"),
            "postgresql://calendar:***@db:5432/prefs");
  EXPECT_EQ(redact_conninfo("postgres://u:p%40ss@h/d?sslmode=require"),
            "postgres://u:***@h/d?sslmode=require");
}

TEST(RedactConninfo, HidesUriQueryPassword) {
  EXPECT_EQ(redact_conninfo("postgresql://h/d?user=u&password=s3cret&sslmode=verify-full"),
            "postgresql://h/d?user=u&password=***&sslmode=verify-full");
  EXPECT_EQ(redact_conninfo("postgresql:///d?password=s3cret"), "postgresql:///d?password=***");
}

TEST(RedactConninfo, HidesKeyValuePassword) {
  EXPECT_EQ(redact_conninfo("host=db user=u password=s3cret dbname=prefs"),
            "host=db user=u password=*** dbname=prefs");
  EXPECT_EQ(redact_conninfo("password = 's3 cr\\'et' host=db"), "password = *** host=db");
  EXPECT_EQ(redact_conninfo("host=db PASSWORD=s3cret"), "host=db PASSWORD=***");
}

TEST(RedactConninfo, LeavesStringsWithoutPasswordAlone) {
  EXPECT_EQ(redact_conninfo("host=/tmp/x port=5432 dbname=prefstore user=prefstore"),
            "host=/tmp/x port=5432 dbname=prefstore user=prefstore");
  EXPECT_EQ(redact_conninfo("postgresql://calendar@db/prefs"), "postgresql://calendar@db/prefs");
  EXPECT_EQ(redact_conninfo(""), "");
}

TEST(RedactConninfo, NeverShowsThePasswordInAnyForm) {
  const std::string secret = "Zq9-secret";
  for (const std::string& s :
       {"postgresql://u:" + secret + "@h/d", "postgresql://h/d?password=" + secret,
        "password=" + secret, "host=h password='" + secret + "'",
        "host=h password=" + secret + " x=y",
        "postgresql://u:" + secret + "@h/d?password=" + secret}) {
    EXPECT_EQ(redact_conninfo(s).find(secret), std::string::npos) << s;
  }
}

// Regression (review): a password holding '/', '?' or '@' escaped the URI rule, and libpq's
// parse errors quote the offending token, which can be part of the password.
TEST(RedactConninfo, HidesUriPasswordsHoldingDelimiters) {
  for (const std::string secret : {"pa/ss", "p?ss", "p@ss", "p#ss/x@y"}) {
    const std::string url = "postgresql://app:" + secret + "@db/prefs";
    EXPECT_EQ(redact_conninfo(url).find(secret), std::string::npos) << redact_conninfo(url);
  }
  EXPECT_EQ(redact_conninfo("postgresql://app:pa/ss@db/prefs"), "postgresql://app:***@db/prefs");
}

TEST(ConninfoWith, ParseErrorsNeverQuoteThePassword) {
  for (const std::string& bad : {std::string("postgresql://app:s3cr%tpass@db/x"),
                                 std::string("host=db password=my s3cret")}) {
    try {
      (void)conninfo_with(bad, {});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ValidationError& e) {
      EXPECT_EQ(std::string(e.what()).find("s3cr"), std::string::npos) << e.what();
    }
  }
}

TEST(QuoteConninfoValue, EscapesQuotesAndBackslashes) {
  EXPECT_EQ(quote_conninfo_value("plain"), "'plain'");
  EXPECT_EQ(quote_conninfo_value("it's a\\path"), "'it\\'s a\\\\path'");
  EXPECT_EQ(quote_conninfo_value(""), "''");
}

TEST(ConninfoWith, AddsAndReplacesParametersInBothForms) {
  EXPECT_EQ(conninfo_with("host=db connect_timeout=30", {{"connect_timeout", "5"}}),
            "host='db' connect_timeout='5'");
  EXPECT_EQ(conninfo_with("postgresql://u@db:6543/prefs", {{"application_name", "svc"}}),
            "user='u' dbname='prefs' host='db' port='6543' application_name='svc'");
  EXPECT_EQ(conninfo_with("", {{"connect_timeout", "5"}}), "connect_timeout='5'");
}

TEST(ConninfoWith, RejectsUnparsableStringWithoutShowingThePassword) {
  try {
    (void)conninfo_with("password=hunter2 host='unterminated", {});
    FAIL() << "expected ValidationError";
  } catch (const ValidationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("invalid database connection string"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("hunter2"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)conninfo_with("nonsense_keyword=1", {}), ValidationError);
}

}  // namespace
}  // namespace prefstore::storage
