#!/usr/bin/env bash
# Where the spine's CPU goes, one processor run at a time: gen -> replay into
# the mock cluster -> raw consume rate -> `shopstream run` (its rate, its own
# user/sys CPU and peak RSS), with the CPU ticks (1/100 s) that redis-server
# and the mock cluster spent during the run, and Redis's command stats (the
# raw consumer's rate and CPU first, for comparison). The
# figures of bench/RESULTS.md "The spine's cost per message" came from it.
#
#   bash bench/spine_cpu.sh [EVENTS] [WRAPPER ...]
#     EVENTS   default 200000
#     WRAPPER  runs the processor under a tool, e.g.
#              valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out
#   RUN_ARGS   extra `run` arguments (e.g. "--operators dedupe")
#   RUNBIN     the processor binary to measure (default bin/shopstream), to
#              compare two builds side by side on the same events
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${1:-200000}
[ $# -gt 0 ] && shift
. deploy/lib.sh
sp_init spinecpu
rport=$(sp_free_port); sp_redis_start "$rport" rport
"$BIN" gen --events "$EVENTS" --seed 1 --format proto --out "$tmp/events.pb" --truth "$tmp/truth.json"
sp_mock_start 12; brokers=$sp_bootstrap
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet 2>"$tmp/replay.log"
msgs=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)
# the raw consumer's own CPU too, and the mock's while it reads, to set the
# processor's beside them
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_pid=${pids[0]}; mock_pid=${pids[1]}
m0=$(ticks "$mock_pid")
/usr/bin/time -f "raw time: %U user %S sys %e wall %M KiB %R minflt" \
  "$BIN" bench-consume --brokers "$brokers" --messages "$msgs" 2>&1 | grep -E "^raw"
echo "raw mock cpu: $(( $(ticks "$mock_pid") - m0 )) ticks"
r0=$(ticks "$redis_pid"); m0=$(ticks "$mock_pid")
# shellcheck disable=SC2086
/usr/bin/time -f "time: %U user %S sys %e wall %M KiB %R minflt %c invcs %w vcs" "$@" "${RUNBIN:-$BIN}" run \
  --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id "cpu-$$" \
  --run.stop_when_idle_ms 1500 --log.level warn ${RUN_ARGS:-} 2>&1 |
  grep -E '^(counters|throughput|time)'
redis-cli -p "$rport" info commandstats | grep -E 'cmdstat_(exec|eval|evalsha|hset|hgetall):' || true
echo "redis cpu: $(( $(ticks "$redis_pid") - r0 )) ticks, mock cpu: $(( $(ticks "$mock_pid") - m0 )) ticks"
