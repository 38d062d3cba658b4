#!/usr/bin/env bash
# make bench: runs the benchmarks, prints each scenario's ratio against its target, and writes
# docs/performance.md (each scenario beside its raw baseline measured in the same run) with the
# plots docs/bench-threads.png and docs/bench-asof.png (gnuplot, from docs/bench-threads.tsv and
# docs/bench-asof.tsv, which it keeps). The scale-out step builds Citus first
# (scripts/install-citus.sh).
# Usage: scripts/bench.sh BUILD_DIR [EVENTS]
# Environment: PREFSTORE_BENCH_EVENTS (size of the large log, default 1,000,000),
# PREFSTORE_BENCH_SECONDS (seconds per load point and side, default 3).
set -euo pipefail
build=${1:-build}
events=${2:-${PREFSTORE_BENCH_EVENTS:-1000000}}
seconds=${PREFSTORE_BENCH_SECONDS:-3}
out=docs/performance.md
tmp=$(mktemp -d /tmp/prefstore-bench-out.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
started=$(date +%s)

# Runs a benchmark program; its stderr is shown when it ends, and kept for the summary of its
# "ratio:" lines.
run() {
  local rc=0
  "$@" 2> "$tmp/step.err" || rc=$?
  cat "$tmp/step.err" >&2
  cat "$tmp/step.err" >> "$tmp/stderr.txt"
  return $rc
}

echo "bench: core micro-benchmarks (Google Benchmark, no database)" >&2
"$build/bench/prefstore_core_bench" --benchmark_min_time=0.3 --benchmark_format=console \
  2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep -v "WARNING.*DEBUG" > "$tmp/core.txt"
cat "$tmp/core.txt" >&2

echo "bench: set, batched appends, bulk import and get_all against raw statements" >&2
run "$build/bench/prefstore_load_bench" "$seconds" "$tmp/load.md" "$tmp/threads.tsv" > /dev/null

echo "bench: import, replay and rebuild of $events events" >&2
run "$build/bench/prefstore_rebuild_bench" "$events" "$tmp/rebuild.md" > /dev/null

echo "bench: backup, restore and as-of reads ($events events)" >&2
run "$build/bench/prefstore_time_travel_bench" "$events" "$tmp/time_travel.md" "$tmp/asof.tsv" \
  > /dev/null

echo "bench: connection pool (Google Benchmark)" >&2
"$build/bench/prefstore_bench" --benchmark_min_time=2 --benchmark_format=console \
  --benchmark_counters_tabular=true 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' > "$tmp/pool.txt"

echo "bench: scale-out: standby reads, read-your-writes, set through Citus (builds Citus once)" >&2
bash scripts/install-citus.sh
run "$build/bench/prefstore_scale_bench" "$seconds" "$tmp/scale.md" > /dev/null

plots=no
cp "$tmp/threads.tsv" docs/bench-threads.tsv
cp "$tmp/asof.tsv" docs/bench-asof.tsv
if command -v gnuplot > /dev/null; then
  gnuplot <<EOF
set terminal png size 900,500 noenhanced
set output "docs/bench-threads.png"
set title "Throughput against client threads (2 cores shared by server and client)"
set xlabel "client threads"
set ylabel "operations per second"
set logscale x 2
set xrange [0.8:10]
set yrange [0:*]
set xtics (1, 2, 4, 8)
set key below
set grid
plot "docs/bench-threads.tsv" using 1:2 with linespoints title "raw INSERT (baseline)", \
     "" using 1:3 with linespoints title "Store::set", \
     "" using 1:4 with linespoints title "raw SELECT (baseline)", \
     "" using 1:5 with linespoints title "Store::get_all"
set output "docs/bench-asof.png"
set title "As-of read latency against the user's history"
set xlabel "events in the user's stream"
set ylabel "median latency (µs)"
set logscale xy 10
set xrange [5:200000]
set xtics (10, 1000, 100000)
set yrange [*:*]
set key inside top left
plot "docs/bench-asof.tsv" using 1:2 with linespoints title "snapshot every 100 events", \
     "" using 1:4 with linespoints title "no snapshots"
EOF
  plots=yes
else
  echo "bench: gnuplot is not installed (scripts/install-deps.sh installs it): no plots" >&2
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(free -g | awk '/Mem:/ {print $2 " GiB"}')
pg=$(/usr/lib/postgresql/15/bin/postgres --version)
{
  echo "# Performance"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d) in $(( $(date +%s) - started )) s."
  echo "Every figure below comes from that one run; each scenario stands beside its raw baseline"
  echo "measured in the same run, on the same throwaway server. What the profiles showed, what"
  echo "was changed and why some targets are still missed: [performance-findings.md](performance-findings.md)."
  echo "The 10-minute soak (\`make soak\`) writes [soak.md](soak.md)."
  echo
  echo "Machine: $(nproc) cores ($cpu), $mem memory; client and server share the cores. $pg,"
  echo "a throwaway local cluster on a unix socket with fsync, synchronous_commit and"
  echo "full_page_writes off (test settings: the figures measure prefstore's overhead, not the"
  echo "disk), shared_buffers 512MB, max_wal_size 4GB."
  echo
  echo "## Targets"
  echo
  echo "As \`make bench\` printed them (ratio to the baseline of the same run):"
  echo
  echo '```'
  grep '^ratio:' "$tmp/stderr.txt" | sed 's/^ratio: //'
  echo '```'
  echo
  echo "## Writes and reads against raw statements"
  echo
  echo "Each pair ran twice, alternating baseline and prefstore, $seconds s a side (the bulk import"
  echo "three times as long: its calls are long); the better run of each side counts. Raw"
  echo "baselines: libpq prepared statements, each its own transaction, into"
  echo "\`bench.raw_events\`, created \`LIKE prefstore.events INCLUDING ALL\` (the same columns,"
  echo "defaults, checks and ten indexes; no trigger, no foreign key), the same payloads and a"
  echo "32-byte chain_hash given by the client; the raw SELECT reads the same 20 rows of"
  echo "preferences_current that get_all reads. \`set\` validates against the definition, appends"
  echo "and updates preferences_current in one statement; the batched append is"
  echo "\`EventLog::append\` of 100 events to one new user, the bulk import \`EventLog::append_bulk\`."
  echo
  cat "$tmp/load.md"
  echo
  if [[ $plots == yes ]]; then
    echo "![Throughput against client threads](bench-threads.png)"
    echo
  fi
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
  if [[ $plots == yes ]]; then
    echo "![As-of read latency against history length](bench-asof.png)"
    echo
  fi
  echo "## Scale-out: a standby and Citus"
  echo
  echo "bench/scale_bench.cpp, beside the single-server figure of the same run: a primary (fsync"
  echo "off, synchronous_commit on, so that a commit's WAL is sent at once) with a streaming standby"
  echo "made by pg_basebackup, and a Citus coordinator with two workers, all on this one machine."
  echo "Every server shares the same $(nproc) cores with the client, so the figures measure the"
  echo "overhead of reading from a standby or writing through Citus, not a speed-up: a real"
  echo "deployment puts each on its own machine. Better of two alternating runs after a warm-up."
  echo "The value-counts catch-up rows time one ProjectionRunner::catch_up over 1,000 events"
  echo "written just before (sets of 250 users), once per side: on Citus one lane per worker, each"
  echo "batch one distributed transaction (the holders written shard by shard, the counts and the"
  echo "checkpoint in reference tables, committed in two phases)."
  echo
  cat "$tmp/scale.md"
  echo
  echo "## Core micro-benchmarks"
  echo
  echo "bench/core_bench.cpp: encoding and decoding of events and metadata, validation of values,"
  echo "definitions and keys, the fold of 10 to 100,000 events, the snapshot codec; no database."
  echo
  echo '```'
  cat "$tmp/core.txt"
  echo '```'
  echo
  echo "## Connection pool overhead"
  echo
  echo "\`SELECT 1\` through \`ConnectionPool::acquire()\` beside the same statement on a connection held"
  echo "directly (the baseline), 1 and 8 threads."
  echo
  echo '```'
  cat "$tmp/pool.txt"
  echo '```'
} > "$out"

echo >&2
echo "bench: ratios against the targets (docs/performance.md):" >&2
grep '^ratio:' "$tmp/stderr.txt" | sed 's/^ratio: /  /' >&2
echo "bench: wrote $out in $(( $(date +%s) - started )) s" >&2
