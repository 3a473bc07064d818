#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS on its corpora, then checks that it
# neither crashed nor ran too few executions. Used by scripts/fuzz and by the
# ctest entries of tests/fuzz (label fuzz).
#
# Usage: run_target.sh BINARY SECONDS MIN WORK_CORPUS SEED_CORPUS ARTIFACT_PREFIX [DICT]
#   MIN  N: executions the run must reach (0: no check); scripts/fuzz asks for
#        1,000,000 per 300 s (3,334 per second).
#        N/cpu-s: executions per CPU-second of the fuzzer the run must reach; the
#        ctest entries ask for a share of 3,334, measured so that a machine busy
#        with other work does not fail them.
# Last line of output, also the only line on stdout:
#   fuzz_NAME: N executions in S s (R/s, C per CPU-second; at least MIN): ok | TOO SLOW | CRASH ...
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
# CPU time of the fuzzer: the second line of `times` (this shell's children: the
# fuzzer, and a few milliseconds of mkdir, date and basename).
times >"$work.times"  # not in a pipe: a subshell would report its own (no) children
cpu=$(sed -n 2p "$work.times" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); n += p[1] * 60 + p[2] } printf "%.2f", n }')
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
runs=${runs:-0}
rate=$((runs / (seconds > 0 ? seconds : 1)))
cpu_rate=$(awk -v r="$runs" -v c="$cpu" 'BEGIN { printf "%d", (c > 0 ? r / c : 0) }')
line="$name: $runs executions in ${seconds} s ($rate/s, $cpu_rate per CPU-second; at least $min)"

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
slow=0
case "$min" in
  */cpu-s) ((cpu_rate < ${min%/cpu-s})) && slow=1 ;;
  *) ((runs < min)) && slow=1 ;;
esac
if ((slow)); then
  echo "$line: TOO SLOW (load average $(cut -d' ' -f1-3 /proc/loadavg); ${elapsed} s wall)"
  exit 3
fi
echo "$line: ok"
