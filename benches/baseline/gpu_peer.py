#!/usr/bin/env python3
"""The GPU peer: the cameras-per-GPU job written the way a careful Python user writes it with
NVIDIA's Python stack, measured like trtvision-bench measures the plugin's chain.

  * N cameras = N looping H.264 files (cam<i>.mp4), each paced at its frame rate (30 fps by
    default, like `trtvision-bench --pace realtime`), decoded on the GPU by PyNvVideoCodec
    (NVDEC, low-latency mode, NV12 surfaces in device memory shared with PyTorch through
    DLPack); decode worker threads (--decode-threads) serve the cameras whose frame is due,
    each on its own CUDA stream, and copy every surface into a bounded pool of NV12 slots;
  * a batcher forms batches of B frames, at most one per camera per batch, and sends a
    partial batch when its first frame waited --push-timeout-ms (like trtmux's
    batched-push-timeout);
  * --sessions ONNX Runtime sessions (CUDA execution provider, each on its own CUDA stream
    and thread) take alternate batches: batched NV12 -> RGB (BT.709 limited range), bilinear
    letterbox to the model input, normalisation, FP16 or FP32 as the model's input wants, all
    in PyTorch on the GPU, then inference with I/O binding on torch tensors (no host copy of
    frames or tensors), then YOLO-seg decode, class-aware NMS (torchvision when installed) and
    the masks of the kept detections, on the GPU; the detections (boxes, scores, classes,
    mask areas) come to the host per batch, the masks stay on the GPU.

--dry-run runs the same program on a CPU machine: decoding by GStreamer (gst-launch-1.0,
avdec_h264, raw NV12 through a pipe), the same operations in numpy, ONNX Runtime's CPU
provider. Its results must equal those of a sequential run (one frame per batch, one
session): `--results-out` writes them per camera and frame.

Measurements (monotonic clock, after --warmup-s): frames/s in total and per camera (mean,
min and per 10 s window), latency from the decoder's output to the frame's results (p50,
p95, p99 and its drift), CPU cores (getrusage), RSS and VRAM (NVML or nvidia-smi). Writes a
record in the bench/results format (shared/bench-schema.md) with `cameras_realtime` (the
camera count when the slowest camera kept >= 29.5 frames/s and the p99 latency stayed
<= 150 ms, else 0). --find-max runs a list of camera counts (each in a fresh process) and
keeps the largest count kept in real time.
"""

import argparse
import collections
import ctypes
import datetime
import heapq
import json
import os
import platform
import queue
import re
import subprocess
import sys
import threading
import time

import numpy as np

try:
    import onnxruntime as ort
except ImportError as _e:  # reported by run_once with a sentence; import_nvc works without it
    ort, ORT_IMPORT_ERROR = None, _e
from bench_common import ModelConfig, Nvml, cpu_model, cpu_time_s, git_commit, mem_stats, percentile, slope, start_samplers, write_record

REALTIME_FPS = 29.5
REALTIME_P99_MS = 150.0
WINDOW_S = 10.0

# BT.709 limited range (16..235 luma, 16..240 chroma) to RGB 0..255.
YUV_SCALE = 255.0 / 219.0
R_V = 1.5748 * 255.0 / 224.0
G_U = -0.1873 * 255.0 / 224.0
G_V = -0.4681 * 255.0 / 224.0
B_U = 1.8556 * 255.0 / 224.0


class PeerError(Exception):
    """A failure with a sentence for the user."""


# ---------------------------------------------------------------------------------------
# Geometry


class Letterbox:
    """Where a w x h frame lands in the model input: scale s, placed size nw x nh at px, py."""

    def __init__(self, w, h, cfg):
        if w % 2 or h % 2:
            raise PeerError(f"frames of {w}x{h}: NV12 needs an even width and height")
        self.w, self.h = w, h
        self.s = min(cfg.width / w, cfg.height / h)
        self.nw, self.nh = int(round(w * self.s)), int(round(h * self.s))
        self.px, self.py = (cfg.width - self.nw) // 2, (cfg.height - self.nh) // 2


