#!/usr/bin/env python3
"""Combines a trtvision-bench record and a seed-baseline record of the same job into one
comparison record (bench/results format) and prints the ratio table.

  combine.py --ours A.json [A2.json ...] --baseline B.json [B2.json ...] --out OUT.json --what WHAT

With several runs of a side (alternated repetitions), the run with the median fps_total
stands for that side (the others' fps are kept in `repeats`). The combined record is the
trtvision record with `what` = WHAT, `reference` = the baseline's headline numbers (name
"seed-baseline"), `ratio` = fps_total / baseline fps_total, `ratios` = ours / baseline for
every compared quantity, and the baseline record itself under `seed_baseline`. Standard
library only.
"""

import argparse
import json
import sys


def get(r, *keys):
    for k in keys:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


ROWS = [
    ("fps_total", ("fps_total",), "{:.1f}", "higher is better"),
    ("fps_per_camera", ("fps_per_camera",), "{:.2f}", "higher is better"),
    ("latency p50 ms", ("latency_ms", "p50"), "{:.1f}", "lower is better"),
    ("latency p95 ms", ("latency_ms", "p95"), "{:.1f}", "lower is better"),
    ("latency p99 ms", ("latency_ms", "p99"), "{:.1f}", "lower is better"),
    ("cpu cores", ("cpu_cores",), "{:.2f}", "lower is better"),
    ("cpu core-s / frame", None, "{:.4f}", "lower is better"),
    ("RSS steady MiB", ("rss_mib", "steady"), "{:.0f}", "lower is better"),
    ("RSS peak MiB", ("rss_mib", "peak"), "{:.0f}", "lower is better"),
    ("VRAM steady MiB", ("vram_mib", "steady"), "{:.0f}", "lower is better (device-wide)"),
    ("h2d bytes/frame", ("h2d_bytes_per_frame",), "{:.0f}", "lower is better"),
    ("d2h bytes/frame", ("d2h_bytes_per_frame",), "{:.0f}", "lower is better"),
]


def value(r, keys, label):
    if keys is None:  # CPU time per frame: cores / fps
        c, f = r.get("cpu_cores"), r.get("fps_total")
        return c / f if isinstance(c, (int, float)) and isinstance(f, (int, float)) and f > 0 else None
    return get(r, *keys)


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b != 0:
        return round(a / b, 4)
    return None


def median_run(paths):
    """(the record with the median fps_total, every run's fps_total in run order)."""
    recs = [json.load(open(p)) for p in paths]
    fps = [r.get("fps_total") or 0.0 for r in recs]
    order = sorted(range(len(recs)), key=lambda i: fps[i])
    return recs[order[(len(order) - 1) // 2]], fps


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("--ours", nargs="+", required=True)
    ap.add_argument("--baseline", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", required=True)
    a = ap.parse_args()
    ours, ours_fps = median_run(a.ours)
    base, base_fps = median_run(a.baseline)
    out, what = a.out, a.what
    for k in ("cameras", "width", "height", "frames", "model"):
        if ours.get(k) != base.get(k):
            print(f"combine: note: {k} differs: trtvision {ours.get(k)!r}, baseline {base.get(k)!r}", file=sys.stderr)

    rec = dict(ours)
    rec["what"] = what
    rec["reference"] = {
        "name": "seed-baseline",
        "fps_total": base.get("fps_total"),
        "backend": base.get("backend"),
        "latency_ms": base.get("latency_ms"),
        "cpu_cores": base.get("cpu_cores"),
        "rss_mib_steady": get(base, "rss_mib", "steady"),
        "vram_mib_steady": get(base, "vram_mib", "steady"),
        "h2d_bytes_per_frame": base.get("h2d_bytes_per_frame"),
        "d2h_bytes_per_frame": base.get("d2h_bytes_per_frame"),
        "frames": base.get("frames"),
        "pipeline": base.get("pipeline"),
    }
    rec["ratio"] = ratio(ours.get("fps_total"), base.get("fps_total"))
    rec["ratios"] = {
        label: ratio(value(ours, keys, label), value(base, keys, label)) for label, keys, _, _ in ROWS
    }
    rec["ratios_note"] = "ours / seed baseline for each quantity (fps: > 1 is faster; the others: < 1 is better)"
    rec["trtvision_what"] = ours.get("what")
    rec["repeats"] = {
        "trtvision_fps_total": ours_fps,
        "seed_baseline_fps_total": base_fps,
        "method": "the sides ran alternately (trtvision, baseline, trtvision, ...); each side is represented by its "
        "run with the median fps_total",
    }
    rec["seed_baseline"] = base
    with open(out, "w") as f:
        f.write(json.dumps(rec, indent=1) + "\n")

    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    lines = [
        f"{what}: {ours.get('cameras')} cameras {ours.get('width')}x{ours.get('height')}, "
        f"{ours.get('frames')} / {base.get('frames')} measured frames, {ours.get('device')}",
        f"| quantity | trtvision ({ours.get('backend')}) | seed baseline ({base.get('backend')}) | ours / baseline |",
        "|---|---:|---:|---:|",
    ]
    for label, keys, f, note in ROWS:
        a, b = value(ours, keys, label), value(base, keys, label)
        if a is None and b is None:
            continue
        r = rec["ratios"][label]
        lines.append(f"| {label} | {fmt(a, f)} | {fmt(b, f)} | {fmt(r, '{:.2f}')} |")
    print("\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
