#!/usr/bin/env bash
# Fraud scorer on the fraud handbook's simulated transactions (weeks 1-3):
# every transaction is replayed in time order, scored before the state
# learns it, with labels reaching the terminal/user state 7 days after their
# transaction. Learns on weeks 1-2 only, reports on week 3 (days 14-20).
#   DATA=../shared/data bash bench/fraud.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
dir="$DATA/fraud-handbook-sim"
[ -f "$dir/week3.csv" ] || { echo "fraud bench: $dir/week3.csv not found (set DATA)" >&2; exit 1; }
make -s bin/shopstream
model=$(mktemp /tmp/shopstream-fraud.XXXXXX)
trap 'rm -f "$model" "$model.scores.csv" "$model.fb" "$model.fb.scores.csv"' EXIT
run() { echo; echo "\$ $*"; nice "$@"; }
echo "# $(date -u +%F) fraud bench on $dir"
echo "## 1. brief protocol: train on every transaction of weeks 1-2, test week 3"
run ./bin/shopstream fraud train --data "$dir" --weeks 1,2 --out "$model"
run ./bin/shopstream fraud eval --data "$dir" --model "$model" --scores "$model.scores.csv"
echo "## 1b. where the AUC goes (per group, from the scores above)"
run python3 bench/fraud_visibility.py "$dir" "$model.scores.csv"
echo "## 1b'. how much is luck of the draw: bootstrap of the test transactions, share above the bars"
run python3 bench/fraud_bootstrap.py "$model.scores.csv" 200 0.871 0.658
echo "## 1c. same, plus investigated alerts: the 100 customers with the day's highest score have"
echo "##     that day's labels known the next day (every other label 7 days late)"
run ./bin/shopstream fraud train --data "$dir" --weeks 1,2 --out "$model.fb" --feedback 100
run ./bin/shopstream fraud eval --data "$dir" --model "$model.fb" --feedback 100 --scores "$model.fb.scores.csv"
run python3 bench/fraud_visibility.py "$dir" "$model.fb.scores.csv"
run python3 bench/fraud_bootstrap.py "$model.fb.scores.csv" 200 0.871 0.658
echo "## 2. strict: train at day 14 only on labels known by then (tx before day 7)"
run ./bin/shopstream fraud eval --data "$dir" --train-until 14 --train-labels known
echo "## 3. unsupervised only (no labels in the model; terminal risk still uses delayed labels)"
run ./bin/shopstream fraud eval --data "$dir"
echo "## 4. validation used to pick settings: train days 0-6, test days 7-13"
run ./bin/shopstream fraud eval --data "$dir" --weeks 1,2 --train-until 7 --train-labels all --test-from 7 --test-until 14
run ./bin/shopstream fraud eval --data "$dir" --weeks 1,2 --train-until 7 --train-labels all --test-from 7 --test-until 14 --feedback 100
