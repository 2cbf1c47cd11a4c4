#!/usr/bin/env bash
# KPI figures: processing rate of the same generated stream with and without
# the kpi and reviews operators (alternating rounds, fresh Redis each), the
# Redis keys and KpiWindow messages they add, and the latency of the HTTP
# endpoints over the resulting state.
#   KPI_EVENTS (default 100000)  KPI_ROUNDS (default 2)  KPI_PARTITIONS (6)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${KPI_EVENTS:-100000}
ROUNDS=${KPI_ROUNDS:-2}
PARTITIONS=${KPI_PARTITIONS:-6}
. deploy/lib.sh
sp_init kpibench
rport=$(sp_free_port)
sp_redis_start "$rport" rport
sp_mock_start "$PARTITIONS"
brokers=$sp_bootstrap
"$BIN" gen --events "$EVENTS" --seed 42 --format proto --out "$tmp/events.pb" --truth "$tmp/truth.json"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet

run() { # operators group -> throughput line
  redis-cli -p "$rport" flushall >/dev/null
  "$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id "$2" \
    --operators "$1" --run.stop_when_idle_ms 1500 --http.listen 0 >"$tmp/out" 2>"$tmp/log"
  echo "operators=$1 $(grep '^throughput:' "$tmp/out") keys=$(redis-cli -p "$rport" dbsize)" \
    "$(grep -o 'kpi_windows=[0-9]*' "$tmp/out")"
}
for r in $(seq "$ROUNDS"); do
  run dedupe,counts "base-$r"
  run dedupe,counts,kpi,reviews "kpi-$r"
done

# HTTP latency over the last run's state: 50 sequential requests per path on
# one connection, curl's own time_total per request (mean and max).
hport=$(sp_free_port)
"$BIN" run --brokers "$brokers" --redis.url "redis://127.0.0.1:$rport" --group.id "kpi-1" \
  --operators dedupe,counts,kpi,reviews --http.listen "127.0.0.1:$hport" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
for path in "/nope" "/metrics" "/api/totals" "/api/kpi?limit=120" "/api/kpi?res=rollup" \
            "/api/kpi?limit=100000"; do
  urls=()
  for _ in $(seq 50); do urls+=(-o /dev/null "http://127.0.0.1:$hport$path"); done
  curl -s -w '%{time_total}\n' "${urls[@]}" |
    awk -v p="$path" '{s += $1; if ($1 + 0 > m + 0) m = $1} END {printf "GET %s: mean %.1f ms, max %.1f ms (%d requests)\n", p, 1000 * s / NR, 1000 * m, NR}'
done
