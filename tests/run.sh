#!/usr/bin/env bash
# Runs each Criterion test binary in turn and sums their closing lines into one
# "N passed, N failed" line. Exits non-zero if any binary failed or crashed.
set -u
pass=0; fail=0; bad=()
for t in "$@"; do
  name=$(basename "$t")
  echo "== $name"
  out=$("$t" --jobs=1 -j1 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^\[----\]' | tail -n 40
  line=$(printf '%s\n' "$out" | grep -E 'Synthesis: Tested: [0-9]+' | tail -1)
  p=$(printf '%s' "$line" | sed -nE 's/.*Passing: ([0-9]+).*/\1/p')
  f=$(printf '%s' "$line" | sed -nE 's/.*Failing: ([0-9]+).*/\1/p')
  c=$(printf '%s' "$line" | sed -nE 's/.*Crashing: ([0-9]+).*/\1/p')
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then bad+=("$name"); [ -z "$line" ] && fail=$((fail + 1)); fi
done
echo
[ ${#bad[@]} -gt 0 ] && echo "failed binaries: ${bad[*]}"
echo "tests: $pass passed, $fail failed"
[ ${#bad[@]} -eq 0 ] && [ "$fail" -eq 0 ]
