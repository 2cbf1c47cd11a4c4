#!/usr/bin/env bash
# Quality through the whole stream (issue 5): a GRU trained on the RSC15 100k
# sample's train_full, the test file replayed into the mock cluster, the
# processor recommending on every click (recommend.k 20, no rate limit), the
# lists read back from shop.recommendations with kcat and scored against each
# session's next click (bench/prequential.py), beside `shopstream eval
# --protocol prequential` for the same model.
#   RSC15_DIR (/work/shared/data/rsc15-100k)  MODEL (trained here when absent)
#   BENCH_VARIANTS (blend:exclude_viewed:candidates, i.e. recommend.blend,
#     recommend.exclude_viewed and SHOPSTREAM_RECOMMEND_CANDIDATES -- 0 scores
#     every item; default: each of "1,0,0:1 1,0,0:0 1,0.5,0.2:0" exhaustive,
#     then with 500 candidates)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
DIR=${RSC15_DIR:-/work/shared/data/rsc15-100k}
TRAIN=$DIR/yoochoose-clicks-100k_train_full.txt
TEST=$DIR/yoochoose-clicks-100k_test.txt
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shopstream-qbench.XXXXXX")
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
  exit 1
}
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
  --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done

model=${MODEL:-$tmp/rsc15_gru.bin}
if [ ! -s "$model" ]; then
  "$BIN" train --data "$TRAIN" --format rsc15 --model gru --out "$model" --quiet --epochs 10 \
    --lr 0.01 --dim 64 --neg 128
fi
echo "offline: $("$BIN" eval --data "$TEST" --format rsc15 --model "$model" --protocol prequential --k 20 | tail -1)"

for variant in ${BENCH_VARIANTS:-1,0,0:1:0 1,0,0:0:0 1,0.5,0.2:0:0 1,0,0:1:500 1,0,0:0:500 1,0.5,0.2:0:500}; do
  IFS=: read -r blend exclude cands <<<"$variant"
  cands=${cands:-0}
  rm -f "$tmp/bootstrap"
  "$BIN" mock-kafka --partitions 4 --bootstrap-file "$tmp/bootstrap" >/dev/null 2>&1 &
  mock=$!
  pids+=($mock)
  for _ in $(seq 200); do [ -s "$tmp/bootstrap" ] && break; sleep 0.05; done
  brokers=$(cat "$tmp/bootstrap")
  "$BIN" replay "$TEST" --format rsc15 --brokers "$brokers" --quiet 2>/dev/null
  redis-cli -p "$rport" flushall >/dev/null
  SHOPSTREAM_RECOMMEND_CANDIDATES=$cands /usr/bin/time -f "cpu: user=%U sys=%S" \
    "$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id q \
    --run.stop_when_idle_ms 1500 --log.level warn --http.listen 0 \
    --operators dedupe,mf,recommend --recommend.model "$model" --recommend.k 20 \
    --recommend.rate_limit_ms 0 --recommend.blend "$blend" \
    --recommend.exclude_viewed "$exclude" >"$tmp/run.out" 2>"$tmp/run.log"
  kcat -C -b "$brokers" -t shop.recommendations -e -q -f '%R%s' >"$tmp/recs.bin"
  echo "stream blend $blend exclude_viewed $exclude candidates $cands:" \
    "$(python3 bench/prequential.py "$TEST" "$tmp/recs.bin" 20)" \
    "($(grep -o 'recommendations=[0-9]*' "$tmp/run.out"), $(grep '^cpu:' "$tmp/run.log"))"
  kill "$mock"; wait "$mock" 2>/dev/null || true
done
