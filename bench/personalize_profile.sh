#!/usr/bin/env bash
# Instruction counts of the personalization operators (issue 5), repeatable
# on a shared machine: a 20k-event run under callgrind, once with
# `dedupe,counts` and once with `dedupe,counts,profile,mf,recommend`, the
# same events. Prints, per run, the processor's total instructions per
# event and the inclusive instructions per event of the pipeline's
# process/flush calls and of each personalization operator (process+flush),
# and apart the one-off build of the candidate lists at start-up.
#   PROFILE_EVENTS (20000)  PROFILE_ITEMS (10000)  MODEL (trained here when absent)
#   PROFILE_KEEP (dir: keep the callgrind.out files there)
#   extra arguments are passed to `shopstream run` (e.g. --recommend.rate_limit_ms 0)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOPSTREAM_BIN:-bin/shopstream}
EVENTS=${PROFILE_EVENTS:-20000}
ITEMS=${PROFILE_ITEMS:-10000}
. deploy/lib.sh
. bench/personalize_lib.sh
sp_init pprof
rport=$(sp_free_port)
sp_redis_start "$rport" rport
sp_mock_start 2
brokers=$sp_bootstrap

model=${MODEL:-$tmp/model.gru}
pz_model "$model" "$ITEMS"
pz_events "$tmp/events.pb" "$EVENTS" "$ITEMS"
"$BIN" replay "$tmp/events.pb" --brokers "$brokers" --quiet 2>"$tmp/replay.log"
msgs=$(sed -nE 's/^replay: ([0-9]+) records.*/\1/p' "$tmp/replay.log" | tail -1)

for ops in dedupe,counts dedupe,counts,profile,mf,recommend; do
  redis-cli -p "$rport" flushall >/dev/null
  out=$tmp/cg.$ops
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" run --brokers "$brokers" \
    --redis.url "redis://127.0.0.1:$rport" --group.id "pp-$ops-$$" --run.stop_when_idle_ms 3000 \
    --log.level warn --http.listen 0 --operators "$ops" --recommend.model "$model" "$@" \
    >"$tmp/run.out" 2>"$tmp/run.log"
  recs=$(grep -o 'recommendations=[0-9]*' "$tmp/run.out" || echo recommendations=0)
  # every function (the default threshold drops the small ones, rec_flush among
  # them), and no source listing (whose lines per() could match)
  callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$out" >"$out.txt" 2>/dev/null
  total=$(sed -nE 's/^ *([0-9,]+) .*PROGRAM TOTALS.*/\1/p' "$out.txt" | tr -d ,)
  per() { # function name -> inclusive Ir per message
    local ir
    ir=$(grep -E "[ :*]$1 \[|[ :*]$1\$| $1 " "$out.txt" | head -1 | awk '{print $1}' | tr -d , || true)
    awk -v a="${ir:-0}" -v m="$msgs" 'BEGIN{printf "%.0f", a/m}'
  }
  printf 'operators %s: %s messages, %s, Ir/msg total %s; pipeline process %s flush %s; ' \
    "$ops" "$msgs" "$recs" "$(awk -v a="$total" -v m="$msgs" 'BEGIN{printf "%.0f", a/m}')" \
    "$(per sp_pipeline_process)" "$(per sp_pipeline_flush)"
  printf 'profile %s mf %s+%s recommend %s+%s; ' "$(per profile_process)" "$(per mf_process)" \
    "$(per mf_flush)" "$(per rec_process)" "$(per rec_flush)"
  # the candidate lists are built once at start-up: shown apart, not per event
  printf 'start-up candidate lists %s Ir/msg (total without them %s)\n' \
    "$(per sp_cands_build_model)" \
    "$(awk -v a="$total" -v b="$(per sp_cands_build_model)" -v m="$msgs" 'BEGIN{printf "%.0f", a/m-b}')"
  if [ -n "${PROFILE_KEEP:-}" ]; then mkdir -p "$PROFILE_KEEP"; cp "$out" "$out.txt" "$PROFILE_KEEP/"; fi
done
