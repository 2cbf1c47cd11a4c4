#!/usr/bin/env bash
# make soak: a long run of the whole stream with failures, then proof that
# nothing was lost or counted twice.
#
# Events are replayed at a steady rate into librdkafka's mock cluster for
# SOAK_SECONDS. During the first half the processor is killed (kill -9, and
# every third time a clean SIGTERM) at random moments and restarted; during
# the second half one processor runs on and its RSS is sampled every 5 s (a
# leak shows as growth). When the replay is done the processor drains the
# topics, and a clean reference run over the same topics into a second
# redis-server gives the state it should have ended in: the exactly-once
# keys (per-user counts, profiles, fraud state, KPI windows, dedupe ids)
# must be byte-identical in `dump-state`.
#
#   SOAK_SECONDS (default 300)  SOAK_RATE events/s (default 800)
#   SOAK_OPERATORS (default dedupe,counts,profile,kpi,reviews,fraud)
#   SOAK_KILL_MAX seconds between failures, at most (default 12)
# Figures go to stdout and to the "soak" section of bench/RESULTS.md. Exits 1
# if the states differ.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
SECONDS_TOTAL=${SOAK_SECONDS:-300}
RATE=${SOAK_RATE:-800}
OPS=${SOAK_OPERATORS:-dedupe,counts,profile,kpi,reviews,fraud}
KILL_MAX=${SOAK_KILL_MAX:-12}
PARTITIONS=12
. deploy/lib.sh
sp_init soak
events=$((SECONDS_TOTAL * RATE))
# The mock keeps at most 5 MiB per partition (stream/mock_kafka.c): about
# 40k messages of this size, so 12 partitions x 3 topics hold ~1M events.
if [ "$events" -gt 900000 ]; then
  echo "soak: $events events would overflow the mock cluster's retention; lower SOAK_SECONDS or SOAK_RATE" >&2
  exit 2
fi
rport=$(sp_free_port); sp_redis_start "$rport" rport
fport=$(sp_free_port); sp_redis_start "$fport" fport
sp_mock_start "$PARTITIONS"; brokers=$sp_bootstrap
"$BIN" gen --events "$events" --seed 7 --format proto --fraud-rate 0.02 --out "$tmp/events.pb" \
  --truth "$tmp/truth.json" 2>/dev/null
echo "soak: $events events at $RATE/s for ${SECONDS_TOTAL}s, operators $OPS, kill -9 every 1-${KILL_MAX}s in the first half"

"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --rate "$RATE" --quiet 2>"$tmp/replay.log" &
replay_pid=$!

# A killed member leaves the group only when its session times out: 6 s, as
# in the tests, instead of librdkafka's 45 s.
run_args=(--brokers "$brokers" --operators "$OPS" --log.level warn --http.listen 0
          -X session.timeout.ms=6000 -X heartbeat.interval.ms=500)
start_processor() { # $1 log name
  "$BIN" run "${run_args[@]}" --redis.url "redis://127.0.0.1:$rport" --group.id soak \
    >>"$tmp/$1.out" 2>>"$tmp/$1.log" &
  proc=$!
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# The sum of the next offsets committed to Redis, over every partition and topic.
committed() {
  redis-cli -p "$rport" eval "local s = 0
    for _, k in ipairs(redis.call('KEYS', '{p*}:meta')) do
      local v = redis.call('HGETALL', k)
      for i = 1, #v, 2 do
        if string.sub(v[i], 1, 4) == 'off:' then s = s + tonumber(v[i + 1]) end
      end
    end
    return s" 0
}

t0=$(date +%s)
kills=0; terms=0
progressed=0
while [ $(( $(date +%s) - t0 )) -lt $((SECONDS_TOTAL / 2)) ]; do
  start_processor chaos
  # Kill it while it works: once it has committed something (it first has
  # to join the group), at a random moment after that.
  c0=$(committed)
  for _ in $(seq 300); do [ "$(committed)" -gt "$c0" ] && { progressed=$((progressed + 1)); break; }; sleep 0.1; done
  sleep $((RANDOM % KILL_MAX)).$((RANDOM % 10))
  if [ $(( (kills + terms + 1) % 3 )) -eq 0 ]; then
    kill -TERM "$proc"; terms=$((terms + 1))
  else
    kill -9 "$proc"; kills=$((kills + 1))
  fi
  wait "$proc" 2>/dev/null || true
done
echo "soak: first half done: $kills kill -9, $terms SIGTERM ($progressed of them after the processor had committed)"

start_processor steady
rss=()
while kill -0 "$replay_pid" 2>/dev/null; do
  sleep 5
  rss+=("$(rss_kb "$proc")")
done
wait "$replay_pid" || { cat "$tmp/replay.log"; exit 1; }
replayed=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)
rss+=("$(rss_kb "$proc")")
kill -TERM "$proc"; wait "$proc" 2>/dev/null || true
# Drain what is left, then the reference run over the same topics.
"$BIN" run "${run_args[@]}" --redis.url "redis://127.0.0.1:$rport" --group.id soak \
  --run.stop_when_idle_ms 3000 >"$tmp/drain.out" 2>"$tmp/drain.log"
