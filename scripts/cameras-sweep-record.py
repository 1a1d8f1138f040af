#!/usr/bin/env python3
"""One sweep record (and its plot) from the records of scripts/device/cameras-sweep.sh.

Usage: scripts/cameras-sweep-record.py OUT_JSON RECORD.json... [--plot OUT_PNG] [--what NAME]

OUT_JSON gets the keys of shared/bench-schema.md for the sweep as a whole (device, date,
commit and content of the first record; cameras, fps and latency of the best real-time run)
and `runs`: one row per record (cameras, model, precision, sessions, batch, pace, frames/s
total, per camera mean / min / p5, latency p50 / p99, worst 10 s window, CPU cores, VRAM,
trtinfer's mean inference and wait per batch, trtmux's batches, the record file). The
records themselves are left as they are. --plot draws frames/s per camera (mean and
slowest camera) per run against the 30 fps line, and the slowest camera per 10 s window of
each paced run (needs matplotlib: `python3 -m venv /tmp/plot && /tmp/plot/bin/pip install
matplotlib`, then run this script with /tmp/plot/bin/python).
"""
import argparse
import json
import os
import sys


def infer_prop(props, key):
    for word in (props or "").split():
        if word.startswith(key + "="):
            return word.split("=", 1)[1]
    return None


def row(path):
    r = json.load(open(path))
    what = r.get("what", "")
    prec = "fp16" if what.endswith("-fp16") else ("fp32" if what.endswith("-fp32") else None)
    model = what[len("cameras-"):].rsplit("-", 1)[0] if what.startswith("cameras-") else what
    counters = r.get("element_counters_including_warmup") or {}
    pc = r.get("per_camera") or {}
    lat = r.get("latency_ms") or {}
    stages = r.get("stages") or []
    return {
        "record": os.path.basename(path),
        "cameras": r.get("cameras"),
        "model": model,
        "precision": prec,
        "stages": ",".join(stages) if stages else "none",
        "sessions": int(infer_prop(r.get("infer_props"), "sessions") or 1),
        "batch": r.get("batch_size"),
        "paced": bool(r.get("paced_realtime")),
        "duration_s": r.get("duration_s"),
        "fps_total": r.get("fps_total"),
        "fps_per_camera": r.get("fps_per_camera"),
        "fps_per_camera_min": r.get("fps_per_camera_min"),
        "fps_per_camera_p5": r.get("fps_per_camera_p5"),
        "latency_ms_p50": lat.get("p50"),
        "latency_ms_p99": lat.get("p99"),
        "latency_drift_ms_per_min": r.get("latency_drift_ms_per_min"),
        "worst_window_fps_per_camera_min": pc.get("worst_window_fps_per_camera_min"),
        "cpu_cores": r.get("cpu_cores"),
        "vram_mib_above_baseline": (r.get("vram_mib") or {}).get("above_baseline_steady"),
        "infer_mean_ms": counters.get("infer.mean_infer_ms"),
        "infer_wait_ms": counters.get("infer.mean_wait_ms"),
        "mux_batches": counters.get("m.batches"),
        "mean_batch_fill": r.get("mean_batch_fill"),
        "cameras_realtime": r.get("cameras_realtime"),
        "windows": pc.get("windows") or [],
        "_record": r,
    }


def label(x):
    s = f"{x['cameras']} {x['model']} {x['precision'] or ''} s{x['sessions']} b{x['batch']}"
    if x["stages"] not in ("preprocess,infer,maskselect,overlay",):
        s += f" [{x['stages']}]"
    if not x["paced"]:
        s += " unpaced"
    return s


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 9), gridspec_kw={"height_ratios": [3, 2]})
    names = [label(x) for x in rows]
    ys = range(len(rows))
    mean = [x["fps_per_camera"] or 0 for x in rows]
    # The slowest camera of the worst 10 s window: over a whole file run every camera plays
    # the same passes, so its own mean equals everybody's.
    low = [x["worst_window_fps_per_camera_min"] or 0 for x in rows]
    a.barh([y + 0.2 for y in ys], mean, height=0.4, label="mean per camera")
    a.barh([y - 0.2 for y in ys], low, height=0.4, label="slowest camera, worst 10 s window")
    a.axvline(30, color="k", linestyle="--", linewidth=1, label="30 fps")
    a.set_yticks(list(ys))
    a.set_yticklabels(names, fontsize=8)
    a.invert_yaxis()
    a.set_xlabel("frames/s per camera")
    a.legend(loc="lower right", fontsize=8)
    dev = rows[0]["_record"].get("device", "")
    a.set_title(f"Cameras per GPU: {dev}, {rows[0]['_record'].get('date', '')}")
    for x in rows:
        if x["paced"] and x["windows"]:
            b.plot([w["t_s"] for w in x["windows"]], [w["fps_per_camera_min"] for w in x["windows"]],
                   marker="o", markersize=3, label=label(x))
    b.axhline(30, color="k", linestyle="--", linewidth=1)
    b.set_xlabel("s after the first measured frame (10 s windows)")
    b.set_ylabel("slowest camera, frames/s")
    b.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("records", nargs="+")
    ap.add_argument("--plot")
    ap.add_argument("--what", default="cameras-sweep")
    a = ap.parse_args()
    rows = [row(p) for p in a.records]
    if not rows:
        sys.exit("no records")
    first = rows[0]["_record"]
    paced_rt = [x for x in rows if x["paced"] and x["cameras_realtime"]]
    best = max(paced_rt, key=lambda x: x["cameras"]) if paced_rt else max(rows, key=lambda x: x["fps_total"] or 0)
    b = best["_record"]
    rec = {
        "device": first.get("device"),
        "date": first.get("date"),
        "commit": first.get("commit"),
        "commit_dirty": first.get("commit_dirty"),
        "what": a.what,
        "pipeline": "bash .device-build/cameras-sweep.sh PLAN DURATION (one cameras.sh run per row; each row names its record)",
        "cameras": b.get("cameras"),
        "width": b.get("width"),
        "height": b.get("height"),
        "batch_size": b.get("batch_size"),
        "model": b.get("model"),
        "backend": b.get("backend"),
        "frames": b.get("frames"),
        "fps_total": b.get("fps_total"),
        "fps_per_camera": b.get("fps_per_camera"),
        "fps_per_camera_min": b.get("fps_per_camera_min"),
        "latency_ms": b.get("latency_ms"),
        "cpu_cores": b.get("cpu_cores"),
        "rss_mib": b.get("rss_mib"),
        "vram_mib": b.get("vram_mib"),
        "h2d_bytes_per_frame": b.get("h2d_bytes_per_frame"),
        "d2h_bytes_per_frame": b.get("d2h_bytes_per_frame"),
        "reference": next((x["_record"].get("reference") for x in rows if x["_record"].get("reference")), None),
        "ratio": b.get("ratio"),
        "cameras_realtime": max((x["cameras"] for x in paced_rt), default=0),
        "content": first.get("content"),
        "headline_run": best["record"],
        "runs": [{k: v for k, v in x.items() if k not in ("_record", "windows")} for x in rows],
    }
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    if a.plot:
        plot(rows, a.plot)
    for x in rows:
        print(f"{label(x):60s} {x['fps_total']!s:>9} fps  mean {x['fps_per_camera']}  min {x['fps_per_camera_min']}  "
              f"p99 {x['latency_ms_p99']} ms  infer {x['infer_mean_ms']} ms  wait {x['infer_wait_ms']} ms")


if __name__ == "__main__":
    main()
