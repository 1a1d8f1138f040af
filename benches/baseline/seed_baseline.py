#!/usr/bin/env python3
"""Seed-style baseline: the multi-camera YOLO-seg job done by hand in Python, the way users
do it today without trtvision, measured like trtvision-bench measures the plugin.

Per batch (one frame of every camera):
  * each camera's next frame from its own cv2.VideoCapture (FFmpeg, CPU decode), one after
    the other;
  * per frame: letterbox with OpenCV (resize, pad value, RGB, scale/mean/std from the model
    TOML) into one float32 NCHW batch (numpy);
  * one ONNX Runtime session run on the batch (CPUExecutionProvider, or
    CUDAExecutionProvider with --provider cuda: the batch is copied to the GPU and both
    outputs back to the host by session.run);
  * per frame: numpy decode of the YOLO-seg outputs (best class, confidence threshold,
    class-aware cv2.dnn.NMSBoxesBatched, max detections), boxes mapped back through the
    letterbox;
  * per detection: mask = sigmoid(coefficients x prototypes) over the box in prototype
    space, resized to the box in the frame, threshold 0.5;
  * per detection: mask blended into the frame, box and label drawn with OpenCV.
No encoder (the trtvision side ends in fakesinks too).

Measurements (monotonic clock): fps_total = measured frames / (last frame drawn - first
measured frame decoded); latency per frame = drawn - decoded; cpu_cores = getrusage
(user+system, all threads) over that window / its wall time; RSS = VmRSS every 100 ms;
VRAM (CUDA provider) = device-wide used memory from NVML (pynvml) or nvidia-smi; h2d/d2h
bytes per frame are computed from the tensors session.run copies (CUDA provider only).

Writes one JSON record in the bench/results format (see benches/README.md).
"""

import argparse
import datetime
import os
import platform
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort
from bench_common import ModelConfig, Nvml, cpu_model, cpu_time_s, git_commit, mem_stats, percentile, start_samplers, write_record

CLASS_COLOURS = [(40, 40, 220), (60, 200, 40), (220, 60, 40), (40, 210, 230)]  # BGR


# ---------------------------------------------------------------------------------------
# The job, as seed code does it


def letterbox(frame, cfg, out):
    """Letterboxes a BGR frame into `out` (3 x H x W float32), like trtpreprocess."""
    h, w = frame.shape[:2]
    s = min(cfg.width / w, cfg.height / h)
    px = int(np.floor((cfg.width - w * s) / 2))
    py = int(np.floor((cfg.height - h * s) / 2))
    nw, nh = int(round(w * s)), int(round(h * s))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else frame
    canvas = np.full((cfg.height, cfg.width, 3), cfg.pad, np.uint8)
    canvas[py : py + nh, px : px + nw] = img
    if cfg.rgb:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    chw = canvas.transpose(2, 0, 1).astype(np.float32) * cfg.scale
    out[...] = (chw - cfg.mean) / cfg.std
    return s, px, py


def decode(out0, cfg, s, px, py, fw, fh, n_protos):
    """YOLO-seg rows [4 + C + P, N] of one frame -> list of (box xyxy frame px, conf, class, coeffs)."""
    nc = out0.shape[0] - 4 - n_protos
    scores = out0[4 : 4 + nc]
    cls = scores.argmax(0)
    conf = scores.max(0)
    idx = np.nonzero(conf >= cfg.conf)[0]
    if idx.size == 0:
        return []
    cx, cy, bw, bh = out0[0, idx], out0[1, idx], out0[2, idx], out0[3, idx]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1)
    keep = cv2.dnn.NMSBoxesBatched(
        boxes.tolist(), conf[idx].tolist(), cls[idx].tolist(), cfg.conf, cfg.iou, top_k=cfg.max_det
    )
    dets = []
    for k in np.array(keep).reshape(-1)[: cfg.max_det]:
        a = idx[k]
        x0, y0, w_, h_ = boxes[k]
        fx0 = float(np.clip((x0 - px) / s, 0, fw))
        fy0 = float(np.clip((y0 - py) / s, 0, fh))
        fx1 = float(np.clip((x0 + w_ - px) / s, 0, fw))
        fy1 = float(np.clip((y0 + h_ - py) / s, 0, fh))
        dets.append(((fx0, fy0, fx1, fy1), float(conf[a]), int(cls[a]), out0[4 + nc :, a]))
    return dets


