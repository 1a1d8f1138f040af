#!/usr/bin/env python3
"""Unrelated GPU load for the PCIe load test of run-all.sh (LOAD_TEST=1).

Keeps the GPU's SMs busy with large FP16 matrix products (PyTorch, in a process of its own)
for --seconds, few launches per second so that its own command traffic stays small, and
reports the NVML PCIe byte counters over its run (NVML_FI_DEV_PCIE_COUNT_RX_BYTES /
_TX_BYTES, the counters trtvision-bench reads) as JSON: run alone, that is the load's own
share of the bytes; run next to a pipeline, the pipeline's record shows what the load did
to the pipeline's bytes per frame.

Usage: gpu-load.py --seconds S [--size N] [--what NAME] [--out FILE]
"""

import argparse
import ctypes
import json
import os
import sys
import time

NVML_FI_DEV_PCIE_COUNT_TX_BYTES = 197
NVML_FI_DEV_PCIE_COUNT_RX_BYTES = 198


class FieldValue(ctypes.Structure):
    # nvml.h nvmlFieldValue_t
    _fields_ = [
        ("fieldId", ctypes.c_uint),
        ("scopeId", ctypes.c_uint),
        ("timestamp", ctypes.c_longlong),
        ("latencyUsec", ctypes.c_longlong),
        ("valueType", ctypes.c_int),
        ("nvmlReturn", ctypes.c_int),
        ("value", ctypes.c_ulonglong),
    ]


class Nvml:
    """The two PCIe byte counters of GPU 0, or None where NVML or the fields are missing."""

    def __init__(self):
        self.lib = None
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            if lib.nvmlInit_v2() != 0:
                return
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) != 0:
                return
            self.lib, self.handle = lib, handle
        except OSError:
            pass

    def counters(self):
        """(RX, TX, width in bits): the counters wrap at that width."""
        if self.lib is None:
            return None
        vals = (FieldValue * 2)()
        vals[0].fieldId = NVML_FI_DEV_PCIE_COUNT_RX_BYTES
        vals[1].fieldId = NVML_FI_DEV_PCIE_COUNT_TX_BYTES
        if self.lib.nvmlDeviceGetFieldValues(self.handle, 2, vals) != 0:
            return None
        if vals[0].nvmlReturn != 0 or vals[1].nvmlReturn != 0:
            return None
        # NVML_VALUE_TYPE_UNSIGNED_INT (1): 32-bit counters.
        width = 32 if 1 in (vals[0].valueType, vals[1].valueType) else 64
        mask = (1 << width) - 1
        return vals[0].value & mask, vals[1].value & mask, width


class Totals:
    """Bytes since the first reading; a counter wraps at most once between two readings."""

    def __init__(self):
        self.last, self.h2d, self.d2h = None, 0, 0

    def push(self, now):
        if now is None:
            return
        if self.last is not None:
            mask = (1 << now[2]) - 1
            self.h2d += (now[0] - self.last[0]) & mask
            self.d2h += (now[1] - self.last[1]) & mask
        self.last = now


def record(a, device, products, dt, h2d, d2h):
    """The run in the format of shared/bench-schema.md: a "frame" is one matrix product."""
    per = (lambda v: None if v is None else round(v / (products / dt), 1))
    return {
        "device": device,
        "date": os.environ.get("TRTV_DATE") or time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": os.environ.get("TRTV_COMMIT", "unknown"),
        "commit_dirty": os.environ.get("TRTV_COMMIT_DIRTY") == "1",
        "what": a.what,
        "pipeline": "scripts/device/gpu-load.py " + " ".join(sys.argv[1:])
        + f": torch.matmul of two {a.size}x{a.size} FP16 matrices, 8 queued then one synchronize, for {a.seconds} s",
        "cameras": 0,
        "width": None,
        "height": None,
        "batch_size": None,
        "model": "none",
        "backend": "none",
        "frames": products,
        "frame_meaning": f"one {a.size}x{a.size} FP16 matrix product",
        "fps_total": round(products / dt, 1),
        "fps_per_camera": None,
        "latency_ms": None,
        "cpu_cores": None,
        "rss_mib": None,
        "vram_mib": None,
        "h2d_bytes_per_frame": per(h2d),
        "d2h_bytes_per_frame": per(d2h),
        "h2d_bytes_per_s": None if h2d is None else round(h2d, 1),
        "d2h_bytes_per_s": None if d2h is None else round(d2h, 1),
        "pcie_method": "NVML_FI_DEV_PCIE_COUNT_RX_BYTES / _TX_BYTES read after every 8 products, over the run",
        "seconds": round(dt, 3),
        "tflops": round(products * 2 * a.size**3 / dt / 1e12, 1),
        "reference": None,
        "ratio": None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--out")
    ap.add_argument("--what", default="pcie-load-alone")
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu-load: no CUDA device for PyTorch", file=sys.stderr)
        return 1
    x = torch.randn(a.size, a.size, device="cuda", dtype=torch.float16)
    y = torch.randn(a.size, a.size, device="cuda", dtype=torch.float16)
    z = torch.empty_like(x)
    for _ in range(3):
        torch.matmul(x, y, out=z)
    torch.cuda.synchronize()
    nvml = Nvml()
    totals = Totals()
    first = nvml.counters()
    totals.push(first)
    t0 = time.monotonic()
    products = 0
    while time.monotonic() - t0 < a.seconds:
        # 8 products queued, then one wait: a few hundred launches per second.
        for _ in range(8):
            torch.matmul(x, y, out=z)
        torch.cuda.synchronize()
        products += 8
        totals.push(nvml.counters())
    dt = time.monotonic() - t0
    h2d = d2h = None
    if first is not None:
        h2d, d2h = totals.h2d / dt, totals.d2h / dt
    rec = record(a, torch.cuda.get_device_name(0), products, dt, h2d, d2h)
    text = json.dumps(rec, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
