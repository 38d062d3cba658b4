#!/usr/bin/env bash
# cmake --install into a temporary prefix, then build a service against it twice: with
# find_package(prefstore) and with pkg-config. Both run against a throwaway local server.
set -euo pipefail
src=${1:?usage: install_test.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: install_test.sh SOURCE_DIR BUILD_DIR}
work=$(mktemp -d /tmp/prefstore-install.XXXXXX)
chmod 755 "$work"
home="$work/home"
cleanup() {
  PREFSTORE_HOME="$home" "$work/prefix/bin/prefstore" local stop >/dev/null 2>&1 || true
  if [ -L "$home/cluster" ]; then rm -rf "$(readlink "$home/cluster")"; fi
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
for f in include/prefstore/store.hpp include/prefstore/errors.hpp \
         include/prefstore/storage/connection_pool.hpp lib/libprefstore.a \
         lib/cmake/prefstore/prefstoreConfig.cmake lib/pkgconfig/prefstore.pc bin/prefstore; do
  [ -e "$work/prefix/$f" ] || { echo "install_test: missing $f after cmake --install"; exit 1; }
done
if grep -rqE '#include *[<"](pqxx/|libpq-fe)' "$work/prefix/include/prefstore"; then
  echo "install_test: an installed header includes libpqxx or libpq"; exit 1
fi

unset PREFSTORE_DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
export PREFSTORE_HOME="$home"

# The installed CLI needs no source tree: its migrations are compiled in.
(cd "$work" && "$work/prefix/bin/prefstore" migrate)

# 1. find_package(prefstore): the example service of examples/calendar_service.
cmake -S "$src/examples/calendar_service" -B "$work/example-build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/example-build" >/dev/null
"$work/example-build/calendar_service"

# 2. pkg-config, the same service.
g++ -std=c++20 "$src/examples/calendar_service/main.cpp" -o "$work/example-pc" \
  $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs prefstore)
"$work/example-pc"
echo "install_test: ok (headers, libraries, CMake package, pkg-config file, CLI)"