def det_mask(protos, coeffs, box, s, px, py, cfg):
    """One detection's mask over its frame box (bool, box-sized), from the prototypes."""
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        return None, (x0, y0)
    p, ph, pw = protos.shape
    sx, sy = pw / cfg.width, ph / cfg.height
    # The box in prototype pixels (through the letterbox), one pixel of margin for the resize.
    u0 = max(int(np.floor((x0 * s + px) * sx)) - 1, 0)
    v0 = max(int(np.floor((y0 * s + py) * sy)) - 1, 0)
    u1 = min(int(np.ceil((x1 * s + px) * sx)) + 1, pw)
    v1 = min(int(np.ceil((y1 * s + py) * sy)) + 1, ph)
    crop = protos[:, v0:v1, u0:u1].reshape(p, -1)
    logits = (coeffs @ crop).reshape(v1 - v0, u1 - u0)
    m = 1.0 / (1.0 + np.exp(-logits))
    # Resize the prototype crop so that it covers the frame box exactly.
    fx = (u1 - u0) / sx / s  # crop width in frame pixels
    fy = (v1 - v0) / sy / s
    big = cv2.resize(m, (max(int(round(fx)), 1), max(int(round(fy)), 1)), interpolation=cv2.INTER_LINEAR)
    ox = int(round(x0 - ((u0 / sx) - px) / s))
    oy = int(round(y0 - ((v0 / sy) - py) / s))
    sub = big[oy : oy + bh, ox : ox + bw]
    if sub.shape != (bh, bw):
        sub = cv2.resize(sub if sub.size else m, (bw, bh), interpolation=cv2.INTER_LINEAR)
    return sub > 0.5, (x0, y0)


