#!/usr/bin/env bash
# make demo: the embedded default. Starts a private redis-server (temporary
# directory, free port) and librdkafka's mock Kafka cluster, generates
# DEMO_EVENTS events, replays them into the input topics, runs the processor
# until everything is consumed, stops everything, and ends with one line:
# summary: events=N clicks=... orders=... ...
#   KAFKA=local      a real Apache Kafka broker instead of the mock
#                    (deploy/local/kafka.sh in the temporary directory,
#                    stopped at the end)
#   KAFKA=host:port  an existing broker
# With a real broker the four shop.* topics are created with the admin API
# (DEMO_PARTITIONS each) unless they exist with that count already.
# While the processor runs it serves the dashboard and prints
# "dashboard: http://127.0.0.1:PORT/"; DEMO_HOLD=SECONDS keeps it up that long
# after the replay is consumed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${DEMO_EVENTS:-100000}
PARTITIONS=${DEMO_PARTITIONS:-6}
SEED=${DEMO_SEED:-42}
. deploy/lib.sh
sp_init demo


log() { echo "demo: $*" >&2; }

rport=$(sp_free_port)
sp_redis_start "$rport" rport
log "redis-server on 127.0.0.1:$rport"

if [ "${KAFKA:-}" = local ]; then
  kafka_dir=$tmp/kafka
  log "starting a local Apache Kafka broker (deploy/local/kafka.sh)"
  brokers=$(bash deploy/local/kafka.sh start --dir "$kafka_dir" --watch-pid $$ |
    sed -nE 's/^bootstrap: //p')
  [ -n "$brokers" ] || { echo "demo: the local Kafka broker did not start" >&2; exit 1; }
fi
if [ -n "${KAFKA:-}" ]; then
  [ -n "$kafka_dir" ] || brokers=$KAFKA
  # Inputs, dead letters and every output topic of the demo's operators: a
  # broker that does not create topics on use (the local one) would leave
  # outputs to a missing topic in flight until they time out.
  "$BIN" topics create --brokers "$brokers" --partitions "$PARTITIONS" \
    shop.clicks shop.orders shop.reviews shop.deadletter shop.kpi shop.recommendations \
    shop.fraud-alerts shop.kpi-alerts >&2
  log "using Kafka at $brokers"
else
  sp_mock_start "$PARTITIONS"
  brokers=$sp_bootstrap
  log "mock Kafka cluster at $brokers ($PARTITIONS partitions per topic)"
fi

log "generating $EVENTS events (seed $SEED)"
"$BIN" gen --events "$EVENTS" --seed "$SEED" --format proto --out "$tmp/events.pb" \
  --truth "$tmp/truth.json"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers"

# The dashboard is served while the processor runs; DEMO_HOLD=SECONDS keeps
# it running (and serving) that long after everything is consumed.
hport=${DEMO_HTTP_PORT:-$(sp_free_port)}
idle_ms=$(( ${DEMO_HOLD:-0} * 1000 > 2000 ? ${DEMO_HOLD:-0} * 1000 : 2000 ))

# --- personalization (issue 5): train a small GRU on a separate history from
# the generator (another seed, same catalogue), then run with the profile, mf
# and recommend operators on.
log "training a small GRU on a generated history (seed $((SEED + 1)))"
"$BIN" gen --events "${DEMO_HISTORY_EVENTS:-60000}" --seed $((SEED + 1)) --format jsonl \
  --out "$tmp/history.jsonl" --truth "$tmp/history-truth.json"
"$BIN" train --data "$tmp/history.jsonl" --format events --model gru --dim 32 --epochs 3 \
  --max-seconds 30 --out "$tmp/model.gru" >&2
personal_args=(--recommend.model "$tmp/model.gru")
# --- end personalization

log "processing"
echo "dashboard: http://127.0.0.1:$hport/"
"$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" \
  --group.id "shopstream-demo-$$" --run.stop_when_idle_ms "$idle_ms" \
  --operators "${DEMO_OPERATORS:-dedupe,counts,kpi,reviews,profile,mf,recommend,fraud}" \
  --http.listen "127.0.0.1:$hport" "${personal_args[@]}" --fraud.log_alerts 1 \
  >"$tmp/run.out" 2>"$tmp/run.log" || { cat "$tmp/run.log" >&2; exit 1; }
tail -n 3 "$tmp/run.log" >&2
# --- personalization: one example user's profile and latest recommendations
user=$(redis-cli -p "$rport" --scan --pattern 'rec:*' | sort | sed -n '1s/^rec://p')
if [ -n "$user" ]; then
  echo "example user $user (shopstream inspect user $user):"
  "$BIN" inspect user "$user" --redis-url "redis://127.0.0.1:$rport"
fi
# --- end personalization
counters=$(grep '^counters:' "$tmp/run.out" | tail -1)
field() { sed -nE "s/.* $1=([^ ]+).*/\1/p" <<<"$counters"; }
# fraud (issue 6): the alert count and the latest alert with its reasons
fraud_alerts=$(sed -nE 's/^fraud: .*fraud_alerts=([0-9]+).*/\1/p' "$tmp/run.out" | tail -1)
latest=$(grep -E 'fraud alert ' "$tmp/run.log" | tail -1 | sed -E 's/.*(fraud alert )/\1/')
[ -n "$latest" ] && echo "demo: latest $latest" >&2
echo "summary: events=$(field events) clicks=$(field clicks) orders=$(field orders)" \
  "reviews=$(field reviews) deadletter=$(field deadletter) duplicates=$(field duplicates)" \
  "kpi_windows=$(field kpi_windows) recommendations=$(field recommendations)" \
  "fraud_alerts=${fraud_alerts:-0}"