def bilinear_taps(n_in, n_out):
    """Source indices and weights of a bilinear resize with half-pixel centres
    (torch.nn.functional.interpolate, align_corners=False)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Operations: numpy (dry run, CPU) and torch (GPU), same boundaries


class NumpyOps:
    """The operations on host arrays (--dry-run)."""

    name = "numpy"

    def __init__(self, cfg, in_dtype):
        self.cfg = cfg
        self.dtype = np.float16 if in_dtype == "float16" else np.float32
        self.taps = {}
        self.pad = ((cfg.pad * cfg.scale - cfg.mean.reshape(3)) / cfg.std.reshape(3)).astype(np.float32)

    def empty_nv12(self, n, w, h):
        return np.empty((n, h * 3 // 2, w), np.uint8)

    def empty_input(self, n):
        return np.empty((n, 3, self.cfg.height, self.cfg.width), self.dtype)

    def copy_frame(self, planes, dst):
        y, uv = planes
        h = y.shape[0]
        dst[:h] = y
        dst[h:] = uv.reshape(h // 2, -1)

    def gather(self, slots, dst):
        for i, s in enumerate(slots):
            dst[i] = s

    def _resize(self, planes, geo, half):
        """planes (n, c, h', w') float32 -> (n, c, nh, nw)."""
        key = (geo.w, geo.h, geo.nw, geo.nh, half)
        if key not in self.taps:
            iw, ih = (geo.w // 2, geo.h // 2) if half else (geo.w, geo.h)
            self.taps[key] = (bilinear_taps(ih, geo.nh), bilinear_taps(iw, geo.nw))
        (y0, y1, wy), (x0, x1, wx) = self.taps[key]
        rows = planes[:, :, y0, :] * (1 - wy)[None, None, :, None] + planes[:, :, y1, :] * wy[None, None, :, None]
        return rows[:, :, :, x0] * (1 - wx) + rows[:, :, :, x1] * wx

    def letterbox(self, nv12, geo, out):
        """nv12 (n, 3h/2, w) uint8 -> out (n, 3, H, W) normalised, letterboxed."""
        n, h = nv12.shape[0], geo.h
        y = nv12[:, :h, :].astype(np.float32)[:, None]
        uv = nv12[:, h:, :].reshape(n, h // 2, geo.w // 2, 2).transpose(0, 3, 1, 2).astype(np.float32)
        y = (self._resize(y, geo, False)[:, 0] - 16.0) * YUV_SCALE
        uv = self._resize(uv, geo, True) - 128.0
        u, v = uv[:, 0], uv[:, 1]
        rgb = np.stack([y + R_V * v, y + G_U * u + G_V * v, y + B_U * u], 1)
        if not self.cfg.rgb:
            rgb = rgb[:, ::-1]
        rgb = np.clip(rgb, 0.0, 255.0)
        out[:n] = self.pad.reshape(1, 3, 1, 1)
        mean = self.cfg.mean.reshape(1, 3, 1, 1)
        std = self.cfg.std.reshape(1, 3, 1, 1)
        out[:n, :, geo.py : geo.py + geo.nh, geo.px : geo.px + geo.nw] = (rgb * self.cfg.scale - mean) / std

    def postprocess(self, out0, out1, n, geo):
        """YOLO-seg outputs of n frames -> per frame (boxes xyxy frame px, scores, classes, mask areas)."""
        cfg = self.cfg
        out0 = out0[:n].astype(np.float32)
        out1 = None if out1 is None else out1[:n].astype(np.float32)
        p, ph, pw = (0, 0, 0) if out1 is None else out1.shape[1:]
        nc = out0.shape[1] - 4 - p
        results = []
        for b in range(n):
            sc = out0[b][4 : 4 + nc]
            cls, conf = sc.argmax(0), sc.max(0)
            idx = np.nonzero(conf >= cfg.conf)[0]
            cx, cy, bw, bh = (out0[b][k][idx] for k in range(4))
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
            keep = greedy_nms(boxes, conf[idx], cls[idx], cfg.iou, cfg.max_det)
            kb, ks, kc = boxes[keep], conf[idx][keep], cls[idx][keep]
            if out1 is None:  # detection model: no masks
                results.append(to_frame(kb, ks, kc, None, geo))
                continue
            coeffs = out0[b][4 + nc :, idx[keep]].T if keep.size else np.zeros((0, p), np.float32)
            logits = (coeffs.reshape(-1, p) @ out1[b].reshape(p, -1)).reshape(-1, ph, pw)
            inside = box_masks(kb, ph, pw, cfg, np)
            areas = ((logits > 0.0) & inside).sum((1, 2))  # sigmoid(x) > 0.5 <=> x > 0
            results.append(to_frame(kb, ks, kc, areas, geo))
        return results


def greedy_nms(boxes, scores, classes, iou, max_keep):
    """Class-aware greedy NMS (the plugin's src/parsers/nms.rs): descending score, ties by
    ascending index; a box is dropped when a kept box of its class overlaps it with IoU > iou."""
    order = np.lexsort((np.arange(scores.size), -scores))
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    for i in order:
        if len(keep) >= max_keep:
            break
        if keep:
            k = np.array(keep)
            same = classes[k] == classes[i]
            ix = (np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0])).clip(0)
            iy = (np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1])).clip(0)
            inter = ix * iy
            union = area[k] + area[i] - inter
            ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
            if np.any(same & (ious > iou)):
                continue
        keep.append(i)
    return np.array(keep, np.int64)


def box_masks(boxes, ph, pw, cfg, xp):
    """(k, ph, pw) bool: prototype pixels whose centre lies in the box (model pixels)."""
    u = (xp.arange(pw) + 0.5) * (cfg.width / pw)
    v = (xp.arange(ph) + 0.5) * (cfg.height / ph)
    inx = (u[None, :] >= boxes[:, 0:1]) & (u[None, :] < boxes[:, 2:3])
    iny = (v[None, :] >= boxes[:, 1:2]) & (v[None, :] < boxes[:, 3:4])
    return iny[:, :, None] & inx[:, None, :]


def to_frame(boxes, scores, classes, areas, geo):
    """Host arrays of one frame's kept detections -> its result (boxes in frame pixels)."""
    b = np.asarray(boxes, np.float64)
    fb = np.stack(
        [
            ((b[:, 0] - geo.px) / geo.s).clip(0, geo.w),
            ((b[:, 1] - geo.py) / geo.s).clip(0, geo.h),
            ((b[:, 2] - geo.px) / geo.s).clip(0, geo.w),
            ((b[:, 3] - geo.py) / geo.s).clip(0, geo.h),
        ],
        1,
    ) if b.size else np.zeros((0, 4))
    return {
        "boxes": fb.round(2).tolist(),
        "scores": np.asarray(scores, np.float64).round(4).tolist(),
        "classes": np.asarray(classes).astype(int).tolist(),
        "mask_areas": None if areas is None else np.asarray(areas).astype(int).tolist(),
    }


class TorchOps:
    """The same operations on CUDA tensors (the GPU peer)."""

    name = "torch"

    def __init__(self, cfg, in_dtype, torch):
        self.cfg, self.torch = cfg, torch
        self.F = torch.nn.functional
        self.dtype = torch.float16 if in_dtype == "float16" else torch.float32
        dev = torch.device("cuda")
        self.pad = torch.tensor((cfg.pad * cfg.scale - cfg.mean.reshape(3)) / cfg.std.reshape(3), dtype=torch.float32, device=dev)
        self.mean = torch.tensor(cfg.mean.reshape(1, 3, 1, 1), dtype=torch.float32, device=dev)
        self.std = torch.tensor(cfg.std.reshape(1, 3, 1, 1), dtype=torch.float32, device=dev)
        try:
            import torchvision.ops

            self.batched_nms = torchvision.ops.batched_nms
            self.nms_name = "torchvision.ops.batched_nms"
        except Exception:
            self.batched_nms = None
            self.nms_name = "torch greedy NMS (IoU matrix, fixed point)"

    def empty_nv12(self, n, w, h):
        return self.torch.empty((n, h * 3 // 2, w), dtype=self.torch.uint8, device="cuda")

    def empty_input(self, n):
        return self.torch.empty((n, 3, self.cfg.height, self.cfg.width), dtype=self.dtype, device="cuda")

    def copy_frame(self, planes, dst):
        y, uv = planes
        h = y.shape[0]
        dst[:h].copy_(y, non_blocking=True)
        dst[h:].copy_(uv.reshape(h // 2, -1), non_blocking=True)

    def gather(self, slots, dst):
        self.torch.stack(slots, out=dst[: len(slots)])

    def letterbox(self, nv12, geo, out):
        torch, F = self.torch, self.F
        n, h = nv12.shape[0], geo.h
        y = nv12[:, :h, :].unsqueeze(1).float()
        uv = nv12[:, h:, :].reshape(n, h // 2, geo.w // 2, 2).permute(0, 3, 1, 2).float()
        y = (F.interpolate(y, size=(geo.nh, geo.nw), mode="bilinear", align_corners=False)[:, 0] - 16.0) * YUV_SCALE
        uv = F.interpolate(uv, size=(geo.nh, geo.nw), mode="bilinear", align_corners=False) - 128.0
        u, v = uv[:, 0], uv[:, 1]
        rgb = torch.stack([y + R_V * v, y + G_U * u + G_V * v, y + B_U * u], 1)
        if not self.cfg.rgb:
            rgb = rgb.flip(1)
        rgb = rgb.clamp_(0.0, 255.0)
        out[:n].copy_(self.pad.view(1, 3, 1, 1).expand(n, 3, self.cfg.height, self.cfg.width))
        out[:n, :, geo.py : geo.py + geo.nh, geo.px : geo.px + geo.nw] = (rgb * self.cfg.scale - self.mean) / self.std

    def _nms(self, boxes, scores, groups):
        torch = self.torch
        if self.batched_nms is not None:
            return self.batched_nms(boxes, scores, groups, self.cfg.iou)
        order = torch.argsort(scores, descending=True, stable=True)
        b, g = boxes[order], groups[order]
        area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
        lt = torch.maximum(b[:, None, :2], b[None, :, :2])
        rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(2)
        iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-9)
        n = b.shape[0]
        earlier = torch.ones(n, n, dtype=torch.bool, device=b.device).tril(-1)
        sup = (iou > self.cfg.iou) & (g[:, None] == g[None, :]) & earlier
        keep = torch.ones(n, dtype=torch.bool, device=b.device)
        for _ in range(n):  # greedy NMS is the fixed point of "kept unless a kept earlier box suppresses it"
            nxt = ~(sup & keep[None, :]).any(1)
            if torch.equal(nxt, keep):
                break
            keep = nxt
        return order[keep]

    def postprocess(self, out0, out1, n, geo):
        torch, cfg = self.torch, self.cfg
        out0 = out0[:n].float()
        out1 = None if out1 is None else out1[:n].float()
        p, ph, pw = (0, 0, 0) if out1 is None else out1.shape[1:]
        nc = out0.shape[1] - 4 - p
        conf, cls = out0[:, 4 : 4 + nc].max(1)
        bi, ai = torch.nonzero(conf >= cfg.conf, as_tuple=True)
        xywh = out0[bi, :4, ai]
        boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        scores = conf[bi, ai]
        classes = cls[bi, ai]
        keep = self._nms(boxes, scores, bi * nc + classes)  # descending score
        kb = bi[keep]
        order = torch.sort(kb, stable=True).indices  # by frame, score order kept
        keep, kb = keep[order], kb[order]
        rank = torch.arange(kb.numel(), device=kb.device) - torch.searchsorted(kb, kb)
        sel = rank < cfg.max_det
        keep, kb, rank = keep[sel], kb[sel], rank[sel]
        kmax = int(rank.max().item()) + 1 if rank.numel() else 0
        areas = torch.zeros(0, dtype=torch.int64, device=out0.device)
        if kmax and out1 is not None:
            coeffs = torch.zeros((n, kmax, p), dtype=torch.float32, device=out0.device)
            coeffs[kb, rank] = out0[kb, 4 + nc :, ai[keep]]
            logits = torch.bmm(coeffs, out1.reshape(n, p, ph * pw)).reshape(n, kmax, ph, pw)
            inside = box_masks(boxes[keep], ph, pw, cfg, _TorchXp(torch, out0.device))
            masks = (logits[kb, rank] > 0.0) & inside  # stays on the GPU
            areas = masks.sum((1, 2))
        host = torch.cat(
            [boxes[keep], scores[keep, None], classes[keep, None].float(), kb[:, None].float(),
             (areas if out1 is not None else torch.zeros_like(kb))[:, None].float()], 1
        ).cpu().numpy()
        results = []
        for b in range(n):
            r = host[host[:, 6] == b]
            results.append(to_frame(r[:, :4], r[:, 4], r[:, 5], None if out1 is None else r[:, 7], geo))
        return results


class _TorchXp:
    """The two array functions box_masks needs, on a torch device."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device

    def arange(self, n):
        return self.torch.arange(n, device=self.device, dtype=self.torch.float32)


# ---------------------------------------------------------------------------------------
# Cameras: GPU decoding (PyNvVideoCodec) or CPU decoding for the dry run (GStreamer)


class NvDecCamera:
    """One looping file decoded by NVDEC (PyNvVideoCodec demuxer + decoder, low latency)."""

    def __init__(self, nvc, torch, path, cuda_ctx, stream):
        self.nvc, self.torch, self.path = nvc, torch, path
        self.dmx = nvc.CreateDemuxer(filename=path)
        self.w, self.h = self.dmx.Width(), self.dmx.Height()
        self.dec = nvc.CreateDecoder(
            gpuid=0,
            codec=self.dmx.GetNvCodecId(),
            cudacontext=cuda_ctx,
            cudastream=stream.cuda_stream,
            usedevicememory=True,
            latency=nvc.DisplayDecodeLatencyType.LOW,
        )
        self.packets = iter(self.dmx)
        self.pending = collections.deque()
        self.loops = 0
        self.pass_frames = 0

    def next_frame(self):
        """The next decoded frame as NV12 planes (Y (h, w), UV (h/2, w) uint8 CUDA tensors),
        views of the decoder's surface: copy them before the next call."""
        while not self.pending:
            pkt = next(self.packets, None)
            if pkt is None:  # end of file: loop
                if self.pass_frames == 0:
                    raise PeerError(f"{self.path}: a whole pass of the file decoded no frame")
                self.pass_frames = 0
                self.loops += 1
                self.dmx = self.nvc.CreateDemuxer(filename=self.path)
                self.packets = iter(self.dmx)
                continue
            pkt.decode_flag = self.nvc.VideoPacketFlag.ENDOFPICTURE
            self.pending.extend(self.dec.Decode(pkt))
        self.pass_frames += 1
        return self._planes(self.pending.popleft())

    def _planes(self, frame):
        """DLPack (one (3h/2, w) tensor, the documented way), else the frame's per-plane
        CUDA array interface views (frame.cuda())."""
        torch, h, w = self.torch, self.h, self.w
        try:
            t = torch.from_dlpack(frame)
            if t.dim() == 3 and t.shape[-1] == 1:
                t = t[..., 0]
            if tuple(t.shape) == (h * 3 // 2, w):
                return t[:h], t[h:]
            seen = f"DLPack tensor of shape {tuple(t.shape)}"
        except Exception as e:
            seen = f"DLPack failed ({type(e).__name__}: {e})"
        try:
            views = [torch.as_tensor(v, device="cuda") for v in frame.cuda()]
            if len(views) == 2 and views[0].numel() == h * w and views[1].numel() == h * w // 2:
                return views[0].reshape(h, w), views[1].reshape(h // 2, w)
            seen += f"; frame.cuda() planes of shapes {[tuple(v.shape) for v in views]}"
        except Exception as e:
            seen += f"; frame.cuda() failed ({type(e).__name__}: {e})"
        raise PeerError(f"{self.path}: no NV12 {w}x{h} surface from the decoder: {seen}")


def probe_size(path):
    """Width and height of a file's decoded video (the caps gst-launch-1.0 -v prints)."""
    r = subprocess.run(
        ["gst-launch-1.0", "-v", "filesrc", f"location={path}", "!", "qtdemux", "!", "h264parse", "!", "avdec_h264",
         "!", "fakesink", "num-buffers=1"],
        capture_output=True,
        text=True,
    )
    m = re.search(r"video/x-raw.*?width=\(int\)(\d+).*?height=\(int\)(\d+)", r.stdout)
    if r.returncode != 0 or not m:
        raise PeerError(f"{path}: gst-launch-1.0 decoded no H.264 video ({(r.stderr or r.stdout).strip()[-200:]})")
    return int(m.group(1)), int(m.group(2))


class GstCamera:
    """One looping file decoded on the CPU (--dry-run): gst-launch-1.0 writes raw NV12 frames
    to a pipe."""

    def __init__(self, path):
        self.path = path
        self.w, self.h = probe_size(path)
        if self.w % 4 or self.h % 2:
            raise PeerError(f"{path}: {self.w}x{self.h}: the dry run needs a width divisible by 4 and an even height")
        self.size = self.w * self.h * 3 // 2
        self.proc = None
        self.loops = 0

    def _start(self):
        self.proc = subprocess.Popen(
            ["gst-launch-1.0", "-q", "filesrc", f"location={self.path}", "!", "qtdemux", "!", "h264parse", "!",
             "avdec_h264", "!", "videoconvert", "!", "video/x-raw,format=NV12", "!", "fdsink", "fd=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def next_frame(self):
        for _ in range(2):
            if self.proc is None:
                self._start()
            data = self.proc.stdout.read(self.size)
            if len(data) == self.size:
                f = np.frombuffer(data, np.uint8).reshape(self.h * 3 // 2, self.w)
                return f[: self.h], f[self.h :]
            self.close()
            self.loops += 1
        raise PeerError(f"{self.path}: gst-launch-1.0 decoded no frame")

    def close(self):
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------------------------------
# The pipeline: decode workers -> batcher -> inference sessions


class Frame:
    __slots__ = ("cam", "index", "slot", "t_out", "event")

    def __init__(self, cam, index, slot, t_out, event):
        self.cam, self.index, self.slot, self.t_out, self.event = cam, index, slot, t_out, event


class Peer:
    def __init__(self, a, cfg, ops, make_session, cameras, gpu, worker_streams=None):
        self.a, self.cfg, self.ops, self.gpu = a, cfg, ops, gpu
        self.worker_streams = worker_streams
        self.cams = cameras
        self.n = len(cameras)
        self.geo = {}
        for c in cameras:
            self.geo.setdefault((c.w, c.h), Letterbox(c.w, c.h, cfg))
        if len(self.geo) != 1:
            raise PeerError(f"cameras of different sizes {sorted(self.geo)}: the peer batches frames of one size")
        (self.w, self.h), self.letterbox = next(iter(self.geo.items()))
        pool = a.pool or (self.n + 2 * a.batch_size * (a.sessions + 1))
        self.slots = ops.empty_nv12(pool, self.w, self.h)
        self.free = queue.Queue()
        for i in range(pool):
            self.free.put(i)
        self.ready = queue.Queue()
        self.batches = queue.Queue(maxsize=2 * a.sessions)
        self.stop = threading.Event()
        self.errors = []
        self.lock = threading.Lock()
        self.records = []  # (cam, index, t_out, t_result, detections)
        self.results = {} if a.results_out else None
        self.sessions = [make_session(k) for k in range(a.sessions)]
        self.pool_size = pool

    def fail(self, e):
        with self.lock:
            self.errors.append(e)
        self.stop.set()

    # A decode worker: the cameras i with i % threads == k, each frame when it is due.
    def decode_worker(self, k, t0):
        try:
            stream = self.worker_streams[k] if self.gpu else None
            mine = list(range(k, self.n, self.a.decode_threads))
            period = 1.0 / self.a.fps
            # Camera i's frame k is due at t0 + (k + i / n) / fps; unpaced, the same order
            # (round robin over the cameras) without waiting.
            due = [(t0 + (i / self.n) * period, i, 0) for i in mine]
            heapq.heapify(due)
            while due and not self.stop.is_set():
                t_due, i, idx = heapq.heappop(due)
                if self.a.frames and idx >= self.a.frames:
                    continue
                wait = t_due - time.monotonic() if self.a.pace == "realtime" else 0.0
                if wait > 0 and self.stop.wait(wait):
                    break
                with self.gpu.stream_ctx(stream) if self.gpu else _nullctx():
                    frame = self.cams[i].next_frame()
                    t_out = time.monotonic()
                    try:
                        slot = self.free.get(timeout=self.a.pool_timeout_s)
                    except queue.Empty:
                        raise PeerError(f"no free NV12 slot within {self.a.pool_timeout_s} s (pool of {self.pool_size}): inference stalled")
                    self.ops.copy_frame(frame, self.slots[slot])
                    event = self.gpu.record(stream) if self.gpu else None
                self.ready.put(Frame(i, idx, slot, t_out, event))
                heapq.heappush(due, (t0 + (idx + 1 + i / self.n) * period, i, idx + 1))
        except Exception as e:  # one worker's failure stops the run with its sentence
            self.fail(e)

    # The batcher: B frames, at most one per camera, or what came within the push timeout;
    # runs until the end marker (None) and sends every frame it got.
    def batcher(self):
        timeout = self.a.push_timeout_ms / 1000.0
        carry = collections.deque()
        done = False
        try:
            while not done or carry:
                batch, cams, t_first = [], set(), None
                deferred = collections.deque()
                while len(batch) < self.a.batch_size:
                    if carry:
                        f = carry.popleft()
                    elif done:
                        break
                    else:
                        left = 0.5 if t_first is None else t_first + timeout - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            f = self.ready.get(timeout=left)
                        except queue.Empty:
                            if t_first is None:
                                continue
                            break
                        if f is None:
                            done = True
                            break
                    if f.cam in cams:
                        deferred.append(f)
                        continue
                    batch.append(f)
                    cams.add(f.cam)
                    if t_first is None:
                        t_first = time.monotonic()
                carry.extendleft(reversed(deferred))
                if batch:
                    self.batches.put(batch)
        except Exception as e:
            self.fail(e)

    def session_worker(self, k):
        sess = self.sessions[k]
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            if self.errors:  # after a failure: give the slots back, run nothing
                for f in batch:
                    self.free.put(f.slot)
                continue
            try:
                with self.gpu.stream_ctx(sess.stream) if self.gpu else _nullctx():
                    if self.gpu:
                        for f in batch:
                            sess.stream.wait_event(f.event)
                    n = len(batch)
                    self.ops.gather([self.slots[f.slot] for f in batch], sess.nv12)
                    self.ops.letterbox(sess.nv12[:n], self.letterbox, sess.input)
                    out0, out1 = sess.run(n)  # waits for the inference (and the copies before it)
                    for f in batch:
                        self.free.put(f.slot)
                    res = self.ops.postprocess(out0, out1, n, self.letterbox)
                t = time.monotonic()
                with self.lock:
                    for f, r in zip(batch, res):
                        self.records.append((f.cam, f.index, f.t_out, t, len(r["scores"])))
                        if self.results is not None:
                            self.results[(f.cam, f.index)] = r
            except Exception as e:
                self.fail(e)

    def run(self, seconds):
        t0 = time.monotonic() + 0.2
        workers = [threading.Thread(target=self.decode_worker, args=(k, t0), daemon=True) for k in range(min(self.a.decode_threads, self.n))]
        bat = threading.Thread(target=self.batcher, daemon=True)
        sessions = [threading.Thread(target=self.session_worker, args=(k,), daemon=True) for k in range(len(self.sessions))]
        for t in sessions + [bat] + workers:
            t.start()
        deadline = t0 + seconds if seconds else None
        self.cpu_at_start = None
        while not self.stop.is_set():
            now = time.monotonic()
            if self.cpu_at_start is None and now >= t0 + self.a.warmup_s:
                self.cpu_at_start = cpu_time_s()
            if deadline and now >= deadline:
                break
            if not any(w.is_alive() for w in workers):
                break
            time.sleep(0.02)
        self.stop.set()
        self.t_stop = time.monotonic()
        self.cpu_at_stop = cpu_time_s()
        for w in workers:
            w.join(30)
        self.ready.put(None)
        bat.join(30)
        for _ in sessions:
            self.batches.put(None)
        for s in sessions:
            s.join(60)
        if self.errors:
            e = self.errors[0]
            raise e if isinstance(e, PeerError) else PeerError(f"{type(e).__name__}: {e}")
        return t0


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---------------------------------------------------------------------------------------
# Inference sessions


def output_shapes(cfg, batch):
    """The (boxes, protos) output shapes at `batch` rows: from the model's declared shapes when
    only the batch is symbolic, else from one CPU run of a single zero frame."""
    s = ort.InferenceSession(cfg.onnx, providers=["CPUExecutionProvider"])
    decl = {o.name: o.shape for o in s.get_outputs()}
    names = cfg.output_names
    if any(n not in decl for n in names):
        raise PeerError(f"{cfg.onnx}: outputs {sorted(decl)}, the config names {', '.join(names)}")
    if all(all(isinstance(d, int) for d in decl[n][1:]) for n in names):
        return [(batch, *decl[n][1:]) for n in names]
    it = s.get_inputs()[0]
    dtype = np.float16 if "float16" in it.type else np.float32
    outs = s.run(list(names), {it.name: np.zeros((1, 3, cfg.height, cfg.width), dtype)})
    return [(batch, *o.shape[1:]) for o in outs]


def input_type(path, providers):
    s = ort.InferenceSession(path, providers=providers)
    t = s.get_inputs()[0].type
    return "float16" if "float16" in t else "float32"


class CpuSession:
    """ONNX Runtime, CPU provider, on host arrays (--dry-run)."""

    def __init__(self, cfg, ops, batch, w, h, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(cfg.onnx, so, providers=["CPUExecutionProvider"])
        self.cfg = cfg
        self.stream = None
        self.nv12 = ops.empty_nv12(batch, w, h)
        self.input = ops.empty_input(batch)

    def run(self, n):
        outs = self.sess.run(self.cfg.output_names, {self.cfg.input_name: self.input[:n]})
        return outs[0], (outs[1] if len(outs) > 1 else None)


class CudaSession:
    """ONNX Runtime, CUDA provider on its own torch stream, I/O binding on torch tensors."""

    ORT_TYPES = {"float16": np.float16, "float32": np.float32}

    def __init__(self, cfg, ops, torch, batch, w, h, a):
        self.torch, self.cfg = torch, cfg
        self.stream = torch.cuda.Stream()
        opts = {
            "device_id": 0,
            "user_compute_stream": str(self.stream.cuda_stream),
            "cudnn_conv_algo_search": a.cudnn_conv_algo_search.upper(),
            "prefer_nhwc": "1" if a.prefer_nhwc else "0",
        }
        if a.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        so = ort.SessionOptions()
        self.sess = ort.InferenceSession(cfg.onnx, so, providers=[("CUDAExecutionProvider", opts), "CPUExecutionProvider"])
        if self.sess.get_providers()[0] != "CUDAExecutionProvider":
            raise PeerError(f"ONNX Runtime {ort.__version__} did not take the CUDA provider: {self.sess.get_providers()}")
        self.batch, self.full = batch, a.cuda_graph
        self.nv12 = ops.empty_nv12(batch, w, h)
        self.input = ops.empty_input(batch)
        self.input.zero_()
        self.itype = self.ORT_TYPES["float16" if self.input.dtype == torch.float16 else "float32"]
        # Output buffers: torch tensors of the full batch, bound once per row count (with
        # CUDA graphs the first run captures their addresses).
        shapes = output_shapes(cfg, batch)
        tt = {"tensor(float16)": torch.float16, "tensor(float)": torch.float32}
        outs = {o.name: o.type for o in self.sess.get_outputs()}
        self.outs = []
        for name, shape in zip(cfg.output_names, shapes):
            if outs.get(name) not in tt:
                raise PeerError(f"{cfg.onnx}: output {name} is {outs.get(name)}, the peer reads float or float16 outputs")
            self.outs.append(torch.empty(shape, dtype=tt[outs[name]], device="cuda"))
        self.bindings = {}
        # Warm-up of every row count a batch can have (cuDNN's algorithm search runs per
        # shape); with CUDA graphs every run has the full batch, and the first one captures.
        t = time.monotonic()
        for rows in [batch] if self.full else range(1, batch + 1):
            self.run(rows)
        print(f"gpu_peer: session ready, warm-up of {1 if self.full else batch} batch shape(s) took {time.monotonic() - t:.1f} s", file=sys.stderr)

    def _bind_input(self, b, n):
        b.bind_input(self.cfg.input_name, "cuda", 0, self.itype, [n, 3, self.cfg.height, self.cfg.width], self.input.data_ptr())

    def _binding(self, n):
        rows = self.batch if self.full else n  # CUDA graphs replay one shape: always the full batch
        if rows not in self.bindings:
            b = self.sess.io_binding()
            self._bind_input(b, rows)
            for name, t in zip(self.cfg.output_names, self.outs):
                b.bind_output(name, "cuda", 0, np.float16 if t.dtype == self.torch.float16 else np.float32, [rows] + list(t.shape[1:]), t.data_ptr())
            self.bindings[rows] = b
        return self.bindings[rows]

    def run(self, n):
        # The letterbox ran on this stream; ONNX Runtime runs on it too (user_compute_stream)
        # and synchronises it at the end of the run.
        self.sess.run_with_iobinding(self._binding(n))
        return self.outs[0], (self.outs[1] if len(self.outs) > 1 else None)


# ---------------------------------------------------------------------------------------
# GPU glue


class Gpu:
    def __init__(self, torch):
        self.torch = torch

    def new_stream(self):
        return self.torch.cuda.Stream()

    def stream_ctx(self, s):
        return self.torch.cuda.stream(s)

    def record(self, s):
        e = self.torch.cuda.Event()
        e.record(s)
        return e


def current_cuda_context():
    """The CUDA context torch made current (its primary context), for the decoders."""
    lib = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    rc = lib.cuCtxGetCurrent(ctypes.byref(ctx))
    if rc != 0 or not ctx.value:
        raise PeerError(f"cuCtxGetCurrent returned {rc}: no current CUDA context after torch.cuda.init()")
    return ctx.value


def _first_line(e):
    text = str(e).strip()
    libs = re.findall(r"lib[\w.+-]+\.so[\w.]*", text)
    line = text.splitlines()[0] if text else type(e).__name__
    return f"{type(e).__name__}: {line}" + (f" (libraries named: {', '.join(sorted(set(libs)))})" if libs else "")


def import_nvc():
    """PyNvVideoCodec, and how it was loaded. Its package __init__ first asks the NVENC
    library (libnvidia-encode.so.1) for the driver's version; where the machine has NVDEC but
    no NVENC library, the decoder module (PyNvVideoCodec_130, or $TRTV_PEER_NVC_MODULE) is
    loaded directly: decoding needs libcuda and libnvcuvid only."""
    try:
        import PyNvVideoCodec as nvc

        return nvc, "package import"
    except Exception as e:
        first = _first_line(e)
    import importlib.util

    spec = importlib.util.find_spec("PyNvVideoCodec")
    if spec is None or not spec.submodule_search_locations:
        raise PeerError(f"cannot import PyNvVideoCodec ({first}); it is not installed on sys.path")
    pkg = list(spec.submodule_search_locations)[0]
    suffix = os.environ.get("TRTV_PEER_NVC_MODULE", "_130")
    tag = f"{sys.version_info.major}{sys.version_info.minor}"
    path = os.path.join(pkg, f"PyNvVideoCodec{suffix}.cpython-{tag}-{platform.machine()}-linux-gnu.so")
    if "libnvidia-encode" not in first or not os.path.exists(path):
        raise PeerError(f"cannot import PyNvVideoCodec: {first}")
    try:
        mspec = importlib.util.spec_from_file_location("_PyNvVideoCodec", path)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
    except Exception as e2:
        raise PeerError(f"cannot import PyNvVideoCodec ({first}), nor load its decoder module {path}: {_first_line(e2)}")
    return mod, f"decoder module {os.path.basename(path)} loaded directly: the package import failed ({first})"


def import_gpu_stack():
    try:
        import torch
    except Exception as e:
        raise PeerError(f"cannot import torch ({_first_line(e)}): the GPU peer needs PyTorch with CUDA")
    if not torch.cuda.is_available():
        raise PeerError("torch.cuda.is_available() is False: no GPU (or no driver) visible to PyTorch")
    nvc, how = import_nvc()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise PeerError(f"ONNX Runtime {ort.__version__} from {os.path.dirname(ort.__file__)} has no CUDA provider: {ort.get_available_providers()}")
    return torch, nvc, how


# ---------------------------------------------------------------------------------------
# The record


def summarize(a, peer, t0, t_end, cpu_s, rss, vram, vram_base, sessions_desc, nms_name, versions):
    start = t0 + a.warmup_s
    recs = [r for r in peer.records if start <= r[2] < t_end]
    if not recs:
        raise PeerError(f"no frame measured after the {a.warmup_s} s warm-up ({len(peer.records)} frames in all)")
    wall = t_end - start
    n = peer.n
    per_cam = [0] * n
    for r in recs:
        per_cam[r[0]] += 1
    lat = [(r[3] - r[2]) * 1e3 for r in recs]
    fps = len(recs) / wall
    windows = []
    w0 = start
    while w0 + WINDOW_S <= t_end + 1e-6:
        wr = [r for r in recs if w0 <= r[2] < w0 + WINDOW_S]
        counts = [0] * n
        for r in wr:
            counts[r[0]] += 1
        wl = [(r[3] - r[2]) * 1e3 for r in wr]
        windows.append(
            {
                "start_s": round(w0 - start, 1),
                "fps_per_camera_min": round(min(counts) / WINDOW_S, 2),
                "fps_per_camera_mean": round(sum(counts) / n / WINDOW_S, 2),
                "latency_ms_p50": round(percentile(wl, 50), 1) if wl else None,
                "latency_ms_p99": round(percentile(wl, 99), 1) if wl else None,
            }
        )
        w0 += WINDOW_S
    each = [c / wall for c in per_cam]
    fmin = min(each)
    p99 = percentile(lat, 99)
    ok = fmin >= REALTIME_FPS and p99 <= REALTIME_P99_MS
    drift = slope([w["start_s"] / 60 for w in windows if w["latency_ms_p99"] is not None], [w["latency_ms_p99"] for w in windows if w["latency_ms_p99"] is not None])
    commit, dirty = git_commit()
    dets = sum(r[4] for r in recs)
    return {
        "device": a.device_name or (peer.gpu and versions.get("gpu_name")) or f"cpu: {cpu_model()} x{os.cpu_count()}",
        "date": os.environ.get("TRTV_DATE") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "commit": commit,
        "commit_dirty": dirty,
        "what": a.what or f"peer-cameras-{a.model_name}-{a.precision}",
        "pipeline": f"python3 {' '.join(sys.argv)} :: "
        + ("gst-launch-1.0 avdec_h264 (CPU) NV12 pipes" if a.dry_run else "PyNvVideoCodec NVDEC (low latency, device NV12) -> DLPack torch")
        + f", {a.decode_threads} decode threads, paced {a.pace} at {a.fps} fps -> NV12 slot pool -> batcher (B={a.batch_size}, "
        f"push timeout {a.push_timeout_ms} ms, one frame per camera per batch) -> {a.sessions} session thread(s): batched NV12->RGB BT.709 "
        f"+ bilinear letterbox + normalise ({peer.ops.name}) -> {sessions_desc} -> {peer.cfg.parser} decode + {nms_name}" + (" + masks of kept detections" if peer.cfg.parser == "yolo-seg" else "") + f" "
        f"({peer.ops.name}), detections to the host per batch",
        "cameras": n,
        "width": peer.w,
        "height": peer.h,
        "batch_size": a.batch_size,
        "sessions": a.sessions,
        "model": a.model,
        "onnx": peer.cfg.onnx,
        "precision": a.precision,
        "input_dtype": a.in_dtype,
        "backend": "onnxruntime-cpu" if a.dry_run else "onnxruntime-cuda",
        "frames": len(recs),
        "fps_total": round(fps, 2),
        "fps_per_camera": round(fps / n, 2),
        "fps_per_camera_min": round(fmin, 2),
        "fps_per_camera_each": [round(x, 2) for x in each],
        "latency_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p95": round(percentile(lat, 95), 2),
            "p99": round(p99, 2),
            "mean": round(sum(lat) / len(lat), 2),
        },
        "latency_from_to": "frame out of the decoder (host clock after Decode / the pipe read) -> its detections on the host",
        "latency_drift_ms_per_min": round(drift, 2),
        "per_camera": {"windows": windows},
        "cameras_realtime": n if ok else 0,
        "realtime_rule": f"fps_per_camera_min >= {REALTIME_FPS} and latency_ms.p99 <= {REALTIME_P99_MS}",
        "duration_s": round(wall, 2),
        "warmup_s": a.warmup_s,
        "pace": a.pace,
        "cpu_cores": round(cpu_s / wall, 3),
        "rss_mib": mem_stats(rss, start - t0, t_end - t0) if rss else None,
        "vram_mib": mem_stats(vram, start - t0, t_end - t0, vram_base) if vram else None,
        "h2d_bytes_per_frame": None,
        "d2h_bytes_per_frame": None,
        "bytes_method": None if a.dry_run else "not measured; by construction no frame or tensor is copied to or from "
        "the host (decoder output in device memory, I/O binding on torch tensors), and per batch the detections "
        "(8 floats each) and the nonzero count of the candidates come to the host",
        "gpu_sampling": peer.gpu and versions.get("gpu_sampling"),
        "reference": None,
        "ratio": None,
        "detections_per_frame": round(dets / len(recs), 3),
        "nv12_pool": peer.pool_size,
        "push_timeout_ms": a.push_timeout_ms,
        "decode_threads": a.decode_threads,
        "ort_cuda_options": None if a.dry_run else {"cuda_graph": a.cuda_graph, "prefer_nhwc": a.prefer_nhwc, "cudnn_conv_algo_search": a.cudnn_conv_algo_search},
        "nms": nms_name,
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        **{k: v for k, v in versions.items() if k not in ("gpu_name", "gpu_sampling")},
    }


# ---------------------------------------------------------------------------------------


def find_max(a):
    """Runs each camera count of --find-max in a fresh process, ascending, until one is not
    kept in real time; writes the record of the largest count kept, with every step."""
    counts = sorted({int(x) for x in a.find_max.split(",") if x.strip()})
    steps, best = [], None
    out_dir = os.path.dirname(os.path.abspath(a.out)) if a.out else os.getcwd()
    argv = [x for x in sys.argv[1:]]
    i = 0
    while i < len(argv):  # drop --find-max, --cameras and --out from the child's arguments
        if argv[i] in ("--find-max", "--cameras", "--out"):
            del argv[i : i + 2]
        elif argv[i].startswith(("--find-max=", "--cameras=", "--out=")):
            del argv[i]
        else:
            i += 1
    for n in counts:
        out = os.path.join(out_dir, f".peer-step-{n}cam.json")
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--cameras", str(n), "--out", out]
        print(f"find-max: {n} cameras", file=sys.stderr)
        r = subprocess.run(cmd)
        if r.returncode != 0 or not os.path.exists(out):
            steps.append({"cameras": n, "error": f"exit {r.returncode}"})
            break
        rec = json.load(open(out))
        os.remove(out)
        steps.append({"cameras": n, "fps_per_camera_min": rec["fps_per_camera_min"], "latency_ms_p99": rec["latency_ms"]["p99"], "realtime": rec["cameras_realtime"] > 0})
        if rec["cameras_realtime"] == 0:
            if best is None:
                best = rec
            break
        best = rec
    if best is None:
        raise PeerError(f"find-max: no step finished: {steps}")
    best["find_max"] = steps
    best["cameras_realtime"] = max([s["cameras"] for s in steps if s.get("realtime")], default=0)
    return best


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", default="/tmp/trtv-camera-content", help="directory with cam0.mp4 .. cam<N-1>.mp4")
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--model", default="engines/yolo11n-seg.toml", help="model config (engines/*.toml, parser yolo-seg or yolo)")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="fp16: the config's ONNX file with -fp16 before .onnx")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--sessions", type=int, default=1, help="ONNX Runtime sessions, each on its own CUDA stream and thread")
    ap.add_argument("--decode-threads", type=int, default=8, help="threads that decode (each serves cameras i with i %% threads == k)")
    ap.add_argument("--push-timeout-ms", type=float, default=40.0, help="a partial batch leaves when its first frame waited this long")
    ap.add_argument("--pace", choices=["realtime", "none"], default="realtime")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds in all (warm-up included); 0 with --frames: until done")
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--frames", type=int, default=0, help="frames per camera, then stop (0: no limit)")
    ap.add_argument("--pool", type=int, default=0, help="NV12 slots (default cameras + 2 x batch x (sessions + 1))")
    ap.add_argument("--pool-timeout-s", type=float, default=10.0)
    ap.add_argument("--cuda-graph", action="store_true", help="ONNX Runtime CUDA graphs (every batch bound at the full batch size)")
    ap.add_argument("--prefer-nhwc", action="store_true")
    ap.add_argument("--cudnn-conv-algo-search", choices=["exhaustive", "heuristic", "default"], default="exhaustive")
    ap.add_argument("--dry-run", action="store_true", help="CPU: GStreamer decoding, numpy operations, ONNX Runtime CPU provider")
    ap.add_argument("--cpu-threads", type=int, default=1, help="ONNX Runtime intra-op threads per session (--dry-run)")
    ap.add_argument("--find-max", help="comma-separated camera counts to step through (each in its own process)")
    ap.add_argument("--results-out", help="write every frame's detections here (JSON, per camera and frame index)")
    ap.add_argument("--what")
    ap.add_argument("--device-name")
    ap.add_argument("--out", help="record destination (default stdout)")
    a = ap.parse_args(argv)
    for k in ("cameras", "batch_size", "sessions", "decode_threads"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be at least 1")
    if a.fps <= 0 or a.push_timeout_ms <= 0:
        ap.error("--fps and --push-timeout-ms must be positive")
    if not a.duration and not a.frames:
        ap.error("give --duration or --frames")
    return a


def run_once(a):
    if ort is None:
        raise PeerError(f"cannot import onnxruntime ({ORT_IMPORT_ERROR}): on the GPU machine source .ort/ort5/ort-gpu-env.sh unpack .ort/ort5")
    cfg = ModelConfig(a.model, ("yolo-seg", "yolo"))
    a.model_name = os.path.splitext(os.path.basename(a.model))[0]
    if a.precision == "fp16":
        cfg.onnx = re.sub(r"\.onnx$", "-fp16.onnx", cfg.onnx)
    if not os.path.exists(cfg.onnx):
        raise PeerError(f"model file {cfg.onnx} not found (the YOLO11 models are made by engines/yolo11.py)")
    paths = [os.path.join(a.files, f"cam{i}.mp4") for i in range(a.cameras)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise PeerError(f"{len(missing)} camera file(s) missing, first {missing[0]} (scripts/make-camera-content.sh makes them)")
    versions = {}
    gpu = nvml = None
    if a.dry_run:
        a.in_dtype = input_type(cfg.onnx, ["CPUExecutionProvider"])
        ops = NumpyOps(cfg, a.in_dtype)
        cams = [GstCamera(p) for p in paths]
        w, h = cams[0].w, cams[0].h

        def make_session(k):
            return CpuSession(cfg, ops, a.batch_size, w, h, a.cpu_threads)

        sessions_desc = f"onnxruntime CPUExecutionProvider ({a.cpu_threads} intra-op thread(s) per session)"
    else:
        torch, nvc, nvc_how = import_gpu_stack()
        torch.cuda.init()
        torch.empty(1, device="cuda")  # makes the primary context current
        a.in_dtype = input_type(cfg.onnx, ["CPUExecutionProvider"])
        ops = TorchOps(cfg, a.in_dtype, torch)
        gpu = Gpu(torch)
        ctx = current_cuda_context()
        cams = []
        streams = [torch.cuda.Stream() for _ in range(a.decode_threads)]
        for i, p in enumerate(paths):
            try:
                cams.append(NvDecCamera(nvc, torch, p, ctx, streams[i % a.decode_threads]))
            except Exception as e:
                raise PeerError(f"{p}: PyNvVideoCodec could not open it: {e}")
        w, h = cams[0].w, cams[0].h

        def make_session(k):
            return CudaSession(cfg, ops, torch, a.batch_size, w, h, a)

        sessions_desc = f"onnxruntime CUDAExecutionProvider, I/O binding on torch tensors, user_compute_stream per session"
        nvml = Nvml()
        versions.update(
            {
                "torch": torch.__version__,
                "pynvvideocodec": getattr(nvc, "__version__", None),
                "pynvvideocodec_loaded": nvc_how,
                "gpu_name": nvml.name() or torch.cuda.get_device_name(0),
                "gpu_sampling": nvml.method,
            }
        )
    # Decode worker k serves the cameras i with i % threads == k, on the stream their decoders use.
    peer = Peer(a, cfg, ops, make_session, cams, gpu, streams if gpu is not None else None)
    nms_name = getattr(ops, "nms_name", "numpy greedy NMS (class-aware)")
    t_base = time.monotonic()
    rss, vram, vram_base = start_samplers(nvml, t_base, 0.2)
    t0 = peer.run(a.duration)
    t_end = peer.t_stop
    if peer.cpu_at_start is None:
        raise PeerError(f"the run ended within the {a.warmup_s} s warm-up")
    cpu_s = peer.cpu_at_stop - peer.cpu_at_start
    rss_s = rss.finish()
    vram_s = vram.finish() if vram else []
    for c in cams:
        if hasattr(c, "close"):
            c.close()
    # Sample times relative to t_base; summarize works relative to t0.
    shift = t0 - t_base
    rss_s = [(t - shift, v) for t, v in rss_s]
    vram_s = [(t - shift, v) for t, v in vram_s]
    rec = summarize(a, peer, t0, t_end, cpu_s, rss_s, vram_s, vram_base, sessions_desc, nms_name, versions)
    if a.results_out:
        out = {f"{c}:{i}": r for (c, i), r in sorted(peer.results.items())}
        with open(a.results_out, "w") as f:
            json.dump(out, f)
    return rec


def main(argv=None):
    a = parse_args(argv)
    try:
        rec = find_max(a) if a.find_max else run_once(a)
    except PeerError as e:
        print(f"gpu_peer: {e}", file=sys.stderr)
        return 1
    write_record(rec, a.out)
    lt = rec["latency_ms"]
    print(
        f"{rec['what']}: {rec['cameras']} cameras, {rec['fps_total']} frames/s ({rec['fps_per_camera']}/camera, slowest "
        f"{rec['fps_per_camera_min']}), latency p50/p99 {lt['p50']}/{lt['p99']} ms, {rec['cpu_cores']} cores, "
        f"real time: {'yes' if rec['cameras_realtime'] else 'no'} (cameras_realtime {rec['cameras_realtime']})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
