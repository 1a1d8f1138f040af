#!/usr/bin/env python3
"""Plots a sweep record of benches/sweep.sh: throughput vs cameras, vs batch size and vs
resolution, one panel each.

  plot.py SWEEP.json [OUT.png]      (default: SWEEP.png next to the record)
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(rec, kind):
    return [t for t in rec["table"] if t["what"].startswith(f"sweep-{kind}-") and t.get("fps_total")]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.splitext(src)[0] + ".png"
    rec = json.load(open(src))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    title = f"{rec['device']} - {rec['backend']} - {rec['model']} - commit {rec['commit'][:8]} - {rec['date']}"
    fig.suptitle(f"trtvision full pipeline throughput (files, decode + YOLO-seg + masks + overlay)\n{title}", fontsize=10)

    # Throughput on a log2 axis; per camera on a second axis, p50 latency next to each point.
    for ax, kind, xkey, title in (
        (axes[0], "cameras", "cameras", "vs cameras (640x480, batch = cameras up to the model's max-batch)"),
        (axes[1], "batch", "batch_size", "vs trtmux batch-size (8 cameras, 640x480)"),
    ):
        pts = rows(rec, kind)
        if pts:
            x = [t[xkey] for t in pts]
            ax.plot(x, [t["fps_total"] for t in pts], "o-", label="total fps")
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(v) for v in x])
            for t in pts:
                if t.get("latency_p50_ms") is not None:
                    ax.annotate(f"p50 {t['latency_p50_ms']:.0f} ms", (t[xkey], t["fps_total"]),
                                textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
            if kind == "cameras":
                ax2 = ax.twinx()
                ax2.plot(x, [t["fps_per_camera"] for t in pts], "s--", color="tab:orange")
                ax2.set_ylabel("fps per camera (dashed)", color="tab:orange")
                ax2.set_ylim(bottom=0)
            ax.set_ylim(0, max(t["fps_total"] for t in pts) * 1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xkey.replace("_", " "))
        ax.set_ylabel("total fps")

    res = rows(rec, "res")
    ax = axes[2]
    if res:
        labels = [f"{t['width']}x{t['height']}" for t in res]
        ax.bar(labels, [t["fps_total"] for t in res], color="tab:green")
        for i, t in enumerate(res):
            ax.annotate(f"{t['fps_total']:.0f}", (i, t["fps_total"]), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=8)
    ax.set_title("vs resolution (8 cameras, batch 8)", fontsize=10)
    ax.set_ylabel("total fps")
    notes = []
    loads = [r["loadavg"]["start"][0] for r in rec.get("runs", []) if (r.get("loadavg") or {}).get("start")]
    if loads:
        notes.append(f"1-min load average at the runs' starts: {min(loads):.1f}-{max(loads):.1f} "
                     f"on {rec['runs'][0].get('cpu_logical_cores', '?')} logical cores")
    if rec.get("skipped"):
        notes.append("not run (budget) or failed: " + ", ".join(rec["skipped"]))
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
