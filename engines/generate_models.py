#!/usr/bin/env python3
"""Generate the synthetic "shapes" ONNX models used by gst-trtvision tests.

The models are built by hand with the ``onnx`` helper API (no torch, no
training). They compute exact, known results on the synthetic test scene:
flat gray background (60, 60, 60) with at most one object per class in four
class colours (red, green, blue, yellow).

Usage:
    python3 engines/generate_models.py --out engines/models
    python3 engines/generate_models.py --out engines/models --check

Models (input ``images`` [batch, 3, 640, 640] float32 RGB in 0..1, opset 17):
    shapes-yolo.onnx      output0 [batch, 8, 8400]            (YOLOv8/11 detect)
    shapes-yolo-seg.onnx  output0 [batch, 40, 8400],
                          output1 [batch, 32, 160, 160]        (YOLOv8/11 seg)
    shapes-detr.onnx      boxes [batch, 10, 4], logits [batch, 10, 5],
                          masks [batch, 10, 160, 160]          (DETR style)
    bad-shape.onnx        like shapes-yolo, input [batch, 3, 320, 320]

With ``--yolo11`` it also writes the YOLO11n / YOLO11n-seg architectures with seeded random
weights (``yolo11n.onnx``, ``yolo11n-seg.onnx`` and their ``-fp16`` variants; see
``engines/yolo11.py``), and ``--check --yolo11`` runs them with ONNX Runtime as well.
"""

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
NUM_CLASSES = 4
LABELS = ["red", "green", "blue", "yellow"]
PALETTE = {
    0: (220, 40, 40),
    1: (40, 200, 60),
    2: (40, 60, 220),
    3: (230, 210, 40),
}
BACKGROUND = (60, 60, 60)
PAD_VALUE = 114
NUM_PROTOS = 32
DETR_QUERIES = 10
COPIES = 3  # candidate anchors per class in the YOLO layouts
AREA_FULL = 256.0  # area (pixels) at which the presence score saturates
SCORE_MAX = 0.9


def num_anchors(size):
    return sum((size // s) ** 2 for s in (8, 16, 32))


# --------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------
class G:
    """Tiny graph builder."""

    def __init__(self):
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, value, dtype=np.float32, base="c"):
        arr = np.asarray(value, dtype=dtype)
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(arr, nm))
        return nm

    def op(self, op_type, inputs, base=None, outputs=1, out_names=None, **attrs):
        if out_names is None:
            out_names = [self.name(base or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, out_names, **attrs))
        return out_names[0] if len(out_names) == 1 else out_names


def membership(g, image, size):
    """[B,4,S*S] per-class membership (exactly 0 or 1) of the pixels of `image` [B,3,S,S]."""
    q = g.op("HardSigmoid", [image], "q", alpha=20.0, beta=-9.0)  # [B,3,S,S]
    q = g.op("Reshape", [q, g.const([0, 3, size * size], np.int64)], "q3")  # [B,3,S*S]
    wmat = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [0.5, 0.5, -0.5]], np.float32)
    t = g.op("MatMul", [g.const(wmat), q], "t")  # [B,4,S*S]
    return g.op("HardSigmoid", [t], "m4", alpha=1000.0, beta=-999.0)


def build_core(g, size):
    """Common part: per-class membership and box statistics.

    Membership is computed with cheap float ops only (no Conv, so no NCHWc
    layout transforms on CPU):
      q  = HardSigmoid(images, alpha=20, beta=-9) = clip(20 * (x - 0.45), 0, 1)
           -> 0 for x <= 0.45, 1 for x >= 0.5
      t  = W @ q  (MatMul over the channel axis, W rows: red [1,-1,-1],
           green [-1,1,-1], blue [-1,-1,1], yellow [.5,.5,-.5])
      m  = HardSigmoid(t, alpha=1000, beta=-999) = clip(1000 * (t - 1) + 1, 0, 1)
    Every row of t is <= 1, with equality iff each "high" channel is >= 0.5 and each
    "low" channel is <= 0.45, so m is exactly 1 for member pixels and 0 otherwise
    (fractional only for channel values within 5e-5 of a threshold).

    Returns a dict of tensor names:
      m      [B,4,S,S] float membership (0/1)
      box4   [B,4(coord),4(class)]  cx, cy, w, h in model pixels (0 when absent)
      presf  [B,4] 1.0 if class present
      pres   [B,4] clip(area/256, 0, 1)
      score  [B,4] pres * 0.9
    """
    zero = g.const(0.0)
    one = g.const(1.0)
    m = membership(g, "images", size)
    m = g.op("Reshape", [m, g.const([0, NUM_CLASSES, size, size], np.int64)], "m")  # [B,4,S,S]

    # Projections: column counts (sum over y) and row occupancy (max over x).
    colcnt = g.op("ReduceSum", [m, g.const([2], np.int64)], "colcnt", keepdims=0)  # [B,4,S]
    rowocc = g.op("ReduceMax", [m], "rowocc", axes=[3], keepdims=0)  # [B,4,S]
    area = g.op("ReduceSum", [colcnt, g.const([2], np.int64)], "area", keepdims=0)  # [B,4]
    xocc = g.op("Greater", [colcnt, zero])
    yocc = g.op("Greater", [rowocc, zero])
    coord = g.const(np.arange(size, dtype=np.float32), base="coord")
    big = g.const(1.0e4)
    neg1 = g.const(-1.0)

    def extent(occ):
        lo_ = g.op("ReduceMin", [g.op("Where", [occ, coord, big])], axes=[2], keepdims=0)
        hi_ = g.op("ReduceMax", [g.op("Where", [occ, coord, neg1])], axes=[2], keepdims=0)
        return lo_, g.op("Add", [hi_, one])

    x0, x1 = extent(xocc)
    y0, y1 = extent(yocc)
    present = g.op("Greater", [area, zero], "present")  # [B,4] bool
    half = g.const(0.5)

    def masked(v):
        return g.op("Where", [present, v, zero])

    cx = masked(g.op("Mul", [g.op("Add", [x0, x1]), half]))
    cy = masked(g.op("Mul", [g.op("Add", [y0, y1]), half]))
    w = masked(g.op("Sub", [x1, x0]))
    h = masked(g.op("Sub", [y1, y0]))
    ax1 = g.const([1], np.int64)
    box4 = g.op("Concat", [g.op("Unsqueeze", [t, ax1]) for t in (cx, cy, w, h)], "box4", axis=1)
    presf = g.op("Cast", [present], "presf", to=TensorProto.FLOAT)
    pres = g.op("Clip", [g.op("Div", [area, g.const(AREA_FULL)]), zero, one], "pres")
    score = g.op("Mul", [pres, g.const(SCORE_MAX)], "score")
    return dict(m=m, box4=box4, presf=presf, pres=pres, score=score)


