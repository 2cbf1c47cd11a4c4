# Shared by the personalization benchmarks (source it after deploy/lib.sh's
# sp_init; bash): the model and the events they all use.
#
#   pz_model OUT ITEMS     a GRU d=32 trained on 100k generated events over
#                          ITEMS items (seed 2), unless OUT already exists
#   pz_events OUT N ITEMS  N generated events (seed 1) as protobuf records

pz_model() {
  [ -s "$1" ] && return
  "$BIN" gen --events 100000 --items "$2" --seed 2 --format jsonl --out "$tmp/history.jsonl" \
    --truth "$tmp/history-truth.json"
  "$BIN" train --data "$tmp/history.jsonl" --format events --model gru --dim 32 --epochs 2 \
    --max-seconds 60 --quiet --out "$1" >&2 # its closing line is not part of the section
}

pz_events() {
  "$BIN" gen --events "$2" --items "$3" --seed 1 --format proto --out "$1" \
    --truth "$tmp/events-truth.json"
}
