#!/usr/bin/env bash
# Builds and installs Citus 13.2.2 (the last release that supports PostgreSQL 15) into Debian's
# PostgreSQL 15, for `make test-scale`. Citus is not in Debian; its source and a patch for
# Debian's 15.20 headers come from the folder PREFSTORE_CITUS_SOURCE, else ../shared/citus next
# to the checkout, else /work/shared/citus (README.md there has the recipe this follows).
# Idempotent: returns at once when citus.so and its control file are installed.
# Production users install Citus from its own package repository instead (docs/scaling.md).
set -euo pipefail

pg_config=/usr/lib/postgresql/15/bin/pg_config
if [ -x "$pg_config" ] && [ -f "$("$pg_config" --pkglibdir)/citus.so" ] &&
  [ -f "$("$pg_config" --sharedir)/extension/citus.control" ]; then
  exit 0
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
source_dir=""
for candidate in "${PREFSTORE_CITUS_SOURCE:-}" "$here/../shared/citus" /work/shared/citus; do
  if [ -n "$candidate" ] && [ -f "$candidate/citus-13.2.2.tar.gz" ]; then
    source_dir="$(cd "$candidate" && pwd)"
    break
  fi
done
if [ -z "$source_dir" ]; then
  echo "install-citus: no citus-13.2.2.tar.gz in \$PREFSTORE_CITUS_SOURCE, $here/../shared/citus" \
    "or /work/shared/citus; set PREFSTORE_CITUS_SOURCE to the folder holding it" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
packages=(postgresql-server-dev-15 liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev
  libxslt1-dev libpam0g-dev libreadline-dev flex bison patch)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-citus: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-citus: building Citus 13.2.2 from $source_dir (about a minute)" >&2
tar xzf "$source_dir/citus-13.2.2.tar.gz" -C "$work"
cd "$work/citus-13.2.2"
patch -p1 -s < "$source_dir/pg15.20-compat.patch"
PG_CONFIG="$pg_config" ./configure --without-libcurl > "$work/configure.log" 2>&1 ||
  { tail -30 "$work/configure.log" >&2; exit 1; }
make -j"$(nproc)" > "$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
$sudo make install > "$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
echo "install-citus: installed into $("$pg_config" --pkglibdir)" >&2
