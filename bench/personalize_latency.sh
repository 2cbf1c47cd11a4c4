#!/usr/bin/env bash
# Arrival -> recommendation latency of the personalization operators (issue 5)
# at a fixed input rate, on librdkafka's mock cluster or on a real Apache Kafka
# broker (deploy/local/kafka.sh). The processor starts first; replay then
# produces the events at LAT_RATE msg/s; every list is read back from
# shop.recommendations with kcat and its latency is reported two ways:
#   in-processor  Recommendation.latency_ms: from the poll that returned the
#                 trigger event to the list's sp_sink_produce call;
#   end-to-end    the list's Kafka timestamp minus the trigger event's (both
#                 CreateTime, i.e. the producers' clocks on this machine): it
#                 adds the replay producer's linger, the broker and the fetch.
#
#   bash bench/personalize_latency.sh [extra `shopstream run` arguments]
#   LAT_BROKER   mock (default) or kafka
#   LAT_RATE     msg/s of the paced replay (default 8000, about half the
#                full-speed rate measured by bench/personalize.sh)
#   LAT_EVENTS   generated events (default 40000)   LAT_ITEMS (10000)
#   LAT_PARTITIONS (6)   MODEL (trained here when absent)
set -euo pipefail
KEEP=${LAT_KEEP:-}
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
BROKER=${LAT_BROKER:-mock}
RATE=${LAT_RATE:-8000}
EVENTS=${LAT_EVENTS:-40000}
ITEMS=${LAT_ITEMS:-10000}
PARTITIONS=${LAT_PARTITIONS:-6}
OPS=dedupe,counts,profile,mf,recommend
. deploy/lib.sh
. bench/personalize_lib.sh
sp_init plat
rport=$(sp_free_port)
sp_redis_start "$rport" rport
if [ "$BROKER" = kafka ]; then
  kafka_dir=$tmp/kafka # stopped by sp_cleanup
  brokers=$(bash deploy/local/kafka.sh start --dir "$kafka_dir" --fresh --watch-pid $$ |
    sed -nE 's/^bootstrap: //p')
  [ -n "$brokers" ] || { echo "personalize_latency: the local Kafka broker did not start" >&2; exit 1; }
  "$BIN" topics create --brokers "$brokers" --partitions "$PARTITIONS" \
    shop.clicks shop.orders shop.reviews shop.deadletter shop.recommendations 2>/dev/null
else
  sp_mock_start "$PARTITIONS"
  brokers=$sp_bootstrap
fi
model=${MODEL:-$tmp/model.gru}
pz_model "$model" "$ITEMS"
pz_events "$tmp/events.pb" "$EVENTS" "$ITEMS"

/usr/bin/time -f "cpu: user=%U sys=%S" ${LAT_WRAP:-} "$BIN" run --brokers "$brokers" \
  --redis.url "redis://127.0.0.1:$rport" --group.id "plat-$$" --run.stop_when_idle_ms 3000 \
  --log.level info --http.listen 0 --operators "$OPS" --recommend.model "$model" "$@" \
  >"$tmp/run.out" 2>"$tmp/run.log" &
run_pid=$!
# Events are produced only once the processor holds all its partitions: a
# group join (3 s of group.initial.rebalance.delay.ms on a real broker) is
# not latency of the stream.
for _ in $(seq 600); do
  [ "$(grep -c 'assigned partition' "$tmp/run.log" 2>/dev/null)" -ge "$PARTITIONS" ] && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$tmp/run.log" >&2; exit 1; }
  sleep 0.1
done
sleep 0.5
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --rate "$RATE" --quiet 2>"$tmp/replay.log"
wait "$run_pid" || { cat "$tmp/run.log" >&2; exit 1; }
kcat -C -b "$brokers" -t shop.recommendations -e -q -f '%T:%R%s' >"$tmp/recs"
for t in shop.clicks shop.orders shop.reviews; do
  kcat -C -b "$brokers" -t "$t" -e -q -f '%T:%R%s'
done >"$tmp/inputs"
kcat -C -b "$brokers" -t shop.recommendations -e -q -f '%R%s' >"$tmp/recs.raw"
batches=$(sed -nE 's/.* batches=([0-9]+).*/\1/p' "$tmp/run.out")
echo "latency: broker=$BROKER rate=$RATE events=$EVENTS batches=$batches args='$*'"
echo "  in-processor: $(python3 bench/prequential.py --latency "$tmp/recs.raw")"
echo "  end-to-end:   $(python3 bench/prequential.py --e2e "$tmp/inputs" "$tmp/recs")"
echo "  $(grep '^cpu:' "$tmp/run.log")"
# Redis runs one command at a time: a long script delays every read queued
# behind it, so the costliest commands are part of the latency story.
redis-cli -p "$rport" info commandstats | tr -d '\r' |
  sed -nE 's/^cmdstat_(eval|evalsha|hmget|hgetall|set|get):calls=([0-9]+),usec=([0-9]+),usec_per_call=([0-9.]+).*/  redis \1: calls=\2 usec_per_call=\4/p'
if [ -n "$KEEP" ]; then mkdir -p "$KEEP"; cp "$tmp/recs" "$tmp/inputs" "$tmp/recs.raw" "$tmp/run.log" "$KEEP/"; fi
