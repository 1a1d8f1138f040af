"""Helpers shared by the Python baselines (seed_baseline.py, gpu_peer.py): the model config
(the [model]/[input]/[output] keys of engines/*.toml) and the measurements (CPU time, RSS and
VRAM samplers, percentiles, drift, commit and CPU facts), as trtvision-bench takes them."""

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

def read_toml(path):
    try:
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    except ImportError:
        pass
    # Python < 3.11: the flat subset the model configs use (sections, scalars, arrays).
    out = {}
    sec = out
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                sec = out.setdefault(line[1:-1].strip(), {})
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            sec[k] = json.loads(v.replace("'", '"'))
    return out


class ModelConfig:
    def __init__(self, path, parsers=("yolo-seg",)):
        t = read_toml(path)
        base = os.path.dirname(os.path.abspath(path))
        m, i, o = t.get("model", {}), t.get("input", {}), t.get("output", {})
        self.path = path
        self.onnx = os.path.join(base, m["onnx"])
        labels = m.get("labels")
        self.labels = []
        if labels:
            with open(os.path.join(base, labels)) as f:
                self.labels = [line.strip() for line in f if line.strip()]
        self.input_name = i.get("name", "images")
        self.width = int(i["width"])
        self.height = int(i["height"])
        if i.get("resize", "letterbox") != "letterbox":
            sys.exit(f"{path}: the baseline implements resize = \"letterbox\" only")
        self.pad = int(i.get("pad-value", 114))
        self.rgb = i.get("color", "rgb") == "rgb"
        self.scale = float(i.get("scale", 1.0 / 255.0))
        self.mean = np.array(i.get("mean", [0, 0, 0]), np.float32).reshape(3, 1, 1)
        self.std = np.array(i.get("std", [1, 1, 1]), np.float32).reshape(3, 1, 1)
        self.parser = o.get("parser")
        if self.parser not in parsers:
            sys.exit(f"{path}: parser = {self.parser!r}; this baseline decodes {', '.join(repr(p) for p in parsers)}")
        self.conf = float(o.get("conf-threshold", 0.25))
        self.iou = float(o.get("nms-iou", 0.45))
        self.max_det = int(o.get("max-detections", 100))
        self.boxes_name = o.get("boxes", "output0")
        self.protos_name = o.get("protos", "output1")
        # The output tensors the baseline reads (boxes, and the prototypes of a yolo-seg model).
        self.output_names = [self.boxes_name] + ([self.protos_name] if self.parser == "yolo-seg" else [])




def cpu_time_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return None


def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def percentile(v, p):
    """Linear interpolation between closest ranks (as trtvision-bench)."""
    v = sorted(v)
    r = p / 100 * (len(v) - 1)
    lo, hi = int(np.floor(r)), int(np.ceil(r))
    return v[lo] + (v[hi] - v[lo]) * (r - lo)


class Nvml:
    """Device-wide used memory of GPU 0: pynvml when installed, else nvidia-smi."""

    def __init__(self):
        self.handle = None
        self.smi = shutil.which("nvidia-smi")
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.method = "NVML (pynvml) nvmlDeviceGetMemoryInfo used, device-wide"
        except Exception:
            self.method = "nvidia-smi --query-gpu=memory.used, device-wide" if self.smi else None

    def name(self):
        if self.handle is not None:
            n = self.nvml.nvmlDeviceGetName(self.handle)
            return n.decode() if isinstance(n, bytes) else n
        if self.smi:
            r = subprocess.run([self.smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
            return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None
        return None

    def used_mib(self):
        if self.handle is not None:
            return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 1048576.0
        if self.smi:
            r = subprocess.run(
                [self.smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            )
            try:
                return float(r.stdout.strip().splitlines()[0])
            except (ValueError, IndexError):
                return None
        return None


class Sampler(threading.Thread):
    """Calls `fn` every `interval` s; keeps (t, value) pairs."""

    def __init__(self, fn, interval, t0):
        super().__init__(daemon=True)
        self.fn, self.interval, self.t0 = fn, interval, t0
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            v = self.fn()
            if v is not None:
                self.samples.append((time.monotonic() - self.t0, v))
            self.stop.wait(self.interval)

    def finish(self):
        self.stop.set()
        self.join()
        return self.samples


def mem_stats(samples, a, b, baseline=None):
    if not samples:
        return None
    win = [s for s in samples if a <= s[0] <= b]
    use = win if len(win) >= 4 else samples
    half = use[len(use) // 2 :]
    vals = sorted(v for _, v in half)
    out = {
        "steady": round(vals[len(vals) // 2], 1),
        "peak": round(max(v for _, v in samples), 1),
        "drift_mib_per_min": round(slope([t / 60 for t, _ in half], [v for _, v in half]), 2),
        "samples_second_half": len(half),
    }
    if baseline is not None:
        out["baseline_before_start"] = round(baseline, 1)
        out["above_baseline_steady"] = round(out["steady"] - baseline, 1)
    return out


def git_commit():
    if os.environ.get("TRTV_COMMIT"):
        return os.environ["TRTV_COMMIT"], os.environ.get("TRTV_COMMIT_DIRTY") == "1"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        )
        return sha, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_record(rec, out):
    """Writes the record to `out` (JSON, folders made), or to stdout without `out`."""
    text = json.dumps(rec, indent=1)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


def start_samplers(gpu, t0, interval):
    """Starts the RSS sampler and, with an Nvml `gpu` that can read memory, the VRAM sampler;
    returns (rss, vram or None, VRAM used before the start or None)."""
    rss = Sampler(lambda: (proc_status_kib("VmRSS:") or 0) / 1024.0, interval, t0)
    rss.start()
    if gpu is None or not gpu.method:
        return rss, None, None
    base = gpu.used_mib()
    vram = Sampler(gpu.used_mib, interval if gpu.handle is not None else 1.0, t0)
    vram.start()
    return rss, vram, base
