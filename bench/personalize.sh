#!/usr/bin/env bash
# Personalization benchmark (issue 5): gen -> train (GRU, d=32) -> replay ->
# run with dedupe,counts,profile,mf,recommend on the mock cluster, beside the
# raw consume rate of the same topics in the same run; then the latency from
# an event's arrival to its recommendation being produced at half the
# measured rate (replay paced, small batches). The same events also go
# through `dedupe,counts` alone, so that the personalization operators' own
# CPU per event is the difference of the two runs. Last, a warm
# long-running processor: the same events, then rounds of as many again of
# the same users, each round's CPU read from the processor's /metrics. Prints
# one markdown section for bench/RESULTS.md.
#   BENCH_EVENTS (100000)  BENCH_ITEMS (10000)  BENCH_PARTITIONS (6)
#   BENCH_BATCH_MS (2: batch.max_ms of the latency run)
#   BENCH_WARM_EVENTS (BENCH_EVENTS: each of the warm processor's rounds)
#   BENCH_WARM_ROUNDS (3: rounds of new events of the same users, each measured apart)
#   SHOPSTREAM_RECOMMEND_CANDIDATES (256; 0 scores every item)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${BENCH_EVENTS:-100000}
ITEMS=${BENCH_ITEMS:-10000}
PARTITIONS=${BENCH_PARTITIONS:-6}
OPS=dedupe,counts,profile,mf,recommend
. deploy/lib.sh
. bench/personalize_lib.sh
sp_init pbench
rport=$(sp_free_port)
sp_redis_start "$rport" rport
sp_mock_start "$PARTITIONS"
brokers=$sp_bootstrap

pz_model "$tmp/model.gru" "$ITEMS"
pz_events "$tmp/events.pb" "$EVENTS" "$ITEMS"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet 2>"$tmp/replay.log"
msgs=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)

field() { sed -nE "s/.* $1=([^ ]+).*/\1/p" <<<"$2"; }
raw=$("$BIN" bench-consume --brokers "$brokers" --messages "$msgs")
raw_rate=$(field rate "$raw")
CANDS=${SHOPSTREAM_RECOMMEND_CANDIDATES:-256}
export SHOPSTREAM_RECOMMEND_CANDIDATES=$CANDS
BATCH_MS=${BENCH_BATCH_MS:-2}
run() { # group, operators, extra args...; prints counters + throughput + cpu line
  local g=$1 ops=$2; shift 2
  redis-cli -p "$rport" flushall >/dev/null
  /usr/bin/time -f "cpu: user=%U sys=%S" "$BIN" run --brokers "$brokers" \
    --redis.url "redis://127.0.0.1:$rport" --group.id "$g" --run.stop_when_idle_ms 1500 \
    --log.level warn --http.listen 0 --operators "$ops" --recommend.model "$tmp/model.gru" "$@" \
    >"$tmp/$g.out" 2>"$tmp/$g.log"
  cat "$tmp/$g.out"; grep '^cpu:' "$tmp/$g.log"
}
cpu_of() { awk -v a="$(field user "$1")" -v b="$(field sys "$1")" 'BEGIN{print a+b}'; }
# the processor's own figure for its consumer (operator) threads, start-up included
workers_of() { sed -nE 's/^cpu_seconds: .* workers=([0-9.]+).*/\1/p' <<<"$1"; }
base=$(run "pb-base-$$" dedupe,counts)
cpu_base=$(cpu_of "$(grep '^cpu:' <<<"$base")")
full=$(run "pb-full-$$" "$OPS")
c=$(grep '^counters:' <<<"$full"); t=$(grep '^throughput:' <<<"$full"); u=$(grep '^cpu:' <<<"$full")
rate=$(field rate "$t"); events=$(field events "$c"); recs=$(field recommendations "$c")
cpu=$(cpu_of "$u")
per_core=$(awk -v e="$msgs" -v s="$cpu" 'BEGIN{printf "%.0f", e/s}')
ops_us=$(awk -v a="$cpu" -v b="$cpu_base" -v e="$msgs" 'BEGIN{printf "%.1f", (a-b)/e*1e6}')
ops_rate=$(awk -v a="$cpu" -v b="$cpu_base" -v e="$msgs" 'BEGIN{printf "%.0f", (a>b)?e/(a-b):0}')

