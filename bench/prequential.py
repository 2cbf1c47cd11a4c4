#!/usr/bin/env python3
"""Prequential score of the recommendations the stream produced for an RSC15
click log: each list (Recommendation, as kcat -f '%R%s' wrote them: 4-byte
big-endian length, then the protobuf) is matched to its trigger event by
trigger_event_id (replay's id: "rsc15-" + FNV-1a of the row, tabs as NULs)
and scored against the session's next click: Recall@K (hit) and MRR@K.
Usage: prequential.py TEST_FILE RECS_FILE K
       prequential.py --latency RECS_FILE   (p50/p99 of Recommendation.latency_ms)
       prequential.py --e2e INPUTS_FILE RECS_FILE   (p50/p99 from each trigger event's
           Kafka timestamp to its list's, both files as kcat -f '%T:%R%s' wrote them;
           CreateTime on both sides, i.e. the producers' clocks: one machine)
       prequential.py --agree RECS_A RECS_B K   (lists of the same trigger in two runs:
           how many are identical in their top K, and the mean share of items in common)"""
import struct
import sys


def fnv1a(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 2:
            n, i = varint(b, i)
            yield f, b[i:i + n]
            i += n
        elif t == 0:
            v, i = varint(b, i)
            yield f, v
        elif t == 1:
            yield f, b[i:i + 8]
            i += 8
        elif t == 5:
            yield f, b[i:i + 4]
            i += 4
        else:
            raise ValueError("wire type %d" % t)


def messages(path):
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        yield data[i + 4:i + 4 + n]
        i += 4 + n


def latency(path):
    lat = sorted(struct.unpack("<d", v)[0] for m in messages(path)
                 for f, v in fields(m) if f == 7)
    if not lat:
        print("lists=0")
        return
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print("lists=%d latency_ms p50=%.3f p99=%.3f max=%.3f" % (len(lat), q(0.5), q(0.99), lat[-1]))


def stamped(path):
    """(timestamp ms, protobuf) of each record of a kcat -f '%T:%R%s' file."""
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        j = data.index(b":", i)
        ts = int(data[i:j])
        (n,) = struct.unpack(">I", data[j + 1:j + 5])
        yield ts, data[j + 5:j + 5 + n]
        i = j + 5 + n


def e2e(inputs, recs):
    sent = {}
    for ts, m in stamped(inputs):
        for f, v in fields(m):
            if f == 1:
                sent[v] = ts
                break
    lat = sorted(ts - sent[trig] for ts, m in stamped(recs)
                 for f, trig in fields(m) if f == 5 and trig in sent)
    if not lat:
        print("e2e_lists=0")
        return
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print("e2e_lists=%d e2e_ms p50=%d p99=%d max=%d" % (len(lat), q(0.5), q(0.99), lat[-1]))


def lists_of(path):
    out = {}
    for msg in messages(path):
        items, trig = [], None
        for fno, v in fields(msg):
            if fno == 3:
                for g, w in fields(v):
                    if g == 1:
                        items.append(w.decode())
            elif fno == 5:
                trig = v.decode()
        out[trig] = items  # a repeated list (same rec_id) counts once
    return out


def agree(path_a, path_b, k):
    a, b = lists_of(path_a), lists_of(path_b)
    both = [t for t in a if t in b]
    same = sum(1 for t in both if a[t][:k] == b[t][:k])
    common = sum(len(set(a[t][:k]) & set(b[t][:k])) / max(len(a[t][:k]), 1) for t in both)
    print("lists_a=%d lists_b=%d matched=%d identical@%d=%.4f overlap@%d=%.4f"
          % (len(a), len(b), len(both), k, same / max(len(both), 1), k,
             common / max(len(both), 1)))


def main():
    if sys.argv[1] == "--latency":
        latency(sys.argv[2])
        return
    if sys.argv[1] == "--e2e":
        e2e(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1] == "--agree":
        agree(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    test, recs, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = []
    with open(test, "rb") as f:
        for n, line in enumerate(f):
            line = line.rstrip(b"\r\n")
            if n == 0 or not line:
                continue
            parts = line.split(b"\t")
            rows.append((parts[0], parts[1], float(parts[2]),
                         "rsc15-%016x" % fnv1a(line.replace(b"\t", b"\0"))))
    rows.sort(key=lambda r: (r[0], r[2]))
    next_item = {}
    for a, b in zip(rows, rows[1:]):
        if a[0] == b[0]:
            next_item[a[3]] = b[1].decode()
    lists = lists_of(recs)
    preds = hits = 0
    rr = 0.0
    for trig, want in next_item.items():
        preds += 1
        got = lists.get(trig, [])[:k]
        if want in got:
            hits += 1
            rr += 1.0 / (got.index(want) + 1)
    covered = sum(1 for t in next_item if t in lists)
    print("predictions=%d with_list=%d recall@%d=%.4f mrr@%d=%.4f"
          % (preds, covered, k, hits / max(preds, 1), k, rr / max(preds, 1)))


main()