def proto_logits(g, core):
    """[B,4,S/4,S/4] mask logits: 16 * (avgpool4x4(membership) - 0.5)."""
    f = g.op("AveragePool", [core["m"]], "pool", kernel_shape=[4, 4], strides=[4, 4])
    return g.op("Mul", [g.op("Sub", [f, g.const(0.5)]), g.const(16.0)], "mlogit")


def yolo_head(g, core, size, seg):
    nA = num_anchors(size)
    ax13 = g.const([1, 3], np.int64)
    # Boxes of the 3 copies: copy k grows w,h by 2k (k px on every side).
    grow = np.zeros((1, 4, 1, COPIES), np.float32)
    grow[0, 2, 0, :] = 2 * np.arange(COPIES)
    grow[0, 3, 0, :] = 2 * np.arange(COPIES)
    box = g.op("Unsqueeze", [core["box4"], g.const([3], np.int64)])  # [B,4,4,1]
    growth = g.op("Mul", [g.op("Unsqueeze", [core["presf"], ax13]), g.const(grow)])  # [B,1,4,1]*[1,4,1,3]
    boxes = g.op("Add", [box, growth])  # [B,4,4,3]
    shp = g.const([0, 4, NUM_CLASSES * COPIES], np.int64)
    boxes = g.op("Reshape", [boxes, shp], "boxes12")
    # Scores: row r, anchor 3c+k = score_c * (1 - 0.1k) * (r == c)
    e = np.zeros((1, NUM_CLASSES, NUM_CLASSES, COPIES), np.float32)
    for c in range(NUM_CLASSES):
        e[0, c, c, :] = 1.0 - 0.1 * np.arange(COPIES)
    scores = g.op("Mul", [g.op("Unsqueeze", [core["score"], ax13]), g.const(e)])  # [B,4,4,3]
    scores = g.op("Reshape", [scores, g.const([0, NUM_CLASSES, NUM_CLASSES * COPIES], np.int64)], "scores12")
    parts = [boxes, scores]
    outputs = [("output0", [("batch"), 4 + NUM_CLASSES + (NUM_PROTOS if seg else 0), nA])]
    if seg:
        coef = np.zeros((1, NUM_PROTOS, NUM_CLASSES * COPIES), np.float32)
        for c in range(NUM_CLASSES):
            coef[0, c, COPIES * c:COPIES * (c + 1)] = 1.0
        bdim = g.op("Shape", ["images"], end=1)
        eshape = g.op("Concat", [bdim, g.const([NUM_PROTOS, NUM_CLASSES * COPIES], np.int64)], axis=0)
        parts.append(g.op("Expand", [g.const(coef), eshape], "coef12"))
    small = g.op("Concat", parts, "head12", axis=1)  # [B,C,12]
    pads = g.const([0, 0, 0, 0, 0, nA - NUM_CLASSES * COPIES], np.int64)
    g.op("Pad", [small, pads], out_names=["output0"])
    if seg:
        ml = proto_logits(g, core)
        g.op("Pad", [ml, g.const([0, 0, 0, 0, 0, NUM_PROTOS - NUM_CLASSES, 0, 0], np.int64)],
             out_names=["output1"])
        outputs.append(("output1", ["batch", NUM_PROTOS, size // 4, size // 4]))
    return outputs


def detr_head(g, core, size):
    Q = DETR_QUERIES
    # boxes: [B,4(class),4(coord)] normalized, padded to Q queries with zeros
    b = g.op("Transpose", [core["box4"]], perm=[0, 2, 1])
    b = g.op("Div", [b, g.const(float(size))])
    g.op("Pad", [b, g.const([0, 0, 0, 0, Q - NUM_CLASSES, 0], np.int64)], out_names=["boxes"])
    # logits = p * A + C, p = presence (0..1) per query (0 for queries >= 4)
    p = g.op("Unsqueeze", [core["pres"], g.const([2], np.int64)])  # [B,4,1]
    p = g.op("Pad", [p, g.const([0, 0, 0, 0, Q - NUM_CLASSES, 0], np.int64)])  # [B,Q,1]
    A = np.zeros((1, Q, NUM_CLASSES + 1), np.float32)
    C = np.full((1, Q, NUM_CLASSES + 1), -10.0, np.float32)
    for q in range(NUM_CLASSES):
        A[0, q, q] = 10.0
        A[0, q, NUM_CLASSES] = -10.0
        C[0, q, q] = -5.0
        C[0, q, NUM_CLASSES] = 5.0
    C[0, NUM_CLASSES:, NUM_CLASSES] = 10.0
    g.op("Add", [g.op("Mul", [p, g.const(A)]), g.const(C)], out_names=["logits"])
    ml = proto_logits(g, core)
    g.op("Pad", [ml, g.const([0, 0, 0, 0, 0, Q - NUM_CLASSES, 0, 0], np.int64), g.const(-8.0)],
         out_names=["masks"])
    P = size // 4
    return [("boxes", ["batch", Q, 4]), ("logits", ["batch", Q, NUM_CLASSES + 1]),
            ("masks", ["batch", Q, P, P])]


def make_model(kind, size=640):
    g = G()
    core = build_core(g, size)
    if kind == "yolo":
        outs = yolo_head(g, core, size, seg=False)
    elif kind == "yolo-seg":
        outs = yolo_head(g, core, size, seg=True)
    elif kind == "detr":
        outs = detr_head(g, core, size)
    else:
        raise ValueError(kind)
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outs]
    return finish(g, f"shapes_{kind}", [inp], outputs, kind,
                  f"Synthetic '{kind}' shapes model: classes {LABELS}; "
                  "exact colour-threshold detector, not a trained network.")


# Depth-style dense model: one value per input pixel, set by the class of the pixel.
DEPTH_SIZE = 320
DEPTH_OF_CLASS = [2.0, 4.0, 6.0, 8.0]
DEPTH_BACKGROUND = 10.0
# Landmark-style secondary model on object crops.
CROP_SIZE = 64
KEYPOINT_NAMES = ["centroid", "top", "top-left", "bottom-right"]


def make_depth(size=DEPTH_SIZE):
    """depth [B,1,S,S] = DEPTH_OF_CLASS[c] on pixels of class c, DEPTH_BACKGROUND elsewhere."""
    g = G()
    m = membership(g, "images", size)  # [B,4,S*S]
    w = np.array([[d - DEPTH_BACKGROUND for d in DEPTH_OF_CLASS]], np.float32)  # [1,4]
    d = g.op("Add", [g.op("MatMul", [g.const(w), m]), g.const(DEPTH_BACKGROUND)])  # [B,1,S*S]
    g.op("Reshape", [d, g.const([0, 1, size, size], np.int64)], out_names=["depth"])
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])
    out = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, size, size])
    return finish(g, "shapes_depth", [inp], [out], "depth",
                  "Synthetic depth model: per-pixel depth %s by class %s, %s elsewhere; not a trained network."
                  % (DEPTH_OF_CLASS, LABELS, DEPTH_BACKGROUND))