# The start-up apart: the same processor against a fresh, empty mock cluster
# (its topics are created on first use) loads the model, builds the candidate
# lists, joins, finds every partition at its end and stops after the idle
# time. Its CPU is what a long-running processor pays once; the rest of the
# full run's CPU is the per-event cost.
"$BIN" mock-kafka --partitions "$PARTITIONS" --bootstrap-file "$tmp/bootstrap-empty" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$tmp/bootstrap-empty" ] && break; sleep 0.05; done
empty=$(brokers=$(cat "$tmp/bootstrap-empty") run "pb-empty-$$" "$OPS")
cpu_start=$(cpu_of "$(grep '^cpu:' <<<"$empty")")
steady_rate=$(awk -v a="$cpu" -v b="$cpu_start" -v e="$msgs" 'BEGIN{printf "%.0f", (a>b)?e/(a-b):0}')
# The same for the thread that runs the operators alone (librdkafka's
# threads and the Redis committer apart): events per CPU-second of the
# processing core.
wcpu=$(workers_of "$full") wcpu_start=$(workers_of "$empty")
wsteady_rate=$(awk -v a="$wcpu" -v b="$wcpu_start" -v e="$msgs" 'BEGIN{printf "%.0f", (a>b)?e/(a-b):0}')

# Latency at half the measured rate: the processor first, then a paced replay
# into fresh topics (a new mock cluster each time), batches closed every
# BATCH_MS. Twice: with librdkafka's default fetch.wait.max.ms (500), which
# the mock cluster honours even with data waiting, so messages reach the
# processor in bursts of half a second's worth; and with 5 ms, as a broker
# answering fetch.min.bytes=1 at once would deliver them.
half=$((rate / 2))
lat_run() { # name, extra run args...; the prequential.py --latency line into $tmp/lat-<name>.q
  local name=$1; shift
  "$BIN" mock-kafka --partitions "$PARTITIONS" --bootstrap-file "$tmp/bootstrap-$name" >/dev/null 2>&1 &
  local mock=$!
  pids+=($mock)
  for _ in $(seq 200); do [ -s "$tmp/bootstrap-$name" ] && break; sleep 0.05; done
  local b2
  b2=$(cat "$tmp/bootstrap-$name")
  redis-cli -p "$rport" flushall >/dev/null
  "$BIN" run --brokers "$b2" --redis.url "redis://127.0.0.1:$rport" --group.id "pb-lat-$$" \
    --run.stop_when_idle_ms 3000 --log.level warn --http.listen 0 --operators "$OPS" \
    --recommend.model "$tmp/model.gru" --batch.max_ms "$BATCH_MS" "$@" \
    >"$tmp/lat-$name.out" 2>"$tmp/lat-$name.log" &
  local lat_pid=$!
  sleep 3
  "$BIN" replay "$tmp/events.pb" --brokers "$b2" --rate "$half" --quiet 2>/dev/null
  wait "$lat_pid"
  kcat -C -b "$b2" -t shop.recommendations -e -q -f '%R%s' >"$tmp/lat-$name.recs"
  echo " $(python3 bench/prequential.py --latency "$tmp/lat-$name.recs")" >"$tmp/lat-$name.q"
  kill "$mock" 2>/dev/null || true
}
lat_run default
lat_run fetch5 --kafka.fetch.wait.max.ms 5
# The latency settings: small batches, so a burst is cut into pieces whose
# lists go out at once, and commit.interval_ms, so that small batches do not
# each cost a state commit (nor mf's item-delta script).
lat_run small --kafka.fetch.wait.max.ms 5 --batch.max_messages 32 --commit.interval_ms 100
# A long-running processor, warm: one processor (never stopping on idle)
# takes the events above, which fill its state cache, item vectors and
# memory, then WARM_ROUNDS rounds of WARM_EVENTS more events of the same
# users, each a day after the one before (another seed). A round's CPU comes
# from the processor's own /metrics (process_cpu_seconds_total,
# shopstream_worker_cpu_seconds_total), read before its events are replayed
# (the pass before consumed and committed) and once they are; then once more
# after 2 idle seconds, for the idle cost. The figure is the rounds' median:
# on a shared machine one round can run half as fast as the next.
WARM_EVENTS=${BENCH_WARM_EVENTS:-$EVENTS}
WARM_ROUNDS=${BENCH_WARM_ROUNDS:-3}
for r in $(seq "$WARM_ROUNDS"); do # round r: seed 3 + r, a day after the round before
  "$BIN" gen --events "$WARM_EVENTS" --items "$ITEMS" --seed $((3 + r)) \
    --start-ms $((1767312000000 + (r - 1) * 86400000)) --format proto --out "$tmp/events2-$r.pb" \
    --truth "$tmp/events2-$r-truth.json"