"$BIN" run "${run_args[@]}" --redis.url "redis://127.0.0.1:$fport" --group.id reference \
  --run.stop_when_idle_ms 3000 >"$tmp/ref.out" 2>"$tmp/ref.log"
ref_msgs=$(sed -nE 's/^counters: messages=([0-9]+).*/\1/p' "$tmp/ref.out")
if [ "$ref_msgs" != "$replayed" ]; then
  echo "soak: the reference run read $ref_msgs of $replayed messages (mock retention?)" >&2
  exit 1
fi

verdict=identical; status=0; prof_line=
for pat in '*:u:*' '*:prof:*' '*:fraud:*' '*:kpi:*' '*:dd*'; do
  "$BIN" dump-state --redis-url "redis://127.0.0.1:$rport" --match "$pat" >"$tmp/a.txt"
  "$BIN" dump-state --redis-url "redis://127.0.0.1:$fport" --match "$pat" >"$tmp/b.txt"
  keys=$(wc -l <"$tmp/b.txt")
  if cmp -s "$tmp/a.txt" "$tmp/b.txt"; then
    echo "soak: $pat: $keys keys identical"
  elif [ "$pat" = '*:prof:*' ] &&
       python3 bench/soak_compare.py "$tmp/a.txt" "$tmp/b.txt" >"$tmp/cmp.txt"; then
    prof_line=$(tail -1 "$tmp/cmp.txt")
    echo "soak: $pat: $prof_line"
  else
    echo "soak: $pat: DIFFERENT ($(diff "$tmp/a.txt" "$tmp/b.txt" | grep -c '^[<>]') lines)"
    cp "$tmp/a.txt" "${SOAK_KEEP:-/tmp}/soak-failed.txt"; cp "$tmp/b.txt" "${SOAK_KEEP:-/tmp}/soak-clean.txt"
    verdict=different; status=1
  fi
done
rss_first=${rss[0]}; rss_last=${rss[-1]}
rss_max=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
echo "soak: steady processor RSS ${rss_first} -> ${rss_last} KiB (max ${rss_max}) over ${#rss[@]} samples"
echo "soak: state after failures vs clean run: $verdict"

prof_note=
if [ -n "$prof_line" ]; then
  prof_note=" Profiles: $prof_line (bench/soak_compare.py: \`aff\` and \`sessions\` are sketches
whose value depends on how one user's events from the three topics interleave, which differs
between any two runs; every counter matches exactly)."
fi
section=$(cat <<MD
<!-- soak:begin -->
## Soak: failures during a long run (make soak)

Command: \`make soak\` (SOAK_SECONDS=$SECONDS_TOTAL SOAK_RATE=$RATE SOAK_KILL_MAX=$KILL_MAX), $(date -u +%Y-%m-%d), $(nproc) cores.
$replayed events replayed at $RATE/s into the mock cluster ($PARTITIONS partitions x 3 topics);
operators \`$OPS\`. First half: the processor killed $kills times with kill -9 and stopped
$terms times with SIGTERM, each time once it had committed progress ($progressed of
$((kills + terms)) within 30 s), at a random moment 0-${KILL_MAX} s after that, and restarted.
Second half: one processor, RSS sampled every 5 s: ${rss_first} -> ${rss_last} KiB (max ${rss_max}, ${#rss[@]} samples;
the state cache fills towards \`cache.max_entries\`, so telling a leak apart needs a run past that bound).
Final state (dump-state of per-user counts, profiles, fraud state, KPI windows, dedupe ids)
against a clean run over the same topics: **$verdict**.$prof_note
<!-- soak:end -->
MD
)
python3 - "$section" <<'PY'
import re, sys
path = "bench/RESULTS.md"
s = open(path).read()
new = sys.argv[1]
if "<!-- soak:begin -->" in s:
    s = re.sub(r"<!-- soak:begin -->.*?<!-- soak:end -->", lambda m: new, s, flags=re.S)
else:
    s = s.rstrip("\n") + "\n\n" + new + "\n"
open(path, "w").write(s)
PY
exit $status
