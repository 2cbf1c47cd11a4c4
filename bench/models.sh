#!/usr/bin/env bash
# Measures the models (issue 3) on the real data sets and rewrites the
# "models" section of bench/RESULTS.md with the figures and the exact
# commands that produced them.
#
#   bash bench/models.sh            # full run (about 30-40 min on one shared core)
#   QUICK=1 bash bench/models.sh    # few epochs, to check the script end to end
#   DATA=/path/to/data bash bench/models.sh
#
# Reads ../shared/data (relative to the repository root) unless DATA is set;
# nothing from there is copied into the repository. Runs niced, one BLAS
# thread, one job at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-build/bench-models}
export OPENBLAS_NUM_THREADS=1
BIN=bin/shopstream
make --no-print-directory "$BIN" >/dev/null
mkdir -p "$OUT"
BEAUTY=$DATA/amazon-beauty/Beauty.txt
RTRAIN=$DATA/rsc15-100k/yoochoose-clicks-100k_train_full.txt
RTEST=$DATA/rsc15-100k/yoochoose-clicks-100k_test.txt
for f in "$BEAUTY" "$RTRAIN" "$RTEST"; do
  [ -r "$f" ] || { echo "models.sh: missing $f (set DATA=...)" >&2; exit 1; }
done

if [ "${QUICK:-0}" = 1 ]; then E_SAS=2; E_GRU=2; E_MF=3; E_RGRU=2; E_RSAS=2; else
  E_SAS=${E_SAS:-40}; E_GRU=${E_GRU:-20}; E_MF=${E_MF:-40}; E_RGRU=${E_RGRU:-10}; E_RSAS=${E_RSAS:-10}; fi

# hyper-parameters per data set and model
declare -A HP=(
  [beauty_sasrec]="--epochs $E_SAS --max-seconds 1200 --lr 0.003 --dim 64 --blocks 2 --max-len 50 --dropout 0.5 --neg 128"
  [beauty_gru]="--epochs $E_GRU --lr 0.003 --dim 64 --max-len 50 --neg 128"
  [beauty_mf]="--epochs $E_MF --dim 64 --neg 4 --l2 0.005"
  [rsc15_gru]="--epochs $E_RGRU --lr 0.01 --dim 64 --neg 128"
  [rsc15_sasrec]="--epochs $E_RSAS --lr 0.003 --dim 64 --blocks 2 --max-len 50 --dropout 0.2 --neg 128"
  [rsc15_mf]="--epochs $E_MF --dim 64 --neg 4 --l2 0.005"
)

CMDS=$OUT/commands.txt
ROWS_B=$OUT/rows_beauty.md
ROWS_R=$OUT/rows_rsc15.md
: >"$CMDS"; : >"$ROWS_B"; : >"$ROWS_R"

run() { echo "$*" >>"$CMDS"; nice -n 10 "$@"; }

