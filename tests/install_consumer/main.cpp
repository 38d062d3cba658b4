// Opens a Store through the installed package and prints the migration status: proof that a
// service can build and run against `cmake --install`'s output alone.
#include <prefstore/errors.hpp>
#include <prefstore/store.hpp>

#include <iostream>

int main() {
  try {
    prefstore::Store store;  // PREFSTORE_DATABASE_URL, else the local server
    int applied = 0;
    for (const auto& m : store.migration_status()) {
      applied += m.state == prefstore::storage::MigrationState::applied ? 1 : 0;
    }
    std::cout << "consumer: " << applied << " migrations applied\n";
    return applied > 0 ? 0 : 1;
  } catch (const prefstore::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
}
