#!/usr/bin/env bash
# make bench: gen -> replay -> process, with the raw consume rate of the same
# topics measured in the same run (alternating rounds, so machine noise hits
# both alike), on librdkafka's mock cluster and on a real Apache Kafka broker
# (deploy/local/kafka.sh, started in a temporary directory and stopped at the
# end). Figures go to stdout and into the "spine" (mock) and "spine-kafka"
# (real broker) sections of bench/RESULTS.md, with the command that made them.
#   BENCH_EVENTS (default 200000)  BENCH_ROUNDS (default 2)  BENCH_PARTITIONS (12)
#   BENCH_KAFKA=mock|local|both (default both; local and both need Java 17)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${BENCH_EVENTS:-200000}
ROUNDS=${BENCH_ROUNDS:-2}
PARTITIONS=${BENCH_PARTITIONS:-12}
BACKENDS=${BENCH_KAFKA:-both}
[ "$BACKENDS" = both ] && BACKENDS="mock local"
. deploy/lib.sh
sp_init bench
rport=$(sp_free_port)
sp_redis_start "$rport" rport
"$BIN" gen --events "$EVENTS" --seed 1 --format proto --out "$tmp/events.pb" --truth "$tmp/truth.json"

# bench_on mock|local: one backend's rounds and its section of RESULTS.md.
bench_on() {
backend=$1
if [ "$backend" = mock ]; then
  sp_mock_start "$PARTITIONS"
  brokers=$sp_bootstrap
  where="librdkafka's mock cluster"
else
  kafka_dir=$tmp/kafka
  t0=$(date +%s%3N)
  brokers=$(bash deploy/local/kafka.sh start --dir "$kafka_dir" --watch-pid $$ | sed -nE 's/^bootstrap: //p')
  [ -n "$brokers" ] || { echo "bench: the local Kafka broker did not start" >&2; exit 1; }
  start_s=$(awk -v a="$t0" -v b="$(date +%s%3N)" 'BEGIN{printf "%.1f", (b-a)/1000}')
  "$BIN" topics create --brokers "$brokers" --partitions "$PARTITIONS" \
    shop.clicks shop.orders shop.reviews shop.deadletter 2>/dev/null
  where="Apache Kafka $(sed -nE 's/^KAFKA_VERSION=\$\{KAFKA_VERSION:-([0-9.]+)\}.*/\1/p' deploy/local/kafka.sh) (deploy/local/kafka.sh, one KRaft node, started in $start_s s)"
fi

"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet 2>"$tmp/replay.log" || { cat "$tmp/replay.log"; exit 1; }
msgs=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)
replay_rate=$(sed -nE 's/^replay: .*\(([0-9]+)\/s\).*/\1/p' "$tmp/replay.log" | tail -1)
echo "bench: $msgs messages in $PARTITIONS partitions x 3 topics ($backend)"

raw_rates=(); proc_rates=(); p50s=(); p99s=(); rss=()
for r in $(seq "$ROUNDS"); do
  out=$("$BIN" bench-consume --brokers "$brokers" --messages "$msgs")
  raw_rates+=("$(sed -nE 's/.* rate=([0-9]+).*/\1/p' <<<"$out")")
  redis-cli -p "$rport" flushall >/dev/null
  "$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id "bench-$r-$$" \
    --run.stop_when_idle_ms 1500 --log.level warn >"$tmp/run.out" 2>"$tmp/run.log"
  c=$(grep '^counters:' "$tmp/run.out"); t=$(grep '^throughput:' "$tmp/run.out")
  proc_rates+=("$(sed -nE 's/.* rate=([0-9]+).*/\1/p' <<<"$t")")
  rss+=("$(sed -nE 's/.* max_rss_kb=([0-9]+).*/\1/p' <<<"$t")")
  p50s+=("$(sed -nE 's/.* commit_p50_ms=([0-9.]+).*/\1/p' <<<"$c")")
  p99s+=("$(sed -nE 's/.* commit_p99_ms=([0-9.]+).*/\1/p' <<<"$c")")
  echo "round $r: raw ${raw_rates[-1]} msg/s, shopstream ${proc_rates[-1]} msg/s, commit p50 ${p50s[-1]} ms p99 ${p99s[-1]} ms, peak RSS ${rss[-1]} KiB"