done
"$BIN" mock-kafka --partitions "$PARTITIONS" --bootstrap-file "$tmp/bootstrap-warm" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$tmp/bootstrap-warm" ] && break; sleep 0.05; done
bw=$(cat "$tmp/bootstrap-warm")
hport=$(sp_free_port)
redis-cli -p "$rport" flushall >/dev/null
"$BIN" run --brokers "$bw" --redis.url "redis://127.0.0.1:$rport" --group.id "pb-warm-$$" \
  --log.level warn --http.listen "127.0.0.1:$hport" --operators "$OPS" \
  --recommend.model "$tmp/model.gru" >"$tmp/warm.out" 2>"$tmp/warm.log" &
warm_pid=$!
pids+=($warm_pid)
metric() { curl -s "http://127.0.0.1:$hport/metrics" | sed -nE "s/^$1 ([0-9.e+]+)\$/\1/p"; }
cpu_now() { echo "$(metric process_cpu_seconds_total) $(metric shopstream_worker_cpu_seconds_total)"; }
consumed() { # until the processor has consumed $1 messages, then 1 s for the last commit
  for _ in $(seq 1200); do
    [ "$(metric shopstream_messages_total)" -ge "$1" ] 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
}
"$BIN" replay "$tmp/events.pb" --brokers "$bw" --quiet 2>/dev/null
consumed "$msgs"
total=$msgs
wrate() { awk -v a="$1" -v b="$2" -v e="$3" 'BEGIN{printf "%.0f", (b>a)?e/(b-a):0}'; }
median() { tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
warm_procs=() warm_workers=() warm_cpus=()
for r in $(seq "$WARM_ROUNDS"); do # each round's CPU apart: the spread shows the machine's noise
  read -r wp1 ww1 <<<"$(cpu_now)"
  "$BIN" replay "$tmp/events2-$r.pb" --brokers "$bw" --quiet 2>"$tmp/replay2.log"
  msgs2=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay2.log" | tail -1)
  total=$((total + msgs2))
  consumed "$total"
  read -r wp2 ww2 <<<"$(cpu_now)"
  warm_procs+=("$(wrate "$wp1" "$wp2" "$msgs2")") warm_workers+=("$(wrate "$ww1" "$ww2" "$msgs2")")
  warm_cpus+=("$(awk -v a="$wp1" -v b="$wp2" -v c="$ww1" -v d="$ww2" 'BEGIN{printf "%.2f/%.2f", b-a, d-c}')")
done
sleep 2
read -r wp3 ww3 <<<"$(cpu_now)"
warm_n=$(metric shopstream_messages_total)
kill "$warm_pid" 2>/dev/null || true
wait "$warm_pid" 2>/dev/null || true
warm_proc=$(echo "${warm_procs[*]}" | median) warm_worker=$(echo "${warm_workers[*]}" | median)
warm_idle=$(awk -v a="$wp2" -v b="$wp3" 'BEGIN{printf "%.3f", (b-a)/2}')
slashed() { local IFS=/; echo "$*"; }
warm_cpu="$(IFS=';'; echo "${warm_cpus[*]}" | sed 's/;/; /g') s (whole process/operator thread)"

lq=$(cat "$tmp/lat-default.q") lq5=$(cat "$tmp/lat-fetch5.q") lqs=$(cat "$tmp/lat-small.q")
kcat -C -b "$brokers" -t shop.recommendations -e -q -f '%R%s' >"$tmp/full.recs"
fq=" $(python3 bench/prequential.py --latency "$tmp/full.recs")"

cat <<MD
<!-- personalize:begin -->
## Personalization (issue 5): profile, mf, recommend

Command: \`nice bash bench/personalize.sh\` (BENCH_EVENTS=$EVENTS BENCH_ITEMS=$ITEMS BENCH_PARTITIONS=$PARTITIONS
SHOPSTREAM_RECOMMEND_CANDIDATES=$CANDS BENCH_BATCH_MS=$BATCH_MS),
$(date -u +%Y-%m-%d), $(nproc) cores shared with other work (load average $(cut -d' ' -f1 /proc/loadavg) at the end), $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1).
GRU d=32 trained on 100k generated events over $ITEMS items; $msgs messages (protobuf) replayed into
the mock cluster; one processor with \`--operators $OPS\`, default settings
(recommend on view and click, rate limit 1 s of event time, blend 1,0.5,0.2, mf.neg 2).

| measure | value |
|---|---|
| raw consume (bench-consume, same topics) | $raw_rate msg/s |
| shopstream with personalization, wall clock | $rate msg/s |
| processor CPU (user+sys) | $cpu s, i.e. $per_core msg per CPU-second |
| the same processor over no events (start-up: model, candidate lists, join, idle stop) | $cpu_start s |
| steady state: the full run's CPU less the start-up | $steady_rate msg per CPU-second |
| the operator thread alone (\`cpu_seconds: workers=\`): full run, start-up | $wcpu s, $wcpu_start s |
| steady state of the operator thread (its CPU less its start-up) | $wsteady_rate msg per CPU-second |
| the same events through \`dedupe,counts\` only | $cpu_base s |
| personalization operators' own CPU (difference) | $ops_us us per message, i.e. $ops_rate msg per CPU-second |
| events / recommendations emitted | $events / $recs |
| warm, long-running processor: $WARM_ROUNDS rounds of $msgs2 more messages of the same users, each a day later, after the $msgs above (\`/metrics\`; consumed in all: $warm_n) | CPU per round $warm_cpu |
| warm steady state, whole process: median (rounds) | $warm_proc msg per CPU-second ($(slashed "${warm_procs[@]}")) |
| warm steady state, the operator thread alone: median (rounds) | $warm_worker msg per CPU-second ($(slashed "${warm_workers[@]}")) |
| the warm processor idle (CPU per second, for scale) | $warm_idle s |
| arrival -> recommendation produced, full speed (batches of 2000 / 100 ms) | p50 $(field p50 "$fq") ms, p99 $(field p99 "$fq") ms |
| the same at half that rate ($half msg/s paced replay, batch.max_ms $BATCH_MS) | p50 $(field p50 "$lq") ms, p99 $(field p99 "$lq") ms ($(field lists "$lq") lists) |
| the same, \`--kafka.fetch.wait.max.ms 5\` | p50 $(field p50 "$lq5") ms, p99 $(field p99 "$lq5") ms ($(field lists "$lq5") lists) |
| the same, also \`--batch.max_messages 32 --commit.interval_ms 100\` | p50 $(field p50 "$lqs") ms, p99 $(field p99 "$lqs") ms ($(field lists "$lqs") lists) |

Latency is Recommendation.latency_ms of every list read back from shop.recommendations with kcat:
from the poll that returned the message to the sp_sink_produce call (queued, not yet
acknowledged). (The counters line's rec_p50_ms/rec_p99_ms use the spine's histogram, whose last
bucket is 55 ms: values above it read as 55.109.)
<!-- personalize:end -->
MD
