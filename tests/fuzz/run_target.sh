#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS on its corpora, then checks that it
# neither crashed nor ran too few executions. Used by scripts/fuzz and by the
# ctest entries of tests/fuzz (label fuzz).
#
# Usage: run_target.sh BINARY SECONDS MIN_EXECUTIONS WORK_CORPUS SEED_CORPUS ARTIFACT_PREFIX [DICT]
#   MIN_EXECUTIONS  executions the run must reach (0: no check). scripts/fuzz asks
#                   for 1,000,000 per 300 s (3,334 per second); ctest for a share of that.
# Last line of output, also the only line on stdout:
#   fuzz_NAME: N executions in S s (R/s; at least M needed): ok | TOO SLOW | CRASH ...
# Exit status: 0 ok, 1 crash (libFuzzer's report, then a re-run of the input
# with full allocation stacks), 3 too slow, 2 usage.
#
# While fuzzing, ASan records no allocation stacks (malloc_context_size=0): a
# stack per malloc and free cost ~15 % of every run (perf). A crash is re-run
# once with the default options, so its report has them. ASAN_OPTIONS set by the
# caller come after ours and win.
set -uo pipefail

if (($# < 6)); then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
binary=$1 seconds=$2 min=$3 work=$4 seeds=$5 artifacts=$6 dict=${7:-}
name=$(basename "$binary")
log="$work.log"
mkdir -p "$work" "$(dirname "$artifacts")"

args=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts")
[ -n "$dict" ] && args+=(-dict="$dict")
start=$(date +%s.%N)
rc=0
ASAN_OPTIONS="malloc_context_size=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
  "$binary" "${args[@]}" "$work" "$seeds" >"$log" 2>&1 || rc=$?
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
runs=${runs:-0}
rate=$((runs / (seconds > 0 ? seconds : 1)))
line="$name: $runs executions in ${seconds} s ($rate/s; at least $min needed)"

if [ "$rc" -ne 0 ]; then
  tail -60 "$log" >&2
  unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if [ -n "$unit" ] && [ -f "$unit" ]; then
    echo "--- $name: re-run of $unit with full allocation stacks ---" >&2
    "$binary" "$unit" >&2 2>&1
  fi
  echo "$line: CRASH (exit $rc) $(grep -m1 -E 'invariant violated|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error' "$log")"
  exit 1
fi
if ((min > 0 && runs < min)); then
  echo "$line: TOO SLOW (load average $(cut -d' ' -f1-3 /proc/loadavg); ${elapsed} s wall)"
  exit 3
fi
echo "$line: ok"
