#!/usr/bin/env bash
# make soak: steady load on a throwaway local server with the asynchronous projectors running
# (bench/soak.cpp); writes docs/soak.md and, with gnuplot, docs/soak-latency.png and
# docs/soak-memory-lag.png. Exits non-zero when the soak fails (errors, a lost write, memory or
# lag growth). Usage: scripts/soak.sh BUILD_DIR
# Environment: PREFSTORE_SOAK_SECONDS (default 600), PREFSTORE_SOAK_INTERVAL (default 10).
set -euo pipefail
build=${1:-build}
seconds=${PREFSTORE_SOAK_SECONDS:-600}
interval=${PREFSTORE_SOAK_INTERVAL:-10}
docs=docs
tmp=$(mktemp -d /tmp/prefstore-soak-out.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "soak: $seconds s of steady load with the projectors running" >&2
rc=0
"$build/bench/prefstore_soak" "$seconds" "$tmp" "$interval" || rc=$?
if [[ ! -s "$tmp/soak.md" ]]; then
  echo "soak: the program wrote no results (exit code $rc)" >&2
  exit $((rc == 0 ? 1 : rc))
fi
mkdir -p "$docs"
cp "$tmp/soak.tsv" "$docs/soak.tsv"

if ! command -v gnuplot >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "soak: installing gnuplot-nox for the plots" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || true
  fi
fi
plots=0
if command -v gnuplot >/dev/null; then
  if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
    terminal="pngcairo size 1000,500 font 'sans,10'"
  else
    terminal="png size 1000,500"
  fi
  gnuplot <<EOF
set terminal $terminal
set datafile separator '\t'
set key top left
set grid
set xlabel 'elapsed (s)'

set output '$docs/soak-latency.png'
set title 'Store::set() and get\_all() latency per ${interval} s interval (p50, p99)'
set ylabel 'latency (ms)'
set yrange [0:*]
plot '$tmp/soak.tsv' using 1:3 skip 1 with linespoints title 'set p50', \
     '' using 1:4 skip 1 with linespoints title 'set p99', \
     '' using 1:6 skip 1 with lines dashtype 2 title 'get\_all p50', \
     '' using 1:7 skip 1 with lines dashtype 2 title 'get\_all p99'

set output '$docs/soak-memory-lag.png'
set title 'Client memory and projection lag'
set ylabel 'client RSS (MiB)'
set y2label 'projection lag (events)'
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
plot '$tmp/soak.tsv' using 1:9 skip 1 axes x1y1 with linespoints title 'RSS (MiB, left)', \
     '' using 1:8 skip 1 axes x1y2 with linespoints title 'lag (events, right)'
EOF
  plots=1
else
  echo "soak: gnuplot not found; no plots" >&2
fi

{
  echo "# Soak test"
  echo
  echo "Written by \`make soak\` (scripts/soak.sh) on $(date -u +%Y-%m-%d): $(nproc) cores,"
  echo "$(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || echo PostgreSQL), a throwaway"
  echo "local cluster (fsync off: the figures measure prefstore and the client, not the disk)."
  echo "The rows are also in [soak.tsv](soak.tsv)."
  echo
  cat "$tmp/soak.md"
  if [[ $plots == 1 ]]; then
    echo
    echo "![set and get_all latency over time](soak-latency.png)"
    echo
    echo "![client RSS and projection lag over time](soak-memory-lag.png)"
  fi
} > "$docs/soak.md"
echo "soak: wrote $docs/soak.md" >&2
exit "$rc"