done

table=$(for i in $(seq 0 $((ROUNDS - 1))); do
  ratio=$(awk -v a="${proc_rates[$i]}" -v b="${raw_rates[$i]}" 'BEGIN{printf "%.0f%%", 100*a/b}')
  echo "| $((i + 1)) | ${raw_rates[$i]} | ${proc_rates[$i]} | $ratio | ${p50s[$i]} | ${p99s[$i]} | $((${rss[$i]} / 1024)) |"
done)
if [ "$backend" = mock ]; then
section=$(cat <<MD
<!-- spine:begin -->
## Spine: Kafka -> operators (dedupe, counts) -> Redis, mock cluster

Command: \`make bench\` (BENCH_EVENTS=$EVENTS BENCH_ROUNDS=$ROUNDS BENCH_PARTITIONS=$PARTITIONS), $(date -u +%Y-%m-%d),
$(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1).
$msgs messages (protobuf) over $PARTITIONS partitions x 3 topics in librdkafka's mock cluster; one
processor with the default operators (dedupe,counts) and batches of up to 2000 messages / 100 ms;
a local redis-server. Raw = \`shopstream bench-consume\`, the same consumer settings with no processing,
run just before each processor round. Rates run from the first message to the last one (raw) or the
last commit (shopstream).

| round | raw consume msg/s | shopstream msg/s | ratio | commit p50 ms | commit p99 ms | peak RSS MiB |
|---|---|---|---|---|---|---|
$table
<!-- spine:end -->
MD
)
mark=spine
else
section=$(cat <<MD
<!-- spine-kafka:begin -->
## Spine on a real broker: Apache Kafka -> operators (dedupe, counts) -> Redis

Command: \`make bench\` (BENCH_EVENTS=$EVENTS BENCH_ROUNDS=$ROUNDS BENCH_PARTITIONS=$PARTITIONS BENCH_KAFKA=$BENCH_KAFKA_SHOWN), $(date -u +%Y-%m-%d),
$(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end.
The same $msgs messages as the mock section (protobuf, $PARTITIONS partitions x 3 topics), replayed
into $where at $replay_rate records/s;
then, in alternating rounds, the raw consume rate (\`shopstream bench-consume\`, no processing) and one
processor (dedupe,counts; batches of up to 2000 messages / 100 ms; a local redis-server), both reading
the same topics of the same broker from the beginning. Commit latency = one batch's pipelined
Redis commit (all partitions' fenced scripts), as \`run\` reports it.

| round | raw consume msg/s | shopstream msg/s | ratio | commit p50 ms | commit p99 ms | peak RSS MiB |
|---|---|---|---|---|---|---|
$table
<!-- spine-kafka:end -->
MD
)
mark=spine-kafka
fi
f=bench/RESULTS.md
[ -f "$f" ] || printf '# Benchmark results\n\nFigures from `make bench` and the scripts under bench/, each with the command that produced it.\n' > "$f"
if grep -q "<!-- $mark:begin -->" "$f"; then
  awk -v repl="$section" -v b="<!-- $mark:begin -->" -v e="<!-- $mark:end -->" \
    '$0==b{print repl; skip=1} $0==e{skip=0; next} !skip' "$f" > "$tmp/r.md"
  cp "$tmp/r.md" "$f"
else
  printf '\n%s\n' "$section" >> "$f"
fi
echo "bench: $backend results written to $f"
}

BENCH_KAFKA_SHOWN=${BENCH_KAFKA:-both}
for b in $BACKENDS; do
  if [ "$b" = local ] && ! why=$(bash deploy/local/kafka.sh available 2>&1); then
    echo "bench: no real-broker round: $why" >&2
    continue
  fi
  bench_on "$b"
done
