#!/usr/bin/env bash
# The long soak, run on demand and never in CI (`cmake --workflow --preset soak`
# builds the soak preset and runs this). It runs
#   - every differential test of the soak build (GCC, -O2 with every check
#     kept) with IOPT_SOAK_OPERATIONS operations per configuration;
#   - the ThreadSanitizer stress suites, built here with the tsan preset, with
#     IOPT_SOAK_OPERATIONS operations in all in each stress test;
#   - each libFuzzer target, built here with the fuzz preset, for
#     IOPT_SOAK_FUZZ_SECONDS over a scratch copy of its seed corpus;
# two at a time, and takes about 75 minutes on a 2-core machine.
#
#   IOPT_SOAK_OPERATIONS    default 10000000
#   IOPT_SOAK_FUZZ_SECONDS  default 600
#
# It goes on past a failure, so that one run reports every part; then it
# prints a table of the parts and fails if any did. Each part's log, the
# table (summary.txt), the fuzzers' corpora and any crash inputs are left in
# <soak build>/soak-logs/.
#
# Usage: test/soak/run.sh [soak build folder, default build/soak]

# shellcheck disable=SC2317 # the functions run_part runs look unreachable to it
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
soak_build=${1:-$root/build/soak}
tsan_build=$root/build/tsan
fuzz_build=$root/build/fuzz
slots=2 # parts at once: one per core

