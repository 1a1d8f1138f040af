#!/usr/bin/env python3
"""Adds the explicit copies counted by the CUPTI tracer to a trtvision-bench record.

Usage: merge_copies.py TRACE_DIR RECORD.json
TRACE_DIR holds the tracer's JSON summaries (one per process) of the run that wrote
RECORD.json. The record gains `cupti_explicit_copies`: bytes of explicit copies (any
cuMemcpy of any library in the process: what crossed PCIe as data) per frame in the
steady phase, next to NVML's device-wide bytes of the same run.
"""
import glob, json, sys
path = sys.argv[2]
rec = json.load(open(path))
fps = rec.get("fps_total") or 0.0
tot = {"HtoD": 0, "DtoH": 0, "DtoD": 0}
counts = {"HtoD": 0, "DtoH": 0, "DtoD": 0}
steady_s, kernels = 0.0, 0
kernel_ns, streams, busy = 0, [], []
for f in glob.glob(sys.argv[1] + "/*.json"):
    d = json.load(open(f))
    st = d.get("phases", {}).get("steady")
    if not st or (d.get("steady_s") or 0) <= 0:
        continue
    steady_s = max(steady_s, d["steady_s"])
    for m in st.get("memcpy", []):
        if m.get("copy") in tot:
            tot[m["copy"]] += m.get("bytes", 0)
            counts[m["copy"]] += m.get("count", 0)
    k = st.get("kernels")
    kernels += k if isinstance(k, int) else (k or {}).get("count", 0)
    kernel_ns += st.get("kernel_ns", 0)
    streams += [s for s in st.get("kernel_streams", []) if isinstance(s.get("stream"), int)]
    if (st.get("kernel_busy") or {}).get("span_ns"):
        busy.append(st["kernel_busy"])
frames = fps * steady_s
if frames > 0:
    rec["cupti_explicit_copies"] = {
        "what": "CUPTI activity records of the steady phase (after the first 4 s) of every process: bytes of explicit copies per frame; frames = fps_total x steady seconds (an estimate)",
        "steady_s": steady_s,
        "frames_estimate": round(frames),
        "htod_bytes_per_frame": round(tot["HtoD"] / frames, 1),
        "dtoh_bytes_per_frame": round(tot["DtoH"] / frames, 1),
        "dtod_bytes_per_frame": round(tot["DtoD"] / frames, 1),
        "copies_per_frame": {k: round(v / frames, 3) for k, v in counts.items()},
        "kernel_launches_per_frame": round(kernels / frames, 2),
    }
    if kernel_ns:
        top = sorted(streams, key=lambda s: -s["ns"])[:8]
        rec["cupti_kernel_time"] = {
            "what": "CUPTI concurrent-kernel records of the steady phase: GPU time of every kernel (summed), per stream, and over the steady span the time with >= 1 and >= 2 kernels running (one process per row of `timeline`)",
            "gpu_us_per_frame": round(kernel_ns / 1e3 / frames, 2),
            "streams": [{"context": s["context"], "stream": s["stream"], "kernels": s["kernels"],
                         "gpu_ms": round(s["ns"] / 1e6, 1)} for s in top],
            "timeline": [{"span_ms": round(b["span_ns"] / 1e6, 1),
                          "busy_fraction": round(b["busy_ns"] / b["span_ns"], 4),
                          "overlap_fraction": round(b["overlap_ns"] / b["span_ns"], 4),
                          "kernel_time_over_busy": round(kernel_ns / b["busy_ns"], 3) if b["busy_ns"] else None,
                          "intervals": b["intervals"], "intervals_dropped": b["intervals_dropped"]}
                         for b in busy],
        }
    json.dump(rec, open(path, "w"), indent=1)
    print("explicit copies per frame:", rec["cupti_explicit_copies"])
    if "cupti_kernel_time" in rec:
        print("kernel time:", rec["cupti_kernel_time"])
