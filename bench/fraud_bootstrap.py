#!/usr/bin/env python3
"""How much of a week-3 figure is luck of the draw: Poisson bootstrap of the
test transactions (each row weighted by a Poisson(1) draw, which resamples
them with replacement) for AUC ROC and Average Precision, from the scores
`shopstream fraud eval --scores FILE` writes. Prints the point figures, the
2.5/50/97.5 percentiles and the share of resamples above each given bar.
Transactions are not independent (a compromised terminal or card gives
several frauds), so this interval is if anything too narrow.

    bench/fraud_bootstrap.py SCORES_CSV [RESAMPLES] [AUC_BAR AP_BAR]
"""
import csv
import math
import random
import sys

path = sys.argv[1]
n_boot = int(sys.argv[2]) if len(sys.argv) > 2 else 200
bars = (float(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) > 4 else None

rows = [(float(r["score"]), int(r["label"])) for r in csv.DictReader(open(path))]
rows.sort(key=lambda r: -r[0])
# groups of equal score, highest first: (positives, negatives) per row index
groups = []
i = 0
while i < len(rows):
    j = i
    while j < len(rows) and rows[j][0] == rows[i][0]:
        j += 1
    groups.append(list(range(i, j)))
    i = j
labels = [y for _, y in rows]


def figures(w):
    """AUC (ties half) and AP (scikit-learn's definition) with row weights w."""
    tot_p = sum(wi for wi, y in zip(w, labels) if y)
    tot_n = sum(wi for wi, y in zip(w, labels) if not y)
    pos = area = tp = seen = ap = 0.0
    for g in groups:
        gp = sum(w[k] for k in g if labels[k])
        gn = sum(w[k] for k in g if not labels[k])
        area += gn * (pos + gp / 2)
        pos += gp
        seen += gp + gn
        tp += gp
        if gp > 0:
            ap += gp / tot_p * tp / seen
    return area / (tot_p * tot_n), ap


# Poisson(1) by inversion of a small cumulative table
cum, p, acc = [], math.exp(-1), 0.0
for k in range(12):
    acc += p
    cum.append(acc)
    p /= k + 1


def poisson(rng):
    u = rng.random()
    for k, c in enumerate(cum):
        if u <= c:
            return k
    return len(cum)


rng = random.Random(6)
auc0, ap0 = figures([1] * len(rows))
print(f"point: AUC {auc0:.4f}  AP {ap0:.4f}  ({len(rows)} tx, {sum(labels)} frauds)")
aucs, aps = [], []
for _ in range(n_boot):
    a, b = figures([poisson(rng) for _ in rows])
    aucs.append(a)
    aps.append(b)
aucs.sort()
aps.sort()
q = lambda v, f: v[min(len(v) - 1, int(f * len(v)))]
print(f"bootstrap x{n_boot}: AUC {q(aucs, .025):.4f} .. {q(aucs, .5):.4f} .. {q(aucs, .975):.4f}"
      f"   AP {q(aps, .025):.4f} .. {q(aps, .5):.4f} .. {q(aps, .975):.4f}  (2.5/50/97.5%)")
if bars:
    print(f"share of resamples above AUC {bars[0]}: {sum(a > bars[0] for a in aucs) / n_boot:.2f};"
          f" above AP {bars[1]}: {sum(b > bars[1] for b in aps) / n_boot:.2f}")
