#!/usr/bin/env python3
"""Compares the detections of gpu_peer.py runs (--results-out) with each other and with the
plugin chain's (trtjsonexport lines) on the same files:

    compare_peer.py PEER.json [OTHER_PEER.json ...] --chain CHAIN.jsonl [--max-box-px 2]

Every peer result must be identical to the first (batching, sessions and pacing must not
change a frame's results); against the chain, every frame must have the same classes and
each box (x, y, w, h in frame pixels) must lie within --max-box-px of the chain's (the
colour conversion and resize differ slightly). Exits 1 with the first differences."""

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer", nargs="+")
    ap.add_argument("--chain", required=True)
    ap.add_argument("--max-box-px", type=float, default=2.0)
    a = ap.parse_args()
    runs = [json.load(open(p)) for p in a.peer]
    bad = []
    base = runs[0]
    if not base:
        bad.append(f"{a.peer[0]}: no frame")
    for p, r in zip(a.peer[1:], runs[1:]):
        if r != base:
            diff = [k for k in sorted(set(r) | set(base)) if r.get(k) != base.get(k)]
            bad.append(f"{p}: {len(diff)} frame(s) differ from {a.peer[0]}, first {diff[0]}: {r.get(diff[0])} vs {base.get(diff[0])}")
    chain = {}
    with open(a.chain) as f:
        for line in f:
            c = json.loads(line)
            chain[f"{c['source']}:{c['frame']}"] = c
    worst, dets = 0.0, 0
    for k, p in sorted(base.items()):
        c = chain.get(k)
        if c is None:
            bad.append(f"frame {k}: not in {a.chain}")
            continue
        cd = sorted((d["class_id"], d["bbox"]) for d in c["detections"])
        pd = sorted((cl, [b[0], b[1], b[2] - b[0], b[3] - b[1]]) for cl, b in zip(p["classes"], p["boxes"]))
        if [x[0] for x in cd] != [x[0] for x in pd]:
            bad.append(f"frame {k}: classes {[x[0] for x in pd]}, the chain found {[x[0] for x in cd]}")
            continue
        for (_, cb), (_, pb) in zip(cd, pd):
            d = max(abs(x - y) for x, y in zip(cb, pb))
            worst = max(worst, d)
            dets += 1
            if d > a.max_box_px:
                bad.append(f"frame {k}: box {pb} vs the chain's {cb} ({d:.1f} px)")
    same = "" if len(runs) == 1 else "; " + ("the peer runs differ" if any(b.startswith(tuple(a.peer[1:])) for b in bad) else f"{len(runs)} peer runs identical")
    print(f"{len(base)} frames, {dets} detections compared with the chain, largest box difference {worst:.1f} px{same}")
    if dets == 0:
        bad.append("no detection to compare")
    if bad:
        print("\n".join(bad[:10]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
