#!/usr/bin/env bash
# The fraud operator on the stream: gen (with injected fraud) -> replay into
# the mock cluster -> shopstream run, and
#   - precision and recall per injected pattern (alerts read from the run's
#     log lines "fraud alert fa:<event_id>" / "review burst alert rb:<id>",
#     compared with the generator's truth by bench/fraud_stream_pr.py),
#   - scoring cost per order (feature extraction + scoring, p50/p99 from the
#     processor's fraud_score histogram),
#   - events/s: raw consume, dedupe+counts, and with the fraud operator on.
# Prints markdown for bench/RESULTS.md.
#   FRAUD_EVENTS (default 100000)  FRAUD_RATE (0.02)  FRAUD_ROUNDS (2)  FRAUD_PARTITIONS (6)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${FRAUD_EVENTS:-100000}
RATE=${FRAUD_RATE:-0.02}
ROUNDS=${FRAUD_ROUNDS:-2}
PARTITIONS=${FRAUD_PARTITIONS:-6}
. deploy/lib.sh
sp_init fraud
rport=$(sp_free_port)
sp_redis_start "$rport" rport
sp_mock_start "$PARTITIONS"
brokers=$sp_bootstrap

"$BIN" gen --events "$EVENTS" --users 5000 --seed 1 --fraud-rate "$RATE" --format proto \
  --out "$tmp/events.pb" --truth "$tmp/truth.json"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet 2>"$tmp/replay.log"
msgs=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)
echo "fraud bench: $msgs messages, fraud rate $RATE, $PARTITIONS partitions x 3 topics (mock cluster)" >&2

run() { # name operators -> rate; leaves the log in $tmp/<name>.log
  redis-cli -p "$rport" flushall >/dev/null
  "$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id "fb-$1-$RANDOM" \
    --operators "$2" --http.listen 0 --run.stop_when_idle_ms 1500 >"$tmp/$1.out" 2>"$tmp/$1.log"
  sed -nE 's/^throughput: .* rate=([0-9]+).*/\1/p' "$tmp/$1.out"
}
raw=(); base=(); fraud=(); full=()
for r in $(seq "$ROUNDS"); do
  raw+=("$("$BIN" bench-consume --brokers "$brokers" --messages "$msgs" | sed -nE 's/.* rate=([0-9]+).*/\1/p')")
  base+=("$(run base dedupe,counts)")
  fraud+=("$(run fraud dedupe,counts,fraud)")
  full+=("$(run full dedupe,counts,reviews,fraud)")
  echo "round $r: raw ${raw[-1]}, dedupe+counts ${base[-1]}, +fraud ${fraud[-1]}, +reviews+fraud ${full[-1]} msg/s" >&2
done
f=$(grep '^fraud:' "$tmp/fraud.out")
p50=$(sed -nE 's/.* fraud_score_p50_us=([0-9.]+).*/\1/p' <<<"$f")
p99=$(sed -nE 's/.* fraud_score_p99_us=([0-9.]+).*/\1/p' <<<"$f")
orders=$(sed -nE 's/.*fraud_orders=([0-9]+).*/\1/p' <<<"$f")

echo "| round | raw consume msg/s | dedupe,counts | dedupe,counts,fraud | dedupe,counts,reviews,fraud |"
echo "|---|---|---|---|---|"
for i in $(seq 0 $((ROUNDS - 1))); do
  echo "| $((i + 1)) | ${raw[$i]} | ${base[$i]} | ${fraud[$i]} | ${full[$i]} |"
done
echo
echo "Scoring cost per order (feature extraction + scoring, $orders orders): p50 ${p50} µs, p99 ${p99} µs"
echo "(histogram bucket upper bounds, 2^(i/4) µs)."
echo
python3 bench/fraud_stream_pr.py "$tmp/truth.json" "$tmp/full.log" "$tmp/events.pb"
