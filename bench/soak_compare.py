#!/usr/bin/env python3
"""Compares two `shopstream dump-state` outputs of profile hashes for make soak.

A user's clicks, orders and reviews come from three topics whose interleaving
differs from run to run (a clean run repeated differs the same way), and two
profile fields are sketches whose value depends on that order:
  - `aff`, the decayed category affinity: decayed and rounded to 6 digits at
    every event (last-digit differences), and cut to the top categories at
    every event (a category that falls out and comes back restarts);
  - `sessions`, distinct sessions among the 16 newest: a session that drops
    out of them and comes back counts twice.
Everything else must match exactly -- in particular `events` and the per-kind
counters, which an event applied twice or lost would change. Prints how many
keys matched exactly, within the affinity's rounding, or differed only in a
sketch, and every other difference; exits 1 if there is one.
"""
import sys

REL = 1e-4  # 6 significant digits, rounded again at every event


def aff_close(a, b):
    pa = [x.rsplit(":", 1) for x in a.split(",")] if a else []
    pb = [x.rsplit(":", 1) for x in b.split(",")] if b else []
    if len(pa) != len(pb):
        return False
    # the same categories; scores within tolerance (their order may swap on a tie)
    da = {c: float(v) for c, v in pa}
    db = {c: float(v) for c, v in pb}
    if set(da) != set(db):
        return False
    return all(abs(da[c] - db[c]) <= REL * max(abs(da[c]), abs(db[c]), 1e-9) for c in da)


def main():
    a = open(sys.argv[1]).read().splitlines()
    b = open(sys.argv[2]).read().splitlines()
    if len(a) != len(b):
        print(f"different key counts: {len(a)} vs {len(b)}")
        return 1
    close = sketch = bad = 0
    for la, lb in zip(a, b):
        if la == lb:
            continue
        ta, tb = la.split(" "), lb.split(" ")
        ok = ta[0] == tb[0] and len(ta) == len(tb)
        rounding_only = True
        for x, y in zip(ta, tb):
            if not ok or x == y:
                continue
            if x.startswith("aff=") and y.startswith("aff="):
                rounding_only = rounding_only and aff_close(x[4:], y[4:])
            elif x.startswith("sessions=") and y.startswith("sessions="):
                rounding_only = False
            else:
                ok = False
        if not ok:
            bad += 1
            print(f"differs: {la[:300]}\n    vs: {lb[:300]}")
        elif rounding_only:
            close += 1
        else:
            sketch += 1
    print(f"{len(a)} keys: {len(a) - close - sketch - bad} identical, {close} within the "
          f"affinity's rounding, {sketch} differing only in a sketch (aff top categories, "
          f"sessions), {bad} different")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
