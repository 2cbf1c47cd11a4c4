#!/usr/bin/env bash
# make demo: the embedded default. Starts a private redis-server (temporary
# directory, free port) and librdkafka's mock Kafka cluster (or uses
# KAFKA=host:port), generates DEMO_EVENTS events, replays them into the input
# topics, runs the processor until everything is consumed, stops everything,
# and ends with one line: summary: events=N clicks=... orders=... ...
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${DEMO_EVENTS:-100000}
PARTITIONS=${DEMO_PARTITIONS:-6}
SEED=${DEMO_SEED:-42}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shopstream-demo.XXXXXX")
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
  echo "demo: no free port" >&2; exit 1
}

log() { echo "demo: $*" >&2; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
  --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
log "redis-server on 127.0.0.1:$rport"

if [ -n "${KAFKA:-}" ]; then
  brokers=$KAFKA
  log "using Kafka at $brokers (topics must exist: shop.clicks shop.orders shop.reviews shop.deadletter)"
else
  "$BIN" mock-kafka --partitions "$PARTITIONS" --bootstrap-file "$tmp/bootstrap" >/dev/null 2>"$tmp/mock.log" &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$tmp/bootstrap" ] && break; sleep 0.05; done
  brokers=$(cat "$tmp/bootstrap")
  log "mock Kafka cluster at $brokers ($PARTITIONS partitions per topic)"
fi

log "generating $EVENTS events (seed $SEED)"
"$BIN" gen --events "$EVENTS" --seed "$SEED" --format proto --out "$tmp/events.pb" \
  --truth "$tmp/truth.json"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers"

log "processing"
"$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" \
  --group.id "shopstream-demo-$$" --run.stop_when_idle_ms 2000 \
  --operators "${DEMO_OPERATORS:-dedupe,counts,fraud}" --fraud.log_alerts 1 \
  >"$tmp/run.out" 2>"$tmp/run.log" || { cat "$tmp/run.log" >&2; exit 1; }
tail -n 3 "$tmp/run.log" >&2
counters=$(grep '^counters:' "$tmp/run.out" | tail -1)
field() { sed -nE "s/.* $1=([^ ]+).*/\1/p" <<<"$counters"; }
# fraud (issue 6): the alert count and the latest alert with its reasons
fraud_alerts=$(sed -nE 's/^fraud: .*fraud_alerts=([0-9]+).*/\1/p' "$tmp/run.out" | tail -1)
latest=$(grep -E 'fraud alert ' "$tmp/run.log" | tail -1 | sed -E 's/.*(fraud alert )/\1/')
[ -n "$latest" ] && echo "demo: latest $latest" >&2
echo "summary: events=$(field events) clicks=$(field clicks) orders=$(field orders)" \
  "reviews=$(field reviews) deadletter=$(field deadletter) duplicates=$(field duplicates)" \
  "fraud_alerts=${fraud_alerts:-0}"