def draw(frame, dets, masks, labels):
    for (box, conf, cls, _), (mask, (mx, my)) in zip(dets, masks):
        colour = CLASS_COLOURS[cls % len(CLASS_COLOURS)]
        if mask is not None:
            region = frame[my : my + mask.shape[0], mx : mx + mask.shape[1]]
            m = mask[: region.shape[0], : region.shape[1]]
            region[m] = (region[m] * 0.5 + np.array(colour) * 0.5).astype(np.uint8)
        p0 = (int(box[0]), int(box[1]))
        cv2.rectangle(frame, p0, (int(box[2]), int(box[3])), colour, 2)
        name = labels[cls] if cls < len(labels) else str(cls)
        cv2.putText(frame, f"{name} {conf:.2f}", (p0[0], max(p0[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", required=True, help="directory with cam0.mp4 .. cam<N-1>.mp4")
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--frames", type=int, default=0, help="frames per camera (default: until the shortest file ends)")
    ap.add_argument("--warmup", type=int, default=5, help="first W frames of every camera are run but not measured")
    ap.add_argument("--model", default="engines/shapes-yolo-seg.toml")
    ap.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--what", default="8cam-seed-baseline")
    ap.add_argument("--device-name")
    ap.add_argument("--out", help="JSON destination (default stdout)")
    a = ap.parse_args()

    cfg = ModelConfig(a.model)
    providers = ["CPUExecutionProvider"]
    if a.provider == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            sys.exit(f"seed_baseline: --provider cuda but ONNX Runtime {ort.__version__} offers {ort.get_available_providers()}")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    sess = ort.InferenceSession(cfg.onnx, providers=providers)
    if sess.get_providers()[0] != providers[0]:
        sys.exit(f"seed_baseline: session runs on {sess.get_providers()}, asked for {providers[0]}")
    names = [o.name for o in sess.get_outputs()]
    if cfg.boxes_name not in names or cfg.protos_name not in names:
        sys.exit(f"seed_baseline: model outputs {names}, config wants {cfg.boxes_name}, {cfg.protos_name}")

    caps = []
    for i in range(a.cameras):
        path = os.path.join(a.files, f"cam{i}.mp4")
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            sys.exit(f"seed_baseline: cannot open {path} with cv2.VideoCapture")
        caps.append(cap)
    fw = int(caps[0].get(cv2.CAP_PROP_FRAME_WIDTH))
    fh = int(caps[0].get(cv2.CAP_PROP_FRAME_HEIGHT))
    if a.frames and a.warmup >= a.frames:
        sys.exit("seed_baseline: --warmup must be smaller than --frames")

    load_start = list(os.getloadavg())
    gpu = Nvml() if a.provider == "cuda" else None
    n = a.cameras
    batch = np.empty((n, 3, cfg.height, cfg.width), np.float32)
    t0 = time.monotonic()
    rss, vram, vram_baseline = start_samplers(gpu, t0, 0.1)

    lat_ms, dets_total = [], 0
    per_cam = [0] * n
    first_start = last_end = None
    cpu_start = cpu_end = None
    h2d = d2h = 0
    measured_frames = 0
    k = 0
    run_t = time.monotonic()
    while not a.frames or k < a.frames:
        frames, t_dec = [], []
        for cap in caps:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(img)
            t_dec.append(time.monotonic())
        if len(frames) < n:
            break
        measured = k >= a.warmup
        if measured and first_start is None:
            cpu_start = cpu_time_s()
            first_start = t_dec[0]
        geo = [letterbox(f, cfg, batch[b]) for b, f in enumerate(frames)]
        out0, out1 = sess.run([cfg.boxes_name, cfg.protos_name], {cfg.input_name: batch})
        if a.provider == "cuda":
            h2d += batch.nbytes
            d2h += out0.nbytes + out1.nbytes
        n_protos = out1.shape[1]
        for b, f in enumerate(frames):
            s, px, py = geo[b]
            dets = decode(out0[b], cfg, s, px, py, f.shape[1], f.shape[0], n_protos)
            masks = [det_mask(out1[b], d[3], d[0], s, px, py, cfg) for d in dets]
            draw(f, dets, masks, cfg.labels)
            t_end = time.monotonic()
            if measured:
                lat_ms.append((t_end - t_dec[b]) * 1e3)
                per_cam[b] += 1
                measured_frames += 1
                dets_total += len(dets)
                last_end = t_end
        k += 1
    if measured_frames:
        cpu_end = cpu_time_s()
    run_wall = time.monotonic() - run_t
    rss_samples = rss.finish()
    vram_samples = vram.finish() if vram else []
    if measured_frames == 0:
        sys.exit(f"seed_baseline: no measured frame ({k} frames per camera read, warm-up {a.warmup})")

    wall = last_end - first_start
    fps = measured_frames / wall
    a_t, b_t = first_start - t0, last_end - t0
    commit, dirty = git_commit()
    device = a.device_name
    if not device:
        device = (gpu.name() if gpu else None) or f"cpu: {cpu_model()} x{os.cpu_count()}"
    cmd = " ".join(sys.argv)
    rec = {
        "device": device,
        "date": os.environ.get("TRTV_DATE") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "commit": commit,
        "commit_dirty": dirty,
        "what": a.what,
        "pipeline": f"python3 {cmd} :: per camera cv2.VideoCapture (FFmpeg CPU decode) -> per-frame OpenCV letterbox "
        f"-> onnxruntime {sess.get_providers()[0]} batch of {n} -> numpy YOLO-seg decode + cv2.dnn.NMSBoxesBatched "
        "-> per-detection prototype masks (numpy, sigmoid, crop, cv2.resize) -> cv2 mask blend, rectangle, putText",
        "cameras": n,
        "width": fw,
        "height": fh,
        "batch_size": n,
        "model": cfg.path,
        "backend": "onnxruntime-cuda" if a.provider == "cuda" else "onnxruntime-cpu",
        "frames": measured_frames,
        "fps_total": round(fps, 2),
        "fps_per_camera": round(fps / n, 2),
        "fps_per_camera_each": [round(c / wall, 2) for c in per_cam],
        "latency_ms": {
            "p50": round(percentile(lat_ms, 50), 2),
            "p95": round(percentile(lat_ms, 95), 2),
            "p99": round(percentile(lat_ms, 99), 2),
            "mean": round(sum(lat_ms) / len(lat_ms), 2),
        },
        "latency_from_to": "frame returned by cap.read() -> the frame's boxes and masks drawn",
        "cpu_cores": round((cpu_end - cpu_start) / wall, 3),
        "rss_mib": mem_stats(rss_samples, a_t, b_t),
        "vram_mib": mem_stats(vram_samples, a_t, b_t, vram_baseline) if vram_samples else None,
        "h2d_bytes_per_frame": round(h2d / (k * n)) if a.provider == "cuda" else None,
        "d2h_bytes_per_frame": round(d2h / (k * n)) if a.provider == "cuda" else None,
        "bytes_method": "computed from the tensors session.run copies per batch (input batch host->device, both outputs "
        "device->host) / frames in the batch" if a.provider == "cuda" else None,
        "gpu_sampling": gpu.method if gpu else None,
        "reference": None,
        "ratio": None,
        "detections_per_frame": round(dets_total / measured_frames, 3),
        "warmup_frames_per_camera": a.warmup,
        "frames_read_per_camera": k,
        "measured_wall_s": round(wall, 3),
        "run_wall_s": round(run_wall, 3),
        "loadavg": {"start": load_start, "end": list(os.getloadavg())},
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "ort_providers": sess.get_providers(),
        "opencv_threads": cv2.getNumThreads(),
    }
    write_record(rec, a.out)
    lt = rec["latency_ms"]
    print(
        f"{a.what}: {n} cams {fw}x{fh} seed baseline ({rec['backend']}) -> {fps:.1f} fps total ({fps / n:.2f}/cam), "
        f"latency p50/p95/p99 {lt['p50']:.1f}/{lt['p95']:.1f}/{lt['p99']:.1f} ms, {rec['cpu_cores']:.2f} cores, "
        f"rss steady {rec['rss_mib']['steady']:.0f} MiB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
