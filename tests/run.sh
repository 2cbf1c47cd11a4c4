#!/usr/bin/env bash
# Runs the Criterion test binaries, TEST_JOBS at a time (default 3: most
# integration tests spend their time waiting on servers, not on the CPU), and
# sums their closing lines into one "N passed, N failed" line. Each binary's
# output is printed whole when it ends, so lines never interleave. Exits
# non-zero if any binary failed or crashed.
set -u
jobs=${TEST_JOBS:-3}
logs=$(mktemp -d "${TMPDIR:-/tmp}/shopstream-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

run_one() {
  local t=$1 name
  name=$(basename "$t")
  local start=$SECONDS
  "$t" -j1 >"$logs/$name.out" 2>&1
  echo $? >"$logs/$name.rc"
  echo $((SECONDS - start)) >"$logs/$name.secs"
}

# A glob like build/tests/test_* also matches the objects and dependency
# files beside the binaries: those are not tests (a missing binary still
# fails below).
args=()
for t in "$@"; do
  case "$t" in *.o|*.d) ;; *) args+=("$t") ;; esac
done
set -- "${args[@]}"

# The long integration binaries start first, so they overlap the short ones.
long=(); short=()
for t in "$@"; do
  case "$(basename "$t")" in
    *pipeline*|*kafka*|*kpi*|*cluster*|*personal*|*recommend*|*fraud_op*) long+=("$t") ;;
    *) short+=("$t") ;;
  esac
done
running=0
for t in "${long[@]}" "${short[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

pass=0; fail=0; bad=()
for t in "$@"; do
  name=$(basename "$t")
  out="$logs/$name.out"
  rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  echo "== $name ($(cat "$logs/$name.secs" 2>/dev/null || echo ?) s)"
  grep -v '^\[----\]   *$' "$out" | tail -n 40
  # A failure's own lines (the assertion, its message, the test's name)
  # again, in case a sanitizer report pushed them out of the tail above.
  if [ "$rc" -ne 0 ]; then
    echo "-- $name: failures"
    grep -E -A3 '^\[----\] .*(Assertion Failed|Unexpected signal|Timed out)|^\[(FAIL|CRASH)\]' "$out" |
      grep -v '^\[----\]   *$' | head -n 60
  fi
  line=$(grep -E 'Synthesis: Tested: [0-9]+' "$out" | tail -1)
  p=$(sed -nE 's/.*Passing: ([0-9]+).*/\1/p' <<<"$line")
  f=$(sed -nE 's/.*Failing: ([0-9]+).*/\1/p' <<<"$line")
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    bad+=("$name")
    [ -z "$line" ] && fail=$((fail + 1))
  fi
done
echo
# The failures once more at the very end: CI keeps only the tail of a log.
for name in "${bad[@]}"; do
  echo "-- $name: failures (recap)"
  grep -E -A3 '^\[ERR \]|^\[----\] .*(Assertion Failed|Unexpected signal|Timed out)|^\[(FAIL|CRASH)\]|ERROR: (Address|Leak)Sanitizer|runtime error:' \
    "$logs/$name.out" | grep -v '^\[----\]   *$' | tail -n 80
done
[ ${#bad[@]} -gt 0 ] && echo "failed binaries: ${bad[*]}"
echo "tests: $pass passed, $fail failed"
[ ${#bad[@]} -eq 0 ] && [ "$fail" -eq 0 ]
