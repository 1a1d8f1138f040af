#!/usr/bin/env python3
"""Build the YOLO11n and YOLO11n-seg networks as ONNX models with seeded random weights.

The architectures are those of ultralytics' ``yolo11.yaml`` and ``yolo11-seg.yaml`` at scale
``n`` (depth 0.50, width 0.25, max_channels 1024), written layer by layer with the ``onnx``
helper API (no torch, no ultralytics). The weights are **random** (seeded, so every run writes
the same file): the models have the real layout, shapes, parameter count and compute cost of
YOLO11n / YOLO11n-seg, but their detections are meaningless. They exist to benchmark the
pipeline with a real network; the model metadata says so (``weights = random``).

Usage:
    python3 engines/yolo11.py --out engines/models            # write the models
    python3 engines/yolo11.py --out engines/models --check    # run them with ONNX Runtime

Models (input ``images`` [batch, 3, 640, 640] float32 RGB 0..1, dynamic batch, opset 17):
    yolo11n.onnx       output0 [batch, 84, 8400]   4 box rows (cx, cy, w, h in model
                                                   pixels) + 80 class sigmoids
    yolo11n-seg.onnx   output0 [batch, 116, 8400]  + 32 mask coefficients
                       output1 [batch, 32, 160, 160] mask prototypes
    yolo11n-fp16.onnx, yolo11n-seg-fp16.onnx
                       the same with FP16 weights and compute, FP32 inputs/outputs
                       (engines/convert_fp16.py; for strongly typed TensorRT builds)

What is exported (same as ``yolo export format=onnx`` of ultralytics, eval mode):
  * Conv = Conv2d(bias=False) + BatchNorm2d(eps=1e-3) + SiLU; the BatchNorm is folded into
    the convolution (weight * gamma / sqrt(var + eps), bias = beta - mean * gamma /
    sqrt(var + eps)), SiLU is Sigmoid + Mul as the opset-17 export writes it.
  * C3k2, C3k, Bottleneck, SPPF, C2PSA (PSABlock with multi-head attention and depth-wise
    positional conv), nearest Upsample, Concat; Detect head with separate box (DFL, reg_max
    16) and class (depth-wise, non-legacy) branches; anchors/strides are constants for
    640x640; boxes are decoded to xywh in model pixels; classes pass a sigmoid.
  * Segment head: Proto (3x3 conv, 2x2 ConvTranspose, 3x3 conv, 1x1 conv to 32 channels)
    on P3 and a per-level mask-coefficient branch (cv4).

Weights: convolution weights and biases as PyTorch initialises them (uniform in
+-1/sqrt(fan_in)), BatchNorm statistics drawn around identity and folded, Detect biases as
ultralytics' ``bias_init`` (box 1.0, class log(5 / nc / (640 / stride)^2), so class scores
start near 0 like an untrained ultralytics model), DFL conv = arange(16) (fixed, as upstream).

Counts written into ``metadata_props`` (batch 1, 640x640):
  * ``params``: every learnable value of the exported graph (folded conv weights and biases,
    ConvTranspose, plain head convs) plus the 16 DFL weights, i.e. ultralytics' *fused*
    count; ``params_unfused`` adds back one value per BatchNorm channel (unfused Conv has no
    bias but gamma and beta), which is the count ``model.info()`` prints before fusing.
  * ``gflops_conv``: 2 x multiply-accumulates of Conv and ConvTranspose, the rule of
    ultralytics' thop-based count (which ignores activations, pooling, resize, elementwise
    ops and the attention MatMuls); ``gflops``: the same plus 2 x MACs of MatMul/Gemm.
  * ``gflops_thop_fused`` / ``gflops_thop_unfused``: what ultralytics' thop-based count
    reports for the fused / unfused model: conv MACs as thop counts them (ConvTranspose2d
    counted per output element, i.e. stride^2 = 4 times its real MACs) times 2; the unfused
    count adds 4 ops per BatchNorm output element (times 2). These are the numbers of
    ``model.info()`` summaries.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

OPSET = 17
IR_VERSION = 8
IMGSZ = 640
NC = 80
REG_MAX = 16
NUM_MASKS = 32
STRIDES = (8, 16, 32)
BN_EPS = 1e-3
SEED = 11
DEPTH, WIDTH, MAX_CHANNELS = 0.50, 0.25, 1024

COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]


def make_divisible(x, divisor=8):
    return int(math.ceil(x / divisor) * divisor)


def ch(c):
    """Channel count of a yaml entry at scale n."""
    return make_divisible(min(c, MAX_CHANNELS) * WIDTH, 8)


def reps(n):
    """Repeat count of a yaml entry at scale n."""
    return max(round(n * DEPTH), 1) if n > 1 else n


class Net:
    """ONNX graph builder for ultralytics modules (BatchNorm folded)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.params = 0  # learnable values (fused count)
        self.bn_channels = 0  # BatchNorm channels folded away
        self.bn_outputs = []  # outputs of BN-folded convs (for the unfused thop count)
        self.names = set()

    def _uniq(self, name):
        base, i = name, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, value, dtype=np.float32, name="const"):
        nm = self._uniq(name)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), nm))
        return nm

    def param(self, arr, name):
        self.params += arr.size
        return self.const(arr.astype(np.float32), name=name)

    def op(self, op_type, inputs, name, outputs=1, **attrs):
        outs = [self._uniq(f"{name}_out{i}" if outputs > 1 else name) for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self._uniq("/" + name), **attrs))
        return outs[0] if outputs == 1 else outs

    def silu(self, x, name):
        return self.op("Mul", [x, self.op("Sigmoid", [x], f"{name}.sigmoid")], f"{name}.silu")

    def _uniform(self, shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return self.rng.uniform(-bound, bound, size=shape).astype(np.float32)

    def conv(self, x, c1, c2, k=1, s=1, g=1, act=True, name="conv"):
        """ultralytics Conv: Conv2d(bias=False) + BatchNorm2d (folded) + SiLU."""
        fan_in = (c1 // g) * k * k
        w = self._uniform((c2, c1 // g, k, k), fan_in)
        gamma = self.rng.uniform(0.5, 1.5, c2)
        beta = self.rng.normal(0.0, 0.1, c2)
        mean = self.rng.normal(0.0, 0.1, c2)
        var = self.rng.uniform(0.5, 1.5, c2)
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = beta - mean * scale
        y = self.op(
            "Conv",
            [x, self.param(wf, f"{name}.conv.weight"), self.param(bf, f"{name}.conv.bias")],
            f"{name}.conv",
            kernel_shape=[k, k],
            strides=[s, s],
            pads=[k // 2] * 4,
            group=g,
            dilations=[1, 1],
        )
        self.bn_channels += c2
        self.bn_outputs.append(y)
        return self.silu(y, name) if act else y

    def conv2d(self, x, c1, c2, name, bias_value=None):
        """Plain nn.Conv2d(c1, c2, 1) with bias (head output layers)."""
        w = self._uniform((c2, c1, 1, 1), c1)
        b = self._uniform((c2,), c1) if bias_value is None else np.asarray(bias_value, np.float32)
        return self.op(
            "Conv",
            [x, self.param(w, f"{name}.weight"), self.param(b, f"{name}.bias")],
            name,
            kernel_shape=[1, 1],
        )

    def split(self, x, sizes, axis, name):
        return self.op("Split", [x, self.const(sizes, np.int64, f"{name}.sizes")], name, len(sizes), axis=axis)

    def concat(self, xs, name, axis=1):
        return self.op("Concat", xs, name, axis=axis)

    def reshape(self, x, shape, name):
        return self.op("Reshape", [x, self.const(shape, np.int64, f"{name}.shape")], name)

    # ---- ultralytics modules ------------------------------------------------------------
    def bottleneck(self, x, c1, c2, shortcut, k=(3, 3), e=0.5, name="m"):
        c_ = int(c2 * e)
        y = self.conv(x, c1, c_, k[0], name=f"{name}.cv1")
        y = self.conv(y, c_, c2, k[1], name=f"{name}.cv2")
        return self.op("Add", [x, y], f"{name}.add") if shortcut and c1 == c2 else y

    def c3k(self, x, c1, c2, n=2, shortcut=True, e=0.5, k=3, name="c3k"):
        c_ = int(c2 * e)
        a = self.conv(x, c1, c_, 1, name=f"{name}.cv1")
        for i in range(n):
            a = self.bottleneck(a, c_, c_, shortcut, k=(k, k), e=1.0, name=f"{name}.m.{i}")
        b = self.conv(x, c1, c_, 1, name=f"{name}.cv2")
        return self.conv(self.concat([a, b], f"{name}.cat"), 2 * c_, c2, 1, name=f"{name}.cv3")

    def c3k2(self, x, c1, c2, n=1, c3k=False, e=0.5, shortcut=True, name="c3k2"):
        c = int(c2 * e)
        y = list(self.split(self.conv(x, c1, 2 * c, 1, name=f"{name}.cv1"), [c, c], 1, f"{name}.chunk"))
        for i in range(n):
            nm = f"{name}.m.{i}"
            if c3k:
                y.append(self.c3k(y[-1], c, c, 2, shortcut, name=nm))
            else:
                y.append(self.bottleneck(y[-1], c, c, shortcut, name=nm))
        return self.conv(self.concat(y, f"{name}.cat"), (2 + n) * c, c2, 1, name=f"{name}.cv2")

    def sppf(self, x, c1, c2, k=5, name="sppf"):
        c_ = c1 // 2
        y = [self.conv(x, c1, c_, 1, name=f"{name}.cv1")]
        for i in range(3):
            y.append(
                self.op("MaxPool", [y[-1]], f"{name}.m.{i}", kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4)
            )
        return self.conv(self.concat(y, f"{name}.cat"), 4 * c_, c2, 1, name=f"{name}.cv2")

    def attention(self, x, dim, hw, num_heads, attn_ratio=0.5, name="attn"):
        head_dim = dim // num_heads
        key_dim = int(head_dim * attn_ratio)
        h = dim + key_dim * num_heads * 2
        n = hw[0] * hw[1]
        qkv = self.conv(x, dim, h, 1, act=False, name=f"{name}.qkv")
        qkv = self.reshape(qkv, [0, num_heads, key_dim * 2 + head_dim, n], f"{name}.view")
        q, k, v = self.split(qkv, [key_dim, key_dim, head_dim], 2, f"{name}.split")
        qt = self.op("Transpose", [q], f"{name}.qT", perm=[0, 1, 3, 2])
        attn = self.op("MatMul", [qt, k], f"{name}.qk")
        attn = self.op("Mul", [attn, self.const(np.float32(key_dim**-0.5), name=f"{name}.scale")], f"{name}.scaled")
        attn = self.op("Softmax", [attn], f"{name}.softmax", axis=-1)
        at = self.op("Transpose", [attn], f"{name}.attnT", perm=[0, 1, 3, 2])
        out = self.reshape(self.op("MatMul", [v, at], f"{name}.av"), [0, dim, hw[0], hw[1]], f"{name}.out")
        v4 = self.reshape(v, [0, dim, hw[0], hw[1]], f"{name}.v")
        pe = self.conv(v4, dim, dim, 3, g=dim, act=False, name=f"{name}.pe")
        return self.conv(self.op("Add", [out, pe], f"{name}.addpe"), dim, dim, 1, act=False, name=f"{name}.proj")

    def psablock(self, x, c, hw, num_heads, name="psa"):
        x = self.op("Add", [x, self.attention(x, c, hw, num_heads, name=f"{name}.attn")], f"{name}.add1")
        f = self.conv(x, c, 2 * c, 1, name=f"{name}.ffn.0")
        f = self.conv(f, 2 * c, c, 1, act=False, name=f"{name}.ffn.1")
        return self.op("Add", [x, f], f"{name}.add2")

    def c2psa(self, x, c1, c2, n, hw, e=0.5, name="c2psa"):
        assert c1 == c2
        c = int(c1 * e)
        a, b = self.split(self.conv(x, c1, 2 * c, 1, name=f"{name}.cv1"), [c, c], 1, f"{name}.split")
        for i in range(n):
            b = self.psablock(b, c, hw, c // 64, name=f"{name}.m.{i}")
        return self.conv(self.concat([a, b], f"{name}.cat"), 2 * c, c1, 1, name=f"{name}.cv2")

    def upsample(self, x, name):
        scales = self.const([1.0, 1.0, 2.0, 2.0], name=f"{name}.scales")
        return self.op("Resize", [x, "", scales], name, mode="nearest", coordinate_transformation_mode="asymmetric",
                       nearest_mode="floor")


def backbone_neck(net):
    """yolo11.yaml layers 0..22 at scale n; returns the P3, P4, P5 outputs and channels."""
    x = "images"
    c = [3]
    out = []

    def add(y, c2):
        out.append(y)
        c.append(c2)
        return y

    s = IMGSZ
    add(net.conv(x, 3, ch(64), 3, 2, name="model.0"), ch(64))  # 0 P1/2
    add(net.conv(out[-1], c[-1], ch(128), 3, 2, name="model.1"), ch(128))  # 1 P2/4
    add(net.c3k2(out[-1], c[-1], ch(256), reps(2), False, 0.25, name="model.2"), ch(256))
    add(net.conv(out[-1], c[-1], ch(256), 3, 2, name="model.3"), ch(256))  # 3 P3/8
    add(net.c3k2(out[-1], c[-1], ch(512), reps(2), False, 0.25, name="model.4"), ch(512))
    add(net.conv(out[-1], c[-1], ch(512), 3, 2, name="model.5"), ch(512))  # 5 P4/16
    add(net.c3k2(out[-1], c[-1], ch(512), reps(2), True, name="model.6"), ch(512))
    add(net.conv(out[-1], c[-1], ch(1024), 3, 2, name="model.7"), ch(1024))  # 7 P5/32
    add(net.c3k2(out[-1], c[-1], ch(1024), reps(2), True, name="model.8"), ch(1024))
    add(net.sppf(out[-1], c[-1], ch(1024), 5, name="model.9"), ch(1024))
    add(net.c2psa(out[-1], c[-1], ch(1024), reps(2), (s // 32, s // 32), name="model.10"), ch(1024))
    # head
    add(net.upsample(out[-1], "model.11"), c[-1])
    add(net.concat([out[-1], out[6]], "model.12"), c[-1] + c[7])
    add(net.c3k2(out[-1], c[-1], ch(512), reps(2), False, name="model.13"), ch(512))
    add(net.upsample(out[-1], "model.14"), c[-1])
    add(net.concat([out[-1], out[4]], "model.15"), c[-1] + c[5])
    add(net.c3k2(out[-1], c[-1], ch(256), reps(2), False, name="model.16"), ch(256))  # 16 P3/8
    add(net.conv(out[-1], c[-1], ch(256), 3, 2, name="model.17"), ch(256))
    add(net.concat([out[-1], out[13]], "model.18"), c[-1] + c[14])
    add(net.c3k2(out[-1], c[-1], ch(512), reps(2), False, name="model.19"), ch(512))  # 19 P4/16
    add(net.conv(out[-1], c[-1], ch(512), 3, 2, name="model.20"), ch(512))
    add(net.concat([out[-1], out[10]], "model.21"), c[-1] + c[11])
    add(net.c3k2(out[-1], c[-1], ch(1024), reps(2), True, name="model.22"), ch(1024))  # 22 P5/32
    return [out[16], out[19], out[22]], [c[17], c[20], c[23]]


def make_anchors():
    pts, strides = [], []
    for s in STRIDES:
        n = IMGSZ // s
        sy, sx = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
        pts.append(np.stack([sx, sy], -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return np.concatenate(pts).T.astype(np.float32), np.concatenate(strides).T.astype(np.float32)


def detect_head(net, feats, chs, name="model.23"):
    """Detect (non-legacy, YOLO11) in export mode: [B, 4 + nc, A] decoded boxes + sigmoids."""
    c2 = max(16, chs[0] // 4, REG_MAX * 4)
    c3 = max(chs[0], min(NC, 100))
    no = NC + 4 * REG_MAX
    flat = []
    for i, (x, c) in enumerate(zip(feats, chs)):
        b = net.conv(x, c, c2, 3, name=f"{name}.cv2.{i}.0")
        b = net.conv(b, c2, c2, 3, name=f"{name}.cv2.{i}.1")
        b = net.conv2d(b, c2, 4 * REG_MAX, f"{name}.cv2.{i}.2", bias_value=np.ones(4 * REG_MAX))
        k = net.conv(x, c, c, 3, g=math.gcd(c, c), name=f"{name}.cv3.{i}.0.0")  # DWConv
        k = net.conv(k, c, c3, 1, name=f"{name}.cv3.{i}.0.1")
        k = net.conv(k, c3, c3, 3, g=math.gcd(c3, c3), name=f"{name}.cv3.{i}.1.0")
        k = net.conv(k, c3, c3, 1, name=f"{name}.cv3.{i}.1.1")
        cls_bias = math.log(5 / NC / (IMGSZ / STRIDES[i]) ** 2)
        k = net.conv2d(k, c3, NC, f"{name}.cv3.{i}.2", bias_value=np.full(NC, cls_bias))
        flat.append(net.reshape(net.concat([b, k], f"{name}.cat.{i}"), [0, no, -1], f"{name}.view.{i}"))
    x = net.concat(flat, f"{name}.cat", axis=2)  # [B, no, A]
    box, cls = net.split(x, [4 * REG_MAX, NC], 1, f"{name}.split")
    # DFL: softmax over the 16 bins of each side, expectation with a fixed 1x1 conv.
    a = net.reshape(box, [0, 4, REG_MAX, -1], f"{name}.dfl.view")
    a = net.op("Transpose", [a], f"{name}.dfl.transpose", perm=[0, 2, 1, 3])  # [B,16,4,A]
    a = net.op("Softmax", [a], f"{name}.dfl.softmax", axis=1)
    dfl_w = np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1)
    a = net.op("Conv", [a, net.param(dfl_w, f"{name}.dfl.conv.weight")], f"{name}.dfl.conv", kernel_shape=[1, 1])
    dist = net.reshape(a, [0, 4, -1], f"{name}.dfl.out")  # [B,4,A] ltrb distances in grid units
    anchors, strides = make_anchors()
    anc = net.const(anchors[None], name=f"{name}.anchors")
    stride = net.const(strides[None], name=f"{name}.strides")
    lt, rb = net.split(dist, [2, 2], 1, f"{name}.ltrb")
    x1y1 = net.op("Sub", [anc, lt], f"{name}.x1y1")
    x2y2 = net.op("Add", [anc, rb], f"{name}.x2y2")
    cxy = net.op("Div", [net.op("Add", [x1y1, x2y2], f"{name}.sum"), net.const(np.float32(2.0), name="two")],
                 f"{name}.cxy")
    wh = net.op("Sub", [x2y2, x1y1], f"{name}.wh")
    dbox = net.op("Mul", [net.concat([cxy, wh], f"{name}.xywh"), stride], f"{name}.dbox")
    return dbox, net.op("Sigmoid", [cls], f"{name}.cls.sigmoid")


def segment_extras(net, feats, chs, name="model.23"):
    """Segment head additions: Proto on P3 and the mask-coefficient branch cv4."""
    npr = ch(256)  # parse_model scales the Segment prototype width like a channel count
    p = net.conv(feats[0], chs[0], npr, 3, name=f"{name}.proto.cv1")
    w = net._uniform((npr, npr, 2, 2), npr * 4)
    b = net._uniform((npr,), npr * 4)
    p = net.op("ConvTranspose", [p, net.param(w, f"{name}.proto.upsample.weight"),
                                 net.param(b, f"{name}.proto.upsample.bias")],
               f"{name}.proto.upsample", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    p = net.conv(p, npr, npr, 3, name=f"{name}.proto.cv2")
    p = net.conv(p, npr, NUM_MASKS, 1, name=f"{name}.proto.cv3")
    c4 = max(chs[0] // 4, NUM_MASKS)
    mc = []
    for i, (x, c) in enumerate(zip(feats, chs)):
        m = net.conv(x, c, c4, 3, name=f"{name}.cv4.{i}.0")
        m = net.conv(m, c4, c4, 3, name=f"{name}.cv4.{i}.1")
        m = net.conv2d(m, c4, NUM_MASKS, f"{name}.cv4.{i}.2")
        mc.append(net.reshape(m, [0, NUM_MASKS, -1], f"{name}.cv4.view.{i}"))
    return net.concat(mc, f"{name}.mc", axis=2), p


def build(seg, seed=SEED):
    """Returns the ONNX model (with counts in metadata_props) of YOLO11n or YOLO11n-seg."""
    net = Net(seed + (1 if seg else 0))
    feats, chs = backbone_neck(net)
    extras = segment_extras(net, feats, chs) if seg else None
    dbox, cls = detect_head(net, feats, chs)
    na = sum((IMGSZ // s) ** 2 for s in STRIDES)
    rows = [dbox, cls] + ([extras[0]] if seg else [])
    net.op("Concat", rows, "output0_cat", axis=1)
    net.nodes[-1].output[0] = "output0"
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + NC + (NUM_MASKS if seg else 0), na])]
    if seg:
        net.nodes.append(helper.make_node("Identity", [extras[1]], ["output1"], name="/output1"))
        outputs.append(
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["batch", NUM_MASKS, IMGSZ // 4, IMGSZ // 4])
        )
    name = "yolo11n-seg" if seg else "yolo11n"
    graph = helper.make_graph(
        net.nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, IMGSZ, IMGSZ])],
        outputs,
        net.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gst-trtvision")
    model.ir_version = IR_VERSION
    model.doc_string = (
        f"{name}: ultralytics YOLO11 architecture (scale n) with seeded RANDOM weights (seed {seed}); "
        "real layout, shapes and cost, meaningless detections. Built by engines/yolo11.py."
    )
    onnx.checker.check_model(model)
    counts = count_flops(model, net.bn_outputs)
    meta = {
        "weights": "random",
        "seed": str(seed),
        "architecture": f"ultralytics {'yolo11-seg' if seg else 'yolo11'}.yaml scale n "
        f"(depth {DEPTH}, width {WIDTH}, max_channels {MAX_CHANNELS})",
        "task": "segment" if seg else "detect",
        "imgsz": f"{IMGSZ},{IMGSZ}",
        "stride": "32",
        "names": json.dumps({i: n for i, n in enumerate(COCO_LABELS)}),
        "params": str(net.params),
        "params_unfused": str(net.params + net.bn_channels),
        "flops_rule": "batch 1, 640x640; gflops_conv = 2 x MACs of Conv/ConvTranspose; "
        "gflops = gflops_conv + 2 x MACs of MatMul/Gemm; activations, pooling, resize and "
        "elementwise ops not counted; gflops_thop_fused / gflops_thop_unfused = ultralytics' thop count "
        "of the fused / unfused model (ConvTranspose counted per output element; unfused adds 4 ops "
        "per BatchNorm output element)",
        "gflops_conv": f"{counts['conv'] * 2 / 1e9:.4f}",
        "gflops_matmul": f"{counts['matmul'] * 2 / 1e9:.4f}",
        "gflops": f"{(counts['conv'] + counts['matmul']) * 2 / 1e9:.4f}",
        "gflops_thop_fused": f"{counts['thop_conv'] * 2 / 1e9:.4f}",
        "gflops_thop_unfused": f"{(counts['thop_conv'] + counts['bn']) * 2 / 1e9:.4f}",
    }
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    return model, meta


def count_flops(model, bn_outputs):
    """MACs of Conv/ConvTranspose/MatMul/Gemm at batch 1 (static shapes from shape inference)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    inf = shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
              for vi in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output)}
    shapes["images"] = [1, 3, IMGSZ, IMGSZ]
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    shapes.update(inits)
    conv = matmul = thop_conv = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]  # [Cout, Cin/g, kh, kw]
            out = shapes[n.output[0]]
            macs = int(np.prod(out)) * w[1] * w[2] * w[3]
            conv += macs
            thop_conv += macs
        elif n.op_type == "ConvTranspose":
            w = inits[n.input[1]]  # [Cin, Cout/g, kh, kw]
            x = shapes[n.input[0]]
            out = shapes[n.output[0]]
            g = next((a.i for a in n.attribute if a.name == "group"), 1)
            conv += int(np.prod(x)) * w[1] * w[2] * w[3]
            thop_conv += int(np.prod(out)) * (x[1] // g) * w[2] * w[3]
        elif n.op_type in ("MatMul", "Gemm"):
            a, b = shapes[n.input[0]], shapes[n.input[1]]
            matmul += int(np.prod(a[:-1])) * a[-1] * b[-1]
    bn = sum(4 * int(np.prod(shapes[o])) for o in bn_outputs)
    return {"conv": conv, "matmul": matmul, "thop_conv": thop_conv, "bn": bn}


def generate(out, fp16=True):
    """Writes yolo11n.onnx and yolo11n-seg.onnx (and their -fp16 variants) into `out`."""
    os.makedirs(out, exist_ok=True)
    written = []
    for seg in (False, True):
        model, meta = build(seg)
        stem = os.path.join(out, "yolo11n-seg" if seg else "yolo11n")
        onnx.save(model, stem + ".onnx")
        written.append((stem + ".onnx", meta))
        if fp16:
            # FP16 weights and compute, FP32 inputs/outputs (same model config), for
            # strongly typed TensorRT builds; see convert_fp16.py.
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from convert_fp16 import convert_builtin

            half = convert_builtin(model, keep_io_types=True)
            onnx.checker.check_model(half, full_check=True)
            onnx.save(half, stem + "-fp16.onnx")
            written.append((stem + "-fp16.onnx", meta))
    return written


class CheckError(Exception):
    pass


def check(out, batches=(1, 8), iters=5):
    """Runs both models with ONNX Runtime (CPU): shapes, value ranges, DFL/decode consistency
    and timing. Returns the report lines; raises CheckError on a mismatch."""
    import onnxruntime as ort

    lines = []
    anchors, strides = make_anchors()
    for name, rows, seg in (("yolo11n", 84, False), ("yolo11n-seg", 116, True)):
        path = os.path.join(out, name + ".onnx")
        if not os.path.exists(path):
            raise CheckError(f"{path} does not exist; run engines/yolo11.py --out {out} first")
        model = onnx.load(path)
        meta = {p.key: p.value for p in model.metadata_props}
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ins = [(i.name, i.shape) for i in sess.get_inputs()]
        if ins != [("images", ["batch", 3, IMGSZ, IMGSZ])]:
            raise CheckError(f"{name}: unexpected inputs {ins}")
        rng = np.random.default_rng(5)
        for b in batches:
            x = rng.random((b, 3, IMGSZ, IMGSZ), dtype=np.float32)
            outs = sess.run(None, {"images": x})
            want = [(b, rows, 8400)] + ([(b, NUM_MASKS, 160, 160)] if seg else [])
            got = [o.shape for o in outs]
            if got != want:
                raise CheckError(f"{name} batch {b}: output shapes {got}, expected {want}")
            for o in outs:
                if not np.isfinite(o).all():
                    raise CheckError(f"{name} batch {b}: non-finite outputs")
            o0 = outs[0]
            cls = o0[:, 4:84]
            if cls.min() <= 0 or cls.max() >= 1:
                raise CheckError(f"{name} batch {b}: class scores outside (0, 1)")
            # Box decoding: w, h are the sums of DFL expectations (each in 0..15 grid cells)
            # times the stride, and the centre stays within that reach of the anchor.
            wh = o0[:, 2:4]
            if wh.min() < 0 or (wh > 2 * (REG_MAX - 1) * strides[None] + 1e-3).any():
                raise CheckError(f"{name} batch {b}: box sizes outside the DFL range")
            reach = (REG_MAX - 1) * strides[None] / 2 + 1e-3
            if (np.abs(o0[:, 0:2] - anchors[None] * strides[None]) > reach).any():
                raise CheckError(f"{name} batch {b}: box centres beyond the DFL reach of their anchor")
            if b > 1 and not np.allclose(outs[0][0], sess.run(None, {"images": x[:1]})[0][0], atol=1e-4, rtol=1e-4):
                raise CheckError(f"{name}: image 0 of batch {b} differs from the same image at batch 1")
            if iters == 0:
                lines.append(f"  {name:12s} batch {b}: {', '.join(str(list(s)) for s in got)}")
                continue
            for _ in range(2):
                sess.run(None, {"images": x})
            ts = []
            for _ in range(iters):
                t0 = time.perf_counter()
                sess.run(None, {"images": x})
                ts.append(time.perf_counter() - t0)
            lines.append(
                f"  {name:12s} batch {b}: {', '.join(str(list(s)) for s in got)}  "
                f"median {np.median(ts) * 1e3:.1f} ms/batch (min {min(ts) * 1e3:.1f}), "
                f"max class score {cls.max():.2e}"
            )
        lines.append(
            f"  {name:12s} params {int(meta['params']):,} (unfused {int(meta['params_unfused']):,}), "
            f"GFLOPs conv {meta['gflops_conv']}, +matmul {meta['gflops']}, "
            f"thop fused {meta['gflops_thop_fused']} / unfused {meta['gflops_thop_unfused']}"
        )
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
    ap.add_argument("--check", action="store_true", help="run the generated models with ONNX Runtime (CPU)")
    ap.add_argument("--iters", type=int, default=5, help="timed runs per batch size in --check (0: no timing)")
    ap.add_argument("--no-fp16", action="store_true", help="do not write the -fp16 variants")
    args = ap.parse_args()
    if args.check:
        try:
            lines = check(args.out, iters=args.iters)
        except CheckError as e:
            print(f"YOLO11 CHECK FAILED: {e}", file=sys.stderr)
            sys.exit(1)
        print(f"yolo11 check (ONNX Runtime CPU, {os.cpu_count()} cores):")
        print("\n".join(lines))
        print("YOLO11 CHECK PASSED")
    else:
        for path, meta in generate(args.out, fp16=not args.no_fp16):
            print(f"wrote {path}: params {int(meta['params']):,}, GFLOPs {meta['gflops']} "
                  f"(conv {meta['gflops_conv']}), weights random")


if __name__ == "__main__":
    main()