def make_landmarks(size=CROP_SIZE):
    """On a crop [n,3,S,S] of one object: keypoints [n,4,2] (x, y normalised to the crop) of
    the pixels of the crop's dominant class, and colors [n,4] (each class's share of the
    member pixels)."""
    g = G()
    zero, one = g.const(0.0), g.const(1.0)
    m = membership(g, "crops", size)  # [n,4,N]
    area = g.op("ReduceSum", [m, g.const([2], np.int64)], "area", keepdims=0)  # [n,4]
    total = g.op("ReduceSum", [area, g.const([1], np.int64)], "total", keepdims=1)  # [n,1]
    g.op("Div", [area, g.op("Max", [total, one])], out_names=["colors"])
    amax = g.op("ReduceMax", [area], "amax", axes=[1], keepdims=1)
    dominant = g.op("Mul", [g.op("Cast", [g.op("Equal", [area, amax])], to=TensorProto.FLOAT),
                            g.op("Cast", [g.op("Greater", [area, zero])], to=TensorProto.FLOAT)])
    dominant = g.op("Div", [dominant, g.op("Max", [g.op("ReduceSum", [dominant, g.const([1], np.int64)],
                                                         keepdims=1), one])])
    mk = g.op("MatMul", [g.op("Unsqueeze", [dominant, g.const([1], np.int64)]), m])  # [n,1,N]
    mk = g.op("Reshape", [mk, g.const([0, size, size], np.int64)], "mk")  # [n,S,S] (y, x)
    colsum = g.op("ReduceSum", [mk, g.const([1], np.int64)], keepdims=0)  # [n,S] per x
    rowsum = g.op("ReduceSum", [mk, g.const([2], np.int64)], keepdims=0)  # [n,S] per y
    count = g.op("Max", [g.op("ReduceSum", [colsum, g.const([1], np.int64)], keepdims=0), one])  # [n]
    centre = g.const((np.arange(size, dtype=np.float32) + 0.5) / size)
    idx = g.const(np.arange(size, dtype=np.float32))
    inv = g.const(1.0 / size)

    def mean_coord(weights, norm):
        return g.op("Div", [g.op("ReduceSum", [g.op("Mul", [weights, centre]), g.const([1], np.int64)],
                                 keepdims=0), norm])

    cx, cy = mean_coord(colsum, count), mean_coord(rowsum, count)

    def extent(sums):
        occ = g.op("Greater", [sums, zero])
        lo = g.op("ReduceMin", [g.op("Where", [occ, idx, g.const(1.0e4)])], axes=[1], keepdims=0)
        hi = g.op("ReduceMax", [g.op("Where", [occ, idx, g.const(-1.0)])], axes=[1], keepdims=0)
        return lo, g.op("Add", [hi, one])

    x0, x1 = extent(colsum)
    y0, y1 = extent(rowsum)
    # Top point: mean x of the member pixels of the topmost row.
    rowsel = g.op("Cast", [g.op("Equal", [g.op("Unsqueeze", [y0, g.const([1], np.int64)]), idx])],
                  to=TensorProto.FLOAT)  # [n,S]
    toprow = g.op("ReduceSum", [g.op("Mul", [mk, g.op("Unsqueeze", [rowsel, g.const([2], np.int64)])]),
                                g.const([1], np.int64)], keepdims=0)  # [n,S] per x
    topx = mean_coord(toprow, g.op("Max", [g.op("ReduceSum", [toprow, g.const([1], np.int64)],
                                                 keepdims=0), one]))
    present = g.op("Greater", [g.op("ReduceSum", [area, g.const([1], np.int64)], keepdims=0), zero])

    def coord(v, scaled):
        v = g.op("Mul", [v, inv]) if scaled else v
        return g.op("Unsqueeze", [g.op("Where", [present, v, zero]), g.const([1], np.int64)])  # [n,1]

    points = [(coord(cx, False), coord(cy, False)), (coord(topx, False), coord(y0, True)),
              (coord(x0, True), coord(y0, True)), (coord(x1, True), coord(y1, True))]
    pts = [g.op("Unsqueeze", [g.op("Concat", [px, py], axis=1), g.const([1], np.int64)]) for px, py in points]
    g.op("Concat", pts, out_names=["keypoints"], axis=1)  # [n,4,2]
    inp = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["n", 3, size, size])
    outs = [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["n", len(KEYPOINT_NAMES), 2]),
            helper.make_tensor_value_info("colors", TensorProto.FLOAT, ["n", NUM_CLASSES])]
    return finish(g, "shapes_landmarks", [inp], outs, "landmarks",
                  "Synthetic landmark model on object crops: keypoints %s of the dominant class colour "
                  "(normalised to the crop) and colour shares; not a trained network." % KEYPOINT_NAMES)


