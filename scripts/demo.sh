#!/usr/bin/env bash
# prefstore's demo: the calendar assistant's preference store on prefstore's own local server.
# For now (the foundation) it starts the server, applies the migrations and shows their status.
set -euo pipefail
cli=${1:-build/cli/prefstore}
unset PREFSTORE_DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "prefstore local start  (a PostgreSQL 15 cluster of its own, unix socket only)"
"$cli" local start
step "prefstore migrate  (numbered SQL files compiled into the tool, applied under an advisory lock)"
"$cli" migrate
step "prefstore migrate --status"
"$cli" migrate --status
step "prefstore local status"
"$cli" local status
printf '\nThe server keeps running for the next command; stop it with: %s local stop\n' "$cli"
