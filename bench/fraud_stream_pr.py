"""Precision and recall per injected fraud pattern from a run's log.

Alerts are the log lines "fraud alert fa:<event_id>" (orders) and "review
burst alert rb:<event_id>" (reviews); the truth is the generator's truth JSON.
card_testing is reported twice: all its labelled events (the small probe
included) and the large orders only (what the small-then-large rule targets).
Large = the order's total above 500, read from the proto file (4-byte
big-endian length, then an Event; parsed here by hand to stay dependency
free: only the fields needed).
Usage: fraud_stream_pr.py TRUTH LOG EVENTS.pb"""
import collections
import json
import re
import sys


def varint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if c < 128:
            return x, i


def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        else:
            return out
        out.append((f, v))
    return out


def order_totals(path):
    import struct
    data, i, tot = open(path, "rb").read(), 0, {}
    while i + 4 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        rec = data[i + 4:i + 4 + n]
        i += 4 + n
        try:
            fs = fields(rec)
        except IndexError:
            continue
        eid = next((v for f, v in fs if f == 1 and isinstance(v, bytes)), None)
        order = next((v for f, v in fs if f == 11 and isinstance(v, bytes)), None)
        if eid is None or order is None:
            continue
        try:
            t = next((v for f, v in fields(order) if f == 3 and len(v) == 8), None)
        except IndexError:
            continue
        if t is not None:
            tot[eid.decode(errors="replace")] = struct.unpack("<d", t)[0]
    return tot


truth = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
orders = set(re.findall(r"fraud alert fa:(\S+)", log))
bursts = set(re.findall(r"review burst alert rb:(\S+)", log))
totals = order_totals(sys.argv[3]) if len(sys.argv) > 3 else {}
pattern = {f["event_id"]: f["pattern"] for f in truth["fraud"]}
n, hit = collections.Counter(), collections.Counter()
for eid, p in pattern.items():
    alerted = eid in (bursts if p == "review_burst" else orders)
    n[p] += 1
    hit[p] += alerted
    if p == "card_testing" and totals.get(eid, 0) > 500:
        n["card_testing (large orders)"] += 1
        hit["card_testing (large orders)"] += alerted
otp = sum(1 for e in orders if e in pattern and pattern[e] != "review_burst")
btp = sum(1 for e in bursts if pattern.get(e) == "review_burst")
print("| pattern | labelled events | alerted | recall |")
print("|---|---|---|---|")
for p in sorted(n):
    print(f"| {p} | {n[p]} | {hit[p]} | {hit[p] / n[p]:.3f} |")
print()
print(f"Order alerts: {len(orders)}, of which on injected fraud orders {otp}: precision "
      f"{otp / max(1, len(orders)):.3f}.  ")
print(f"Review burst alerts: {len(bursts)}, of which on injected burst reviews {btp}: precision "
      f"{btp / max(1, len(bursts)):.3f}.")
