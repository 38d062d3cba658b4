// Test support: the environment variables that choose a database, cleared for a scope so that
// nothing of the calling environment leaks into a test. Header-only. Not thread-safe (it changes
// the process's environment).
#pragma once

#include <cstdlib>
#include <map>
#include <set>
#include <string>

namespace prefstore::testing {

// Clears PREFSTORE_DATABASE_URL, PREFSTORE_STANDBY_URLS, PREFSTORE_HOME and the libpq variables on
// construction; set() sets any variable for the scope. On destruction every variable it cleared or
// set is unset, and the cleared ones get their earlier values back.
class ScopedDatabaseEnvironment {
 public:
  ScopedDatabaseEnvironment() {
    for (const char* name : kCleared) {
      if (const char* v = std::getenv(name)) m_saved[name] = v;
      ::unsetenv(name);
    }
  }
  ScopedDatabaseEnvironment(const ScopedDatabaseEnvironment&) = delete;
  ScopedDatabaseEnvironment& operator=(const ScopedDatabaseEnvironment&) = delete;
  ~ScopedDatabaseEnvironment() {
    for (const std::string& name : m_set) ::unsetenv(name.c_str());
    for (const char* name : kCleared) ::unsetenv(name);
    for (const auto& [name, value] : m_saved) ::setenv(name.c_str(), value.c_str(), 1);
  }

  void set(const std::string& name, const std::string& value) {
    ::setenv(name.c_str(), value.c_str(), 1);
    m_set.insert(name);
  }

 private:
  static constexpr const char* kCleared[] = {"PREFSTORE_DATABASE_URL",
                                             "PREFSTORE_STANDBY_URLS",
                                             "PREFSTORE_HOME",
                                             "PGHOST",
                                             "PGHOSTADDR",
                                             "PGPORT",
                                             "PGDATABASE",
                                             "PGUSER",
                                             "PGSERVICE"};
  std::map<std::string, std::string> m_saved;
  std::set<std::string> m_set;
};

}  // namespace prefstore::testing