# train MODEL DATA FORMAT OUT EXTRA... -> prints seconds
train() {
  local model=$1 data=$2 fmt=$3 out=$4; shift 4
  local t0 t1
  t0=$(date +%s.%N)
  run $BIN train --data "$data" --format "$fmt" --model "$model" --out "$out" --quiet "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

# metric row from the eval table's last line
evalrow() { run $BIN eval "$@" | tail -1; }

echo "== Beauty" >&2
for m in sasrec gru mf; do
  secs=$(train $m "$BEAUTY" seq "$OUT/beauty_$m.bin" --holdout 2 ${HP[beauty_$m]})
  for p in full sampled100; do
    r=$(evalrow --data "$BEAUTY" --format seq --model "$OUT/beauty_$m.bin" --protocol $p --k 10,20)
    echo "$p $r $secs" >>"$ROWS_B"
  done
done
for b in pop itemknn; do
  for p in full sampled100; do
    r=$(evalrow --data "$BEAUTY" --format seq --model $b --protocol $p --k 10,20 --holdout 2)
    echo "$p $r 0" >>"$ROWS_B"
  done
done

echo "== rsc15-100k" >&2
for m in gru sasrec mf; do
  secs=$(train $m "$RTRAIN" rsc15 "$OUT/rsc15_$m.bin" ${HP[rsc15_$m]})
  r=$(evalrow --data "$RTEST" --format rsc15 --model "$OUT/rsc15_$m.bin" --protocol session --k 20)
  echo "$r $secs" >>"$ROWS_R"
done
for b in pop itemknn; do
  r=$(evalrow --data "$RTEST" --format rsc15 --train "$RTRAIN" --model $b --protocol session --k 20)
  echo "$r 0" >>"$ROWS_R"
done

echo "== prequential" >&2
PREQ=$OUT/rows_preq.md
: >"$PREQ"
for m in "$OUT/rsc15_gru.bin" "$OUT/rsc15_mf.bin" pop; do
  r=$(evalrow --data "$RTEST" --format rsc15 --model "$m" --protocol prequential --k 20)
  echo "$r" >>"$PREQ"
done

echo "== serving" >&2
SERVE=$OUT/serving.txt
: >"$SERVE"
for n in 10000 100000; do
  run taskset -c 0 $BIN eval --bench-serving $n --dim 64 --users 3000 >>"$SERVE"
done

DATE=$(date -u +%Y-%m-%dT%H:%MZ)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
SECTION=$OUT/section.md
{
  echo "<!-- models:begin -->"
  echo "## Models (issue 3)"
  echo
  echo "Produced by \`bash bench/models.sh\`${QUICK:+ (QUICK=1)} on $DATE, $CPU, niced, OPENBLAS_NUM_THREADS=1,"
  echo "on a 2-core machine shared with other jobs (training times are wall-clock and noisy)."
  echo
  echo "### Amazon Beauty (ICLRec's Beauty.txt), leave-one-out"
  echo
  echo 'Split as S3Rec/ICLRec: the last two items of each user never train (`--holdout 2`, models'
  echo "and baselines alike); the last item is the test target, ranked after the user's history."
  echo
  echo "| protocol | model | users | HR@10 | NDCG@10 | HR@20 | NDCG@20 | eval s | train s |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  while read -r p name proto n h10 n10 h20 n20 es ts; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %.0f |\n' "$p" "$name" "$n" "$h10" "$n10" "$h20" "$n20" "$es" "$ts"
  done <"$ROWS_B"
  echo
  echo "Published: ICLRec README, full ranking on this file: HIT@10 0.0744, NDCG@10 0.0403."
  echo "SASRec paper, sampled protocol on its own Beauty filtering: HR@10 0.4854, NDCG@10 0.3219."
  echo
  echo "### RSC15 100k sample, session protocol (train_full -> test)"
  echo
  echo "| model | queries | Recall@20 | NDCG@20 | MRR@20 | eval s | train s |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  while read -r name proto n rec nd mrr es ts; do
    printf '| %s | %s | %s | %s | %s | %s | %.0f |\n' "$name" "$n" "$rec" "$nd" "$mrr" "$es" "$ts"
  done <"$ROWS_R"
  echo
  echo "Published (GRU4Rec README, full RSC15, not this sample): Recall@20 0.7283, MRR@20 0.3205."
  echo
  echo "### RSC15 100k test, prequential (each click predicted before it is learned, time order)"
  echo
  echo "GRU and MF trained on train_full then continue on the test stream (GRU: hidden state only;"
  echo "MF: user and item vectors learn online); popularity starts empty and counts as it goes."
  echo
  echo "| model | predictions | Recall@20 | NDCG@20 | MRR@20 | eval s |"
  echo "| --- | --- | --- | --- | --- | --- |"
  while read -r name proto n rec nd mrr es; do
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$n" "$rec" "$nd" "$mrr" "$es"
  done <"$PREQ"
  echo
  echo "### Serving cost (one core: taskset -c 0, one BLAS thread; dim 64)"
  echo
  echo "Per user: one GRU step + top-10 over all items with 20 exclusions. Wall-clock percentiles"
  echo "include preemption by the other jobs on this shared machine; CPU-time percentiles"
  echo "(CLOCK_THREAD_CPUTIME_ID) are the cost of the scoring itself."
  echo
  echo '```'
  cat "$SERVE"
  echo '```'
  echo
  echo "### Commands"
  echo
  echo '```'
  cat "$CMDS"
  echo '```'
  echo "<!-- models:end -->"
} >"$SECTION"

RES=bench/RESULTS.md
[ -f "$RES" ] || printf '# Benchmark results\n\n' >"$RES"
if grep -q '<!-- models:begin -->' "$RES"; then
  awk -v f="$SECTION" '
    /<!-- models:begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
    /<!-- models:end -->/ { skip = 0; next }
    !skip { print }' "$RES" >"$RES.tmp" && mv "$RES.tmp" "$RES"
else
  { echo; cat "$SECTION"; } >>"$RES"
fi
echo "models.sh: wrote the models section of $RES" >&2
