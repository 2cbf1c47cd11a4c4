#!/usr/bin/env bash
# Candidate mode against exhaustive scoring on the generated shop (issue 5):
# the same events through `dedupe,counts,profile,mf,recommend` twice, once
# with SHOPSTREAM_RECOMMEND_CANDIDATES=0 (every item scored) and once with
# the candidate budget, and the lists of each trigger event compared
# (bench/prequential.py --agree): how many top-10 lists are identical, and
# the mean share of items in common. Pure sequence model by default
# (recommend.blend 1,0,0), so that the per-instance popularity prior, whose
# counts depend on how partitions interleave, does not blur the comparison.
# With the default blend the lists of two exhaustive runs already differ
# (the prior, and the shared MF item table refreshed from Redis on a
# clock): AGREE_FIRST=0 SHOPSTREAM_RECOMMEND_CANDIDATES=0 measures that floor.
#   AGREE_EVENTS (20000)  AGREE_ITEMS (10000)  AGREE_BLEND (1,0,0)
#   AGREE_FIRST (0: the first run's budget)
#   SHOPSTREAM_RECOMMEND_CANDIDATES (256: the second's)  MODEL (trained here when absent)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${AGREE_EVENTS:-20000}
ITEMS=${AGREE_ITEMS:-10000}
BLEND=${AGREE_BLEND:-1,0,0}
FIRST=${AGREE_FIRST:-0}
CANDS=${SHOPSTREAM_RECOMMEND_CANDIDATES:-256}
. deploy/lib.sh
. bench/personalize_lib.sh
sp_init pagree
rport=$(sp_free_port)
sp_redis_start "$rport" rport
model=${MODEL:-$tmp/model.gru}
pz_model "$model" "$ITEMS"
pz_events "$tmp/events.pb" "$EVENTS" "$ITEMS"
run=0
for n in "$FIRST" "$CANDS"; do
  run=$((run + 1))
  rm -f "$tmp/bootstrap"
  sp_mock_start 2
  "$BIN" replay "$tmp/events.pb" --brokers "$sp_bootstrap" --quiet 2>/dev/null
  redis-cli -p "$rport" flushall >/dev/null
  SHOPSTREAM_RECOMMEND_CANDIDATES=$n "$BIN" run --brokers "$sp_bootstrap" \
    --redis.url "redis://127.0.0.1:$rport" --group.id agree --run.stop_when_idle_ms 1500 \
    --log.level warn --http.listen 0 --operators dedupe,counts,profile,mf,recommend \
    --recommend.model "$model" --recommend.blend "$BLEND" >"$tmp/run-$run.out" 2>"$tmp/run-$run.log"
  kcat -C -b "$sp_bootstrap" -t shop.recommendations -e -q -f '%R%s' >"$tmp/recs-$run.bin"
done
echo "blend $BLEND, budget $FIRST vs $CANDS (0 = every item): $(python3 bench/prequential.py \
  --agree "$tmp/recs-1.bin" "$tmp/recs-2.bin" 10)"
