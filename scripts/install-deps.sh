#!/usr/bin/env bash
# Installs everything prefstore needs to build, test and run, from Debian's packages.
# Idempotent: when every package is present it returns in well under a second, without apt.
set -euo pipefail

packages=(
  build-essential cmake make pkg-config git ca-certificates
  libpqxx-dev libpq-dev libcereal-dev rapidjson-dev libboost-dev librapidcheck-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libssl-dev openssl libspdlog-dev libfmt-dev
  postgresql-15 postgresql-client-15 pgbouncer
  clang-format util-linux procps gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