def finish(g, name, inputs, outputs, task, doc):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gst-trtvision/engines/generate_models.py")
    model.ir_version = IR_VERSION
    model.doc_string = doc
    props = {"names": str({i: n for i, n in enumerate(LABELS)}), "task": task}
    dims = inputs[0].type.tensor_type.shape.dim
    props["imgsz"] = str([dims[2].dim_value, dims[3].dim_value])
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


# Models beyond the detectors: file name -> builder.
EXTRA_MODELS = {
    "shapes-depth.onnx": make_depth,
    "shapes-landmarks.onnx": make_landmarks,
}

MODELS = {
    "shapes-yolo.onnx": ("yolo", 640),
    "shapes-yolo-seg.onnx": ("yolo-seg", 640),
    "shapes-detr.onnx": ("detr", 640),
    "bad-shape.onnx": ("yolo", 320),
}


def generate(out):
    os.makedirs(out, exist_ok=True)
    for fname, (kind, size) in MODELS.items():
        path = os.path.join(out, fname)
        onnx.save(make_model(kind, size), path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    for fname, build in EXTRA_MODELS.items():
        path = os.path.join(out, fname)
        onnx.save(build(), path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------
class CheckError(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckError(msg)


def shape_mask(h, w, shape):
    ys, xs = np.mgrid[0:h, 0:w]
    px, py = xs + 0.5, ys + 0.5
    kind = shape[0]
    if kind == "rect":
        x0, y0, x1, y1 = shape[1:]
        return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    if kind == "ellipse":
        cx, cy, rx, ry = shape[1:]
        return ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 <= 1.0
    if kind == "tri":
        (ax, ay), (bx, by), (cx, cy) = shape[1:]

        def edge(x0, y0, x1, y1):
            return (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)

        e0, e1, e2 = edge(ax, ay, bx, by), edge(bx, by, cx, cy), edge(cx, cy, ax, ay)
        return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    raise ValueError(kind)


def render(w, h, objects):
    """objects: {class: shape}. Returns (uint8 HxWx3, {class: bool mask})."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    masks = {}
    for c, shape in objects.items():
        mk = shape_mask(h, w, shape)
        img[mk] = PALETTE[c]
        masks[c] = mk
    return img, masks


def yuv420_roundtrip(img):
    """BT.601 full-range RGB -> YUV 4:2:0 (2x2 averaged chroma) -> RGB, with uint8 rounding."""
    f = img.astype(np.float64)
    r, g_, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g_ + 0.114 * b
    u = -0.168736 * r - 0.331264 * g_ + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g_ - 0.081312 * b + 128
    y, u, v = (np.clip(np.round(t), 0, 255) for t in (y, u, v))
    h, w = y.shape

    def sub(c):
        c = c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        c = np.round(c)
        # bilinear-ish upsample: nearest then 3x3 smoothing of the chroma
        c = np.repeat(np.repeat(c, 2, 0), 2, 1)
        return box_blur(c, 1)

    u, v = sub(u) - 128, sub(v) - 128
    r = y + 1.402 * v
    g_ = y - 0.344136 * u - 0.714136 * v
    b = y + 1.772 * u
    return np.clip(np.round(np.stack([r, g_, b], -1)), 0, 255).astype(np.uint8)


def box_blur(a, radius):
    """Separable box blur with edge replication, works on HxW or HxWxC."""
    k = 2 * radius + 1
    out = a.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="edge")
        cs = np.cumsum(p, axis=axis)
        cs = np.concatenate([np.zeros_like(np.take(cs, [0], axis=axis)), cs], axis=axis)
        n = out.shape[axis]
        out = (np.take(cs, np.arange(k, k + n), axis=axis) - np.take(cs, np.arange(0, n), axis=axis)) / k
    return out


def letterbox(img, size=640, pad=PAD_VALUE):
    """Integer-factor area downscale (or 1:1) + centred padding. Returns (canvas, scale, padx, pady)."""
    h, w = img.shape[:2]
    s = min(size / w, size / h)
    factor = round(1 / s)
    assert abs(1 / s - factor) < 1e-9, "test scenes use integer downscale factors"
    if factor > 1:
        img = np.round(img.reshape(h // factor, factor, w // factor, factor, 3).astype(np.float64)
                       .mean(axis=(1, 3))).astype(np.uint8)
    nh, nw = img.shape[:2]
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), pad, np.uint8)
    canvas[py:py + nh, px:px + nw] = img
    return canvas, s, px, py


def true_model_mask(mask, s, px, py, size=640):
    h, w = mask.shape
    factor = round(1 / s)
    if factor > 1:
        mask = mask.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)) > 0.5
    out = np.zeros((size, size), bool)
    out[py:py + mask.shape[0], px:px + mask.shape[1]] = mask
    return out


def true_box(mask, s, px, py):
    """Ground truth from the source raster, mapped to model pixels: x0, y0, x1, y1."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min() * s + px, ys.min() * s + py, (xs.max() + 1) * s + px, (ys.max() + 1) * s + py])


SCENES = [
    # (width, height, {class: shape})
    (640, 480, {0: ("rect", 40, 60, 200, 180), 1: ("ellipse", 420.0, 150.0, 90.0, 60.0),
                2: ("tri", (100, 440), (260, 260), (330, 430)), 3: ("rect", 450, 300, 600, 460)}),
    (1920, 1080, {0: ("ellipse", 600.0, 500.0, 300.0, 200.0), 2: ("rect", 1300, 200, 1800, 900)}),
    (1280, 720, {3: ("tri", (100, 650), (400, 100), (700, 650)), 1: ("rect", 1000, 0, 1280, 300)}),
    (640, 480, {}),
    (1920, 1080, {0: ("rect", 100, 100, 175, 175), 1: ("ellipse", 900.0, 540.0, 45.0, 40.0),
                  2: ("rect", 1500, 800, 1900, 1060), 3: ("ellipse", 1500.0, 300.0, 250.0, 150.0)}),
    (480, 640, {2: ("ellipse", 240.0, 320.0, 150.0, 250.0), 0: ("rect", 10, 10, 100, 60)}),
    (640, 640, {0: ("tri", (20, 20), (300, 40), (60, 300)), 1: ("rect", 330, 20, 620, 200),
                2: ("ellipse", 160.0, 480.0, 120.0, 100.0), 3: ("rect", 400, 400, 440, 436)}),
    (1280, 960, {1: ("ellipse", 640.0, 480.0, 400.0, 300.0)}),
]


def make_frames(degrade=None):
    frames, truths = [], []
    for (w, h, objs) in SCENES:
        img, masks = render(w, h, objs)
        if degrade in ("yuv", "yuv+blur"):
            img = yuv420_roundtrip(img)
        if degrade == "yuv+blur":
            img = np.clip(np.round(box_blur(img, 2)), 0, 255).astype(np.uint8)
        canvas, s, px, py = letterbox(img)
        frames.append(canvas.transpose(2, 0, 1).astype(np.float32) / 255.0)
        truths.append({c: (true_box(mk, s, px, py), true_model_mask(mk, s, px, py)) for c, mk in masks.items()})
    return np.stack(frames), truths


def iou_xyxy(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_classaware(out0, conf=0.25, iou=0.45):
    """out0: [C, N] one image. Returns list of (cls, score, xyxy, anchor_index)."""
    cls_scores = out0[4:4 + NUM_CLASSES].T
    cls = cls_scores.argmax(1)
    sc = cls_scores.max(1)
    idx = np.nonzero(sc > conf)[0]
    idx = idx[np.argsort(-sc[idx], kind="stable")]
    cx, cy, w, h = out0[0:4]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    kept = []
    for i in idx:
        if all(cls[j] != cls[i] or iou_xyxy(boxes[i], boxes[j]) <= iou for (_, _, _, j) in kept):
            kept.append((int(cls[i]), float(sc[i]), boxes[i], int(i)))
    return kept


def mask_iou(a, b):
    u = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / u if u else 1.0


def upsample_bilinear4(x):
    """[h, w] -> [4h, 4w], half-pixel centres (align_corners=False), edge clamp."""
    h, w = x.shape
    def coords(n):
        c = (np.arange(4 * n) + 0.5) / 4 - 0.5
        c = np.clip(c, 0, n - 1)
        i0 = np.floor(c).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, c - i0
    y0, y1, fy = coords(h)
    x0, x1, fx = coords(w)
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bot = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def crop(mask, box):
    out = np.zeros_like(mask)
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    return out


class Stats:
    def __init__(self):
        self.max_box_err = 0.0
        self.min_mask_iou = 1.0
        self.min_detr_prob = 1.0
        self.dets = 0

    def box(self, got_xyxy, gt, tol, what):
        err = float(np.max(np.abs(np.asarray(got_xyxy) - gt)))
        self.max_box_err = max(self.max_box_err, err)
        expect(err <= tol, f"{what}: box {np.round(got_xyxy, 2)} vs truth {np.round(gt, 2)} (err {err:.2f} > {tol})")

    def mask(self, pred, true, what, thr=0.9):
        v = mask_iou(pred, true)
        self.min_mask_iou = min(self.min_mask_iou, v)
        expect(v > thr, f"{what}: mask IoU {v:.3f} <= {thr}")


def check_finite(outs, what):
    for name, t in outs.items():
        expect(np.all(np.isfinite(t)), f"{what}: non-finite values in {name}")


def check_yolo(outs, truths, stats, tol, seg, what, check_masks=True):
    out0 = outs["output0"]
    nA = out0.shape[2]
    expect(out0.shape[1] == 4 + NUM_CLASSES + (NUM_PROTOS if seg else 0), f"{what}: output0 shape {out0.shape}")
    expect(np.all(out0[:, :, NUM_CLASSES * COPIES:] == 0), f"{what}: anchors >= 12 not zero")
    if seg:
        protos = outs["output1"]
        expect(protos.shape[1:] == (NUM_PROTOS, 160, 160), f"{what}: output1 shape {protos.shape}")
    for b, truth in enumerate(truths):
        kept = nms_classaware(out0[b])
        stats.dets += len(kept)
        classes = sorted(k[0] for k in kept)
        expect(classes == sorted(truth), f"{what}[{b}]: NMS kept classes {classes}, expected {sorted(truth)}")
        for cls, sc, box, ai in kept:
            expect(ai == COPIES * cls, f"{what}[{b}]: class {cls} kept anchor {ai}")
            expect(abs(sc - SCORE_MAX) < 1e-4, f"{what}[{b}]: class {cls} score {sc}")
            gt_box, gt_mask = truth[cls]
            stats.box(box, gt_box, tol, f"{what}[{b}] class {cls}")
            if seg and check_masks:
                coef = out0[b, 4 + NUM_CLASSES:, ai]
                logit = np.tensordot(coef, protos[b], axes=1)
                pm = crop(upsample_bilinear4(1 / (1 + np.exp(-logit))) > 0.5, box)
                stats.mask(pm, gt_mask, f"{what}[{b}] class {cls}")
        # absent classes: score rows are zero everywhere
        for c in range(NUM_CLASSES):
            if c not in truth:
                expect(np.all(out0[b, 4 + c] == 0), f"{what}[{b}]: absent class {c} has non-zero scores")
                expect(np.all(out0[b, :4, COPIES * c:COPIES * (c + 1)] == 0), f"{what}[{b}]: absent class {c} box not zero")


def check_detr(outs, truths, stats, tol, what, check_masks=True):
    boxes, logits, masks = outs["boxes"], outs["logits"], outs["masks"]
    expect(boxes.shape[1:] == (DETR_QUERIES, 4), f"{what}: boxes shape {boxes.shape}")
    expect(logits.shape[1:] == (DETR_QUERIES, NUM_CLASSES + 1), f"{what}: logits shape {logits.shape}")
    expect(masks.shape[1:] == (DETR_QUERIES, 160, 160), f"{what}: masks shape {masks.shape}")
    e = np.exp(logits - logits.max(-1, keepdims=True))
    prob = e / e.sum(-1, keepdims=True)
    for b, truth in enumerate(truths):
        for q in range(DETR_QUERIES):
            if q < NUM_CLASSES and q in truth:
                stats.dets += 1
                p = prob[b, q, q]
                stats.min_detr_prob = min(stats.min_detr_prob, float(p))
                expect(p > 0.9 and prob[b, q].argmax() == q, f"{what}[{b}] query {q}: prob {prob[b, q]}")
                cx, cy, w, h = boxes[b, q] * 640
                xyxy = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                gt_box, gt_mask = truth[q]
                stats.box(xyxy, gt_box, tol, f"{what}[{b}] query {q}")
                if check_masks:
                    pm = crop(upsample_bilinear4(1 / (1 + np.exp(-masks[b, q]))) > 0.5, xyxy)
                    stats.mask(pm, gt_mask, f"{what}[{b}] query {q}")
            else:
                expect(prob[b, q].argmax() == NUM_CLASSES and prob[b, q, NUM_CLASSES] > 0.99,
                       f"{what}[{b}] query {q}: no-object not dominant: {prob[b, q]}")
                expect(np.all(boxes[b, q] == 0), f"{what}[{b}] query {q}: box not zero")
                expect(np.all(masks[b, q] < 0), f"{what}[{b}] query {q}: mask not empty")


def crop_resize(img, box, size):
    """Bilinear stretch of frame region box = (x0, y0, x1, y1) to size x size, the math of
    src/preprocess.rs with a crop transform (scale = size / w, pad = -x0 * scale)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box

    def taps(lo, hi, n):
        s = size / (hi - lo)
        c = (np.arange(size) + 0.5 + lo * s) / s - 0.5
        c = np.clip(c, 0, n - 1)
        i0 = np.floor(c).astype(int)
        return i0, np.minimum(i0 + 1, n - 1), (c - i0)

    xi0, xi1, fx = taps(x0, x1, w)
    yi0, yi1, fy = taps(y0, y1, h)
    f = img.astype(np.float32)
    top = f[yi0][:, xi0] * (1 - fx)[None, :, None] + f[yi0][:, xi1] * fx[None, :, None]
    bot = f[yi1][:, xi0] * (1 - fx)[None, :, None] + f[yi1][:, xi1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def true_keypoints(mask, cell=1.0):
    """Frame-pixel truth of KEYPOINT_NAMES for one object mask; `cell` = frame pixels per model
    pixel (the top point's x is the mean over the topmost `cell` rows, what one crop row sees)."""
    ys, xs = np.nonzero(mask)
    top = ys.min()
    return np.array([[xs.mean() + 0.5, ys.mean() + 0.5], [xs[ys < top + max(cell, 1.0)].mean() + 0.5, top],
                     [xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float64)


def check_depth(sess):
    """Letterboxed scenes at DEPTH_SIZE: the depth of every pixel against the class truth."""
    frames, truths, lines = [], [], []
    for (w, h, objs) in SCENES:
        img, masks = render(w, h, objs)
        canvas, s, px, py = letterbox(img, DEPTH_SIZE)
        frames.append(canvas.transpose(2, 0, 1).astype(np.float32) / 255.0)
        truth = np.full((DEPTH_SIZE, DEPTH_SIZE), DEPTH_BACKGROUND, np.float32)
        for c, mk in masks.items():
            truth[true_model_mask(mk, s, px, py, DEPTH_SIZE)] = DEPTH_OF_CLASS[c]
        truths.append(truth)
    x = np.stack(frames)
    worst = 1.0
    for bs in (1, 3, len(SCENES)):
        depth = sess.run(None, {"images": x[:bs]})[0]
        expect(depth.shape == (bs, 1, DEPTH_SIZE, DEPTH_SIZE), f"shapes-depth: output {depth.shape}")
        check_finite({"depth": depth}, "shapes-depth")
        for b in range(bs):
            agree = float(np.mean(np.abs(depth[b, 0] - truths[b]) < 1e-4))
            worst = min(worst, agree)
            expect(agree > 0.995, f"shapes-depth batch{bs}[{b}]: {agree:.4f} of the pixels match the truth")
    lines.append(f"  clean         shapes-depth.onnx      min share of exact pixels {worst:.4f}")
    return lines


def check_landmarks(sess):
    """Crops of the true boxes of every scene object: centroid within 0.25 and the other
    keypoints within 1.5 crop pixels of the full-resolution truth, colour share of the true
    class > 0.95."""
    crops, truths = [], []
    for (w, h, objs) in SCENES:
        img, masks = render(w, h, objs)
        for c, mk in masks.items():
            ys, xs = np.nonzero(mk)
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            crops.append(crop_resize(img, box, CROP_SIZE).transpose(2, 0, 1) / 255.0)
            cell = max(box[2] - box[0], box[3] - box[1]) / CROP_SIZE  # one crop pixel in frame pixels
            truths.append((c, box, cell, true_keypoints(mk, cell)))
    x = np.stack(crops).astype(np.float32)
    kp, colors = sess.run(None, {"crops": x})
    expect(kp.shape == (len(crops), len(KEYPOINT_NAMES), 2), f"shapes-landmarks: keypoints {kp.shape}")
    expect(colors.shape == (len(crops), NUM_CLASSES), f"shapes-landmarks: colors {colors.shape}")
    worst_err, worst_share = 0.0, 1.0
    for i, (c, box, cell, truth) in enumerate(truths):
        x0, y0, x1, y1 = box
        frame_kp = np.stack([x0 + kp[i, :, 0] * (x1 - x0), y0 + kp[i, :, 1] * (y1 - y0)], 1)
        err = float(np.max(np.abs(frame_kp - truth)) / cell)
        worst_err = max(worst_err, err)
        centroid_err = float(np.max(np.abs(frame_kp[0] - truth[0])) / cell)
        expect(centroid_err <= 0.25, f"shapes-landmarks crop {i}: centroid off by {centroid_err:.2f} crop pixels")
        # Sharp vertices can lose their last crop pixel to the bilinear resampling, and the
        # top point of a slanted edge is the mean of one crop row (several frame rows).
        expect(err <= 1.5, f"shapes-landmarks crop {i} (class {c}): keypoints {np.round(frame_kp, 1)} vs "
                           f"truth {np.round(truth, 1)} ({err:.2f} crop pixels)")
        worst_share = min(worst_share, float(colors[i, c]))
        expect(colors[i].argmax() == c and colors[i, c] > 0.95, f"shapes-landmarks crop {i}: colors {colors[i]}")
    blank = np.full((2, 3, CROP_SIZE, CROP_SIZE), BACKGROUND[0] / 255, np.float32)
    kp, colors = sess.run(None, {"crops": blank})
    expect(np.all(kp == 0) and np.all(colors == 0), "shapes-landmarks: background crop not all zero")
    return [f"  clean         shapes-landmarks.onnx  crops={len(crops)} max_keypoint_err={worst_err:.2f} crop px "
            f"min_true_colour_share={worst_share:.3f}"]


def check(out):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sessions = {}
    for fname, (kind, size) in MODELS.items():
        path = os.path.join(out, fname)
        expect(os.path.exists(path), f"missing {path}; run without --check first")
        onnx.checker.check_model(onnx.load(path), full_check=True)
        sessions[fname] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        ishape = sessions[fname].get_inputs()[0].shape
        expect(ishape == ["batch", 3, size, size], f"{fname}: input shape {ishape}")

    # bad-shape: correct declared input, runs at 320
    bad = sessions["bad-shape.onnx"]
    o = bad.run(None, {"images": np.zeros((2, 3, 320, 320), np.float32)})[0]
    expect(o.shape == (2, 8, 2100) and np.all(o == 0), f"bad-shape.onnx: output {o.shape}")

    lines = []
    for fname in EXTRA_MODELS:
        path = os.path.join(out, fname)
        expect(os.path.exists(path), f"missing {path}; run without --check first")
        onnx.checker.check_model(onnx.load(path), full_check=True)
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        lines += check_depth(sess) if fname == "shapes-depth.onnx" else check_landmarks(sess)
    variants = [("clean", None, 1.5, True), ("yuv420", "yuv", 2.0, True), ("yuv420+blur2", "yuv+blur", 2.0, True)]
    for vname, degrade, tol, masks_on in variants:
        frames, truths = make_frames(degrade)
        # padding-only frame and an all-pad frame must not detect anything
        for fname, (kind, size) in MODELS.items():
            if fname == "bad-shape.onnx":
                continue
            sess = sessions[fname]
            names = [o.name for o in sess.get_outputs()]
            stats = Stats()
            for bs in (1, 3, 8):
                x = frames[:bs]
                outs = dict(zip(names, sess.run(None, {"images": x})))
                what = f"{fname} {vname} batch{bs}"
                check_finite(outs, what)
                for n, t in outs.items():
                    expect(t.shape[0] == bs, f"{what}: {n} batch dim {t.shape}")
                if kind == "detr":
                    check_detr(outs, truths[:bs], stats, tol, what, masks_on)
                else:
                    check_yolo(outs, truths[:bs], stats, tol, kind == "yolo-seg", what, masks_on)
            # all-padding and all-background frames
            blank = np.stack([np.full((3, 640, 640), PAD_VALUE / 255, np.float32),
                              np.full((3, 640, 640), BACKGROUND[0] / 255, np.float32)])
            outs = dict(zip(names, sess.run(None, {"images": blank})))
            check_finite(outs, f"{fname} blank")
            if kind == "detr":
                check_detr(outs, [{}, {}], stats, tol, f"{fname} blank")
            else:
                check_yolo(outs, [{}, {}], stats, tol, kind == "yolo-seg", f"{fname} blank")
            line = f"  {vname:13s} {fname:22s} dets={stats.dets:3d} max_box_err={stats.max_box_err:.2f}px"
            if kind != "yolo" and masks_on:
                line += f" min_mask_iou={stats.min_mask_iou:.3f}"
            if kind == "detr":
                line += f" min_true_prob={stats.min_detr_prob:.4f}"
            lines.append(line)

    # timing: batch of 8
    frames, _ = make_frames(None)
    x8 = frames[:8]
    timings = []
    for fname in ("shapes-yolo.onnx", "shapes-yolo-seg.onnx", "shapes-detr.onnx"):
        sess = sessions[fname]
        for _ in range(3):
            sess.run(None, {"images": x8})
        ts = []
        for _ in range(15):
            t0 = time.perf_counter()
            sess.run(None, {"images": x8})
            ts.append(time.perf_counter() - t0)
        timings.append(f"  {fname:22s} batch8 median {np.median(ts) * 1e3:6.1f} ms  (min {min(ts) * 1e3:.1f} ms)")

    print("self-test: scenes=%d (640x480, 1920x1080, 1280x720, 480x640, 640x640, 1280x960), "
          "batches 1/3/8, ORT %s CPU" % (len(SCENES), ort.__version__))
    print("\n".join(lines))
    print("  bad-shape.onnx         input [batch,3,320,320] output0 [batch,8,2100] ok")
    print("timing (ORT CPU, %d threads default):" % os.cpu_count())
    print("\n".join(timings))
    print("SELF-TEST PASSED")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
    ap.add_argument("--check", action="store_true", help="run the self-test on already generated models")
    ap.add_argument("--yolo11", action="store_true",
                    help="also write (or with --check: run) the random-weight YOLO11n and YOLO11n-seg models")
    args = ap.parse_args()
    if args.yolo11:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import yolo11
    if args.check:
        try:
            check(args.out)
        except CheckError as e:
            print(f"SELF-TEST FAILED: {e}", file=sys.stderr)
            sys.exit(1)
        if args.yolo11:
            try:
                lines = yolo11.check(args.out, iters=0)
            except yolo11.CheckError as e:
                print(f"YOLO11 CHECK FAILED: {e}", file=sys.stderr)
                sys.exit(1)
            print("yolo11 check (ONNX Runtime CPU):")
            print("\n".join(lines))
    else:
        generate(args.out)
        if args.yolo11:
            for path, meta in yolo11.generate(args.out):
                print(f"wrote {path} ({os.path.getsize(path)} bytes, random weights, "
                      f"{int(meta['params']):,} params, {meta['gflops']} GFLOPs)")


if __name__ == "__main__":
    main()
