#!/usr/bin/env bash
# Figures for the event codec and the data tools (generator, replay).
# Usage: bash bench/events.sh   (from the project root, after `make`)
# Replay is measured against librdkafka's in-process mock cluster
# (-X test.mock.num.brokers=1), so it measures shopstream's side only.
# Reads ../shared/data only if it exists. Prints; copy figures into
# bench/RESULTS.md with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
OUT=${BENCH_TMP:-$(mktemp -d /tmp/shopstream-bench-events.XXXXXX)}
PKGS="rdkafka hiredis libprotobuf-c libcjson libmicrohttpd openblas"
mkdir -p build/bench
cc -std=gnu11 -O2 -I. -Ibuild/gen -D_GNU_SOURCE bench/decode_bench.c build/libshopstream.a \
   $(pkg-config --libs $PKGS) -lpthread -lm -o build/bench/decode_bench
echo "== decode + validate (in memory, 200000 generated records per format)"
nice build/bench/decode_bench 200000
for fmt in jsonl proto; do
  echo "== gen 1000000 records, $fmt"
  /usr/bin/time -f "gen $fmt: %e s, max RSS %M KB" nice "$BIN" gen --events 1000000 --format $fmt \
    --out "$OUT/gen.$fmt" --truth "$OUT/truth.$fmt.json"
  ls -l "$OUT/gen.$fmt" | awk '{print "size:", $5, "bytes"}'
  echo "== replay $fmt to the in-process mock cluster"
  nice "$BIN" replay --quiet --brokers unused:9092 -X test.mock.num.brokers=1 "$OUT/gen.$fmt" 2>&1 | grep '^replay:'
done
DATA=../shared/data
if [ -d "$DATA" ]; then
  echo "== replay rsc15 train (TSV -> protobuf views)"
  nice "$BIN" replay --quiet --brokers unused:9092 -X test.mock.num.brokers=1 --format rsc15 \
    "$DATA/rsc15-100k/yoochoose-clicks-100k_train_full.txt" 2>&1 | grep '^replay:'
  echo "== replay diginetica sample (CSV -> protobuf views)"
  nice "$BIN" replay --quiet --brokers unused:9092 -X test.mock.num.brokers=1 --format diginetica \
    "$DATA/diginetica-sample/sample_train-item-views.csv" 2>&1 | grep '^replay:'
fi
rm -rf "$OUT"
