#!/usr/bin/env bash
# make bench: runs the benchmarks and writes docs/performance.md (each scenario beside its raw
# baseline measured in the same run). Usage: scripts/bench.sh BUILD_DIR [EVENTS]
set -euo pipefail
build=${1:-build}
events=${2:-${PREFSTORE_BENCH_EVENTS:-1000000}}
out=docs/performance.md
tmp=$(mktemp -d /tmp/prefstore-bench-out.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "bench: connection pool (Google Benchmark)" >&2
"$build/bench/prefstore_bench" --benchmark_min_time=2 --benchmark_format=console \
  --benchmark_counters_tabular=true 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' > "$tmp/pool.txt"
cat "$tmp/pool.txt" >&2

echo "bench: import, replay and rebuild of $events events" >&2
"$build/bench/prefstore_rebuild_bench" "$events" "$tmp/rebuild.md" >&2

echo "bench: backup, restore and as-of reads ($events events)" >&2
"$build/bench/prefstore_time_travel_bench" "$events" "$tmp/time_travel.md" >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(free -g | awk '/Mem:/ {print $2 " GiB"}')
pg=$(/usr/lib/postgresql/15/bin/postgres --version)
{
  echo "# Performance"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d). Every figure below comes from"
  echo "that one run; each scenario stands beside its raw baseline measured in the same run."
  echo
  echo "Machine: $(nproc) cores ($cpu), $mem memory. $pg, a throwaway local cluster on a unix"
  echo "socket with fsync, synchronous_commit and full_page_writes off (test settings: the"
  echo "figures measure prefstore's overhead, not the disk), shared_buffers 512MB for the rebuild run."
  echo
  echo "## Replay and rebuild of a large log"
  echo
  echo "Peak memory is the child process's maximum resident set (ru_maxrss): it stays flat however"
  echo "long the log, because every step streams batches (replay pages of 5,000 events, rebuild"
  echo "transactions of 5,000 events into shadow tables, then the swap)."
  echo
  cat "$tmp/rebuild.md"
  echo
  echo "## Time travel and recovery"
  echo
  echo "Backup and restore of the same log (each step in its own process: peak memory is its own;"
  echo "the restore writes preferences_current in its transaction). As-of reads of three users with"
  echo "10, 1,000 and 100,000 events (appended 1,000 a statement), 400 reads each at random versions"
  echo "and times, first with the snapshot projection writing a snapshot every 100 events, then the"
  echo "same users without snapshots (6 reads for the 100,000-event user): the cost follows the events"
  echo "since the snapshot, not the history."
  echo
  cat "$tmp/time_travel.md"
  echo
  echo "## Connection pool overhead"
  echo
  echo "\`SELECT 1\` through \`ConnectionPool::acquire()\` beside the same statement on a connection held"
  echo "directly (the baseline), 1 and 8 threads."
  echo
  echo '```'
  cat "$tmp/pool.txt"
  echo '```'
  echo
  echo "## Not measured yet"
  echo
  echo "The targets of the performance issue (single set against a raw INSERT, batched appends against"
  echo "COPY, get_all against the raw SELECT) have no scenario yet."
} > "$out"
echo "bench: wrote $out" >&2
