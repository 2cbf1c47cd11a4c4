#!/usr/bin/env bash
# Sentiment accuracy on the UCI "Sentiment Labelled Sentences" Amazon file:
# the lexicon scorer on all 1000 lines, and the learned model by 10-fold
# cross-validation (it never scores a line it was trained on).
#   DATA=../shared/data bash bench/sentiment.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
file="$DATA/uci-sentiment/amazon_cells_labelled.txt"
[ -f "$file" ] || { echo "sentiment bench: $file not found (set DATA)" >&2; exit 1; }
make -s bin/shopstream
echo "# $(date -u +%F) shopstream sentiment --data $file --quiet --cv 10"
nice ./bin/shopstream sentiment --data "$file" --quiet --cv 10