operations=${IOPT_SOAK_OPERATIONS:-10000000}
fuzz_seconds=${IOPT_SOAK_FUZZ_SECONDS:-600}
for knob in "IOPT_SOAK_OPERATIONS=$operations" "IOPT_SOAK_FUZZ_SECONDS=$fuzz_seconds"; do
  if ! [[ ${knob#*=} =~ ^[1-9][0-9]*$ ]]; then
    echo "soak: $knob is not a whole number above zero" >&2
    exit 2
  fi
done
export IOPT_SOAK_OPERATIONS=$operations

if [ ! -x "$soak_build/test/test_table" ]; then
  echo "soak: no test suites in $soak_build; build the soak preset first" \
    "(cmake --workflow --preset soak)" >&2
  exit 2
fi
logs=$soak_build/soak-logs
rm -rf "$logs"
mkdir -p "$logs"

duration() { printf '%dh%02dm%02ds' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }
now() { date '+%F %T'; }

# One part: its output goes to $logs/<part>.log, its row of the final table
# to $logs/<part>.result. The command runs in the background so that an
# interrupted soak can end it by the id in $logs/<part>.pid.
parts=()
run_part() { # part, what it runs (operations or seconds), command...
  local part=$1 amount=$2 begin status result took
  shift 2
  begin=$(date +%s)
  echo "== $(now) $part: started ($amount)"
  printf '== %s: %s\n== started %s\n==' "$part" "$amount" "$(now)" >"$logs/$part.log"
  printf ' %q' "$@" >>"$logs/$part.log"
  echo >>"$logs/$part.log"
  "$@" >>"$logs/$part.log" 2>&1 &
  echo $! >"$logs/$part.pid"
  wait $!
  status=$?
  rm -f "$logs/$part.pid"
  if [ "$status" -eq 0 ]; then result=passed; else result="FAILED (exit $status)"; fi
  took=$(duration $(($(date +%s) - begin)))
  echo "== ended $(now): $result after $took" >>"$logs/$part.log"
  echo "== $(now) $part: $result after $took (log: $logs/$part.log)"
  printf '%s\t%s\t%s\n' "$amount" "$took" "$result" >"$logs/$part.result"
}
# Runs a part in the foreground: for builds, which use every core.
part() {
  parts+=("$1")
  run_part "$@"
}
# Starts a part in the background once fewer than $slots are running.
start_part() {
  parts+=("$1")
  while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do
    wait -n
  done
  run_part "$@" &
}
# A part that cannot run (what it needs failed to build): a failure too.
skip_part() { # part, amount, why
  parts+=("$1")
  printf '%s\t%s\t%s\n' "$2" "-" "NOT RUN: $3" >"$logs/$1.result"
}
stop_parts() {
  trap - INT TERM
  echo "soak: interrupted; ending the parts that are running" >&2
  for pid_file in "$logs"/*.pid; do
    [ -e "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
  done
  wait
  exit 130
}
trap stop_parts INT TERM

# The test cases of a suite that `filter` names (doctest -tc). A filter that
# names none fails: a renamed test would otherwise pass here by running
# nothing.
test_cases() { # suite binary, filter
  local count
  if [ ! -x "$1" ]; then
    echo "soak: $1 was not built"
    return 1
  fi
  count=$("$1" -tc="$2" --count | sed -n 's/.*passing the current filters: \([0-9]*\).*/\1/p')
  if [ "${count:-0}" -eq 0 ]; then
    echo "soak: no test case of $1 matches '$2'"
    return 1
  fi
  exec "$1" -tc="$2" --duration=true
}
# A preset configured and built, from the source folder as presets need.
build_preset() { # preset, build arguments...
  cd "$root" && cmake --preset "$1" && exec cmake --build --preset "$1" "${@:2}"
}
# A fuzz target for $fuzz_seconds over a fresh copy of its seed corpus.
# Inputs it finds stay in the copy; a crash input is left in $logs.
fuzz() { # target
  local corpus=$logs/corpus/$1
  mkdir -p "$corpus" && cp -R "$root/test/fuzz/corpus/$1/." "$corpus/" &&
    exec "$fuzz_build/test/fuzz/$1" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
      -max_len=4096 -artifact_prefix="$logs/$1-" "$corpus"
}

soak_begin=$(date +%s)
echo "== $(now) soak of $(git -C "$root" describe --always --dirty 2>/dev/null || echo "an unknown commit"):" \
  "$operations operations per configuration, fuzzing $fuzz_seconds s per target, $slots at a time"

# The builds first, one at a time, each with every core.
stress_suites=(test_concurrency_table test_concurrency_hcall test_concurrency_prereg)
part tsan-build - build_preset tsan --target "${stress_suites[@]}"
tsan_built=$(cat "$logs/tsan-build.result")
part fuzz-build - build_preset fuzz
fuzz_built=$(cat "$logs/fuzz-build.result")

# Then everything that runs, two at a time, the longest first.
per_config="$operations per configuration"
differential=(
  "listener-two-listeners|test_listener|prereg and DMA listeners on one map*"
  "window-v1|test_window|v1 container against the driver's model*"
  "window-v2|test_window|v2 container against the driver's model*"
  "table|test_table|random operations agree with the reference model*"
  "hcall|test_hcall|random hypercalls agree with a reference model*"
  "prereg-page-counts|test_prereg|page_counts matches a per-page model over random nested ranges"
  "listener-flat-view|test_listener|render agrees with a per-address reference on random maps"
  "prereg-registry|test_prereg|lookup agrees with a model of the regions through random churn"
)
for entry in "${differential[@]}"; do
  IFS='|' read -r name suite filter <<<"$entry"
  start_part "$name" "$per_config" test_cases "$soak_build/test/$suite" "$filter"
done
for target in fuzz_table fuzz_hcall fuzz_registry fuzz_listener fuzz_stream; do
  if [[ $fuzz_built == *passed ]]; then
    start_part "$target" "$fuzz_seconds s" fuzz "$target"
  else
    skip_part "$target" "$fuzz_seconds s" "fuzz-build failed"
  fi
done
for suite in "${stress_suites[@]}"; do
  if [[ $tsan_built == *passed ]]; then
    start_part "tsan-$suite" "$operations in all" \
      env TSAN_OPTIONS=halt_on_error=1 "$tsan_build/test/$suite" --duration=true
  else
    skip_part "tsan-$suite" "$operations in all" "tsan-build failed"
  fi
done
wait

# The table, also kept in $logs/summary.txt.
failed=0
summary=$logs/summary.txt
row() { printf '%-30s %-28s %-10s %s\n' "$@" >>"$summary"; }
: >"$summary"
row part "operations or seconds" "wall time" result
for name in "${parts[@]}"; do
  IFS=$'\t' read -r amount took result <"$logs/$name.result"
  row "$name" "$amount" "$took" "$result"
  [ "$result" = passed ] || failed=1
done
echo "total wall time: $(duration $(($(date +%s) - soak_begin)))" >>"$summary"
if [ "$failed" -eq 0 ]; then
  echo "soak: every part passed" >>"$summary"
else
  echo "soak: FAILED (logs in $logs)" >>"$summary"
fi
echo
cat "$summary"
exit "$failed"
