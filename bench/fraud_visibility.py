#!/usr/bin/env python3
"""Why week-3 AUC is capped: splits the compromised-terminal frauds (scenario
2) of the test days into those at terminals with at least one fraud label
older than the feedback delay ("visible" to any delayed-label feature) and
the rest, and prints the AUC of each group against the legitimate
transactions, from the per-transaction scores `shopstream fraud eval
--scores FILE` writes.

    bench/fraud_visibility.py DATA_DIR SCORES_CSV [DELAY_DAYS]
"""
import bisect
import csv
import sys
from collections import defaultdict

data, scores = sys.argv[1], sys.argv[2]
delay = int(sys.argv[3]) if len(sys.argv) > 3 else 7

rows = []
for w in (1, 2, 3):
    with open(f"{data}/week{w}.csv") as f:
        for x in csv.DictReader(f):
            rows.append((int(x["TX_TIME_SECONDS"]), int(x["TRANSACTION_ID"]),
                         int(x["TERMINAL_ID"]), int(x["TX_FRAUD"]), int(x["TX_TIME_DAYS"])))
rows.sort()
known = defaultdict(list)  # terminal -> days of frauds whose label is known
visible, released = {}, 0
for i, (t, tid, term, fraud, day) in enumerate(rows):
    while released < i and rows[released][0] + delay * 86400 <= t:
        if rows[released][3]:
            known[rows[released][2]].append(rows[released][4])
        released += 1
    visible[tid] = any(d > day - delay - 30 for d in known[term])

sc = list(csv.DictReader(open(scores)))
neg = sorted(float(r["score"]) for r in sc if r["label"] == "0")


def auc(pos):
    s = 0.0
    for p in pos:
        lo, hi = bisect.bisect_left(neg, p), bisect.bisect_right(neg, p)
        s += lo + 0.5 * (hi - lo)
    return s / len(pos) / len(neg) if pos and neg else float("nan")


groups = {
    "scenario 1 (amount > 220)": lambda r: r["scenario"] == "1",
    "scenario 2, terminal visible (a label older than the delay)":
        lambda r: r["scenario"] == "2" and visible[int(r["transaction_id"])],
    "scenario 2, terminal not yet visible":
        lambda r: r["scenario"] == "2" and not visible[int(r["transaction_id"])],
    "scenario 3 (compromised card)": lambda r: r["scenario"] == "3",
}
for name, cond in groups.items():
    pos = [float(r["score"]) for r in sc if r["label"] == "1" and cond(r)]
    print(f"{name}: {len(pos)} frauds, AUC vs legitimate {auc(pos):.4f}")
