#!/usr/bin/env python3
"""Generate SAM3-shaped prompt-conditioned segmentation test models (encoder + decoder).

Like generate_models.py, the graphs are built by hand with the ``onnx`` helper API (no
torch, no training). Two encoder/decoder pairs share SAM3's tensor names and layout:

  encoder  image [F,3,S,S] -> fpn_0 [F,256,a,a], fpn_1 [F,256,a/2,a/2], fpn_2 [F,256,a/4,a/4]
  decoder  fpn_0, fpn_1, fpn_2, prompt_features [F,P,256], prompt_mask [F,P] (float, 1 = token)
           -> pred_boxes [F,Q,4]  normalised cx, cy, w, h (fractions of the input size S)
              pred_logits [F,Q], presence_logits [F,1], pred_masks [F,Q,M,M] (mask logits
              covering the whole S x S input)

Score of query q = sigmoid(presence_logits) * sigmoid(pred_logits[q]).

promptseg-tiny (S=512, a=128, Q=8, P=4, M=256): exact on the synthetic scene of
trtscenesrc. The encoder computes per-pixel membership of the four class colours (same
thresholds as the shapes models, red also needs g <= 0.30) and packs it into fpn_0 channels 0..63 (SpaceToDepth 4x4);
the decoder reads the class embedding from the prompt (masked mean of the valid tokens,
projected on the four class embeddings), segments that class and reports:
  query 0: the object (box of its pixels, logit 10*clip(area/32,0,1)-5), mask logit
           16*(avgpool2(membership)-0.5);
  query 1: a duplicate, box grown by 2 px per side, logit 5.5 lower (score 0.38);
  queries 2..7: no object (logit -10, zero box, mask logit -8).
presence_logits = +10 when the class is in the image, -10 otherwise.

promptseg-full (S=1008, a=288, Q=200, P=32, M=288): tensor sizes of SAM3 for benchmarks;
cheap arithmetic (resize + 1x1 conv encoder, a rank-1 mask decoder), 5 active queries
per frame and prompt.

Prompt feature files (what the text encoder produced offline, one pair per class):
  <stem>.features.npy  float32 [1, P, 256]
  <stem>.mask.npy      float32 [1, P] (1 = valid token, 0 = padding; bool/int also read)

Usage:
    python3 engines/generate_promptseg_models.py --out engines/models
    python3 engines/generate_promptseg_models.py --out engines/models --check
"""

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_models as gm  # noqa: E402  (shared graph builder and scene renderer)

D = 256
TINY = dict(S=512, a=128, Q=8, P=4, M=256)
FULL = dict(S=1008, a=288, Q=200, P=32, M=288)
AREA_FULL = 32.0
FULL_ACTIVE = 5
# Class embeddings of the tiny decoder: 4 orthonormal 256-d vectors (seeded).
_rng = np.random.default_rng(2026)
CLASS_EMBED = np.linalg.qr(_rng.standard_normal((D, gm.NUM_CLASSES)))[0].astype(np.float32)  # [256,4]


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def finish(g, name, inputs, outputs, doc):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", gm.OPSET)],
                              producer_name="gst-trtvision/engines/generate_promptseg_models.py")
    model.ir_version = gm.IR_VERSION
    model.doc_string = doc
    return model


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def fpn_outputs(a):
    return [vi("fpn_0", ["F", D, a, a]), vi("fpn_1", ["F", D, a // 2, a // 2]),
            vi("fpn_2", ["F", D, a // 4, a // 4])]


def decoder_inputs(a, P):
    return fpn_outputs(a) + [vi("prompt_features", ["F", P, D]), vi("prompt_mask", ["F", P])]


def decoder_outputs(Q, M):
    return [vi("pred_boxes", ["F", Q, 4]), vi("pred_logits", ["F", Q]),
            vi("presence_logits", ["F", 1]), vi("pred_masks", ["F", Q, M, M])]


def pyramid(g, fpn0):
    f1 = g.op("AveragePool", [fpn0], out_names=["fpn_1"], kernel_shape=[2, 2], strides=[2, 2])
    g.op("AveragePool", [f1], out_names=["fpn_2"], kernel_shape=[2, 2], strides=[2, 2])


def pooled_prompt(g):
    """Masked mean of the prompt tokens: [F,1,256]."""
    w = g.op("Unsqueeze", ["prompt_mask", g.const([1], np.int64)])  # [F,1,P]
    n = g.op("Max", [g.op("ReduceSum", [w, g.const([2], np.int64)], keepdims=1), g.const(1e-6)])
    return g.op("MatMul", [g.op("Div", [w, n]), "prompt_features"], "pooled")  # [F,1,256]


# --------------------------------------------------------------------------
# tiny
# --------------------------------------------------------------------------
def tiny_encoder():
    S = TINY["S"]
    g = gm.G()
    # Membership as in generate_models.build_core, except that red also needs g <= 0.30:
    # along yellow edges 4:2:0 chroma on a darker luma reads (0.52, 0.44, 0) otherwise.
    shp = g.const([0, 3, S * S], np.int64)
    q = g.op("Reshape", [g.op("HardSigmoid", ["image"], alpha=20.0, beta=-9.0), shp], "q")
    q_lo = g.op("Reshape", [g.op("HardSigmoid", ["image"], alpha=20.0, beta=-6.0), shp], "q_lo")
    w_hi = np.array([[1, 0, -1], [-1, 1, -1], [-1, -1, 1], [0.5, 0.5, -0.5]], np.float32)
    w_lo = np.array([[0, -1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)
    t = g.op("Add", [g.op("MatMul", [g.const(w_hi), q]), g.op("MatMul", [g.const(w_lo), q_lo])])
    m = g.op("HardSigmoid", [t], alpha=1000.0, beta=-999.0)
    m = g.op("Reshape", [m, g.const([0, gm.NUM_CLASSES, S, S], np.int64)], "m")
    s2d = g.op("SpaceToDepth", [m], "s2d", blocksize=4)  # [F,64,a,a]
    g.op("Pad", [s2d, g.const([0, 0, 0, 0, 0, D - 16 * gm.NUM_CLASSES, 0, 0], np.int64)],
         out_names=["fpn_0"])
    pyramid(g, "fpn_0")
    return finish(g, "promptseg_tiny_encoder", [vi("image", ["F", 3, S, S])], fpn_outputs(TINY["a"]),
                  "Synthetic SAM3-shaped image encoder: class-colour membership packed in fpn_0 channels 0..63.")


def tiny_decoder():
    S, a, Q, P, M = (TINY[k] for k in "SaQPM")
    g = gm.G()
    zero, one = g.const(0.0), g.const(1.0)
    ch = g.op("Slice", ["fpn_0", g.const([0], np.int64), g.const([16 * gm.NUM_CLASSES], np.int64),
                        g.const([1], np.int64)])
    m = g.op("DepthToSpace", [ch], "m", blocksize=4, mode="DCR")  # [F,4,S,S]
    # fpn_1 / fpn_2 feed a zero-weighted term so that the decoder really consumes them.
    ctx = g.op("Add", [g.op("ReduceMean", ["fpn_1"], axes=[1, 2, 3], keepdims=0),
                       g.op("ReduceMean", ["fpn_2"], axes=[1, 2, 3], keepdims=0)])
    ctx = g.op("Mul", [ctx, zero])  # [F]
    sel = g.op("MatMul", [pooled_prompt(g), g.const(CLASS_EMBED)])  # [F,1,4]
    sel = g.op("Clip", [sel, zero, one])
    ms = g.op("MatMul", [sel, g.op("Reshape", [m, g.const([0, gm.NUM_CLASSES, S * S], np.int64)])])
    ms = g.op("Reshape", [ms, g.const([0, 1, S, S], np.int64)], "ms")  # [F,1,S,S]

    colcnt = g.op("ReduceSum", [ms, g.const([2], np.int64)], keepdims=0)  # [F,1,S]
    rowocc = g.op("ReduceMax", [ms], axes=[3], keepdims=0)  # [F,1,S]
    area = g.op("ReduceSum", [colcnt, g.const([2], np.int64)], keepdims=0)  # [F,1]
    coord = g.const(np.arange(S, dtype=np.float32))

    def extent(occ):
        lo = g.op("ReduceMin", [g.op("Where", [occ, coord, g.const(1e4)])], axes=[2], keepdims=0)
        hi = g.op("ReduceMax", [g.op("Where", [occ, coord, g.const(-1.0)])], axes=[2], keepdims=0)
        return lo, g.op("Add", [hi, one])

    x0, x1 = extent(g.op("Greater", [colcnt, g.const(0.5)]))
    y0, y1 = extent(g.op("Greater", [rowocc, g.const(0.5)]))
    present = g.op("Greater", [area, g.const(0.5)])  # [F,1]
    presf = g.op("Cast", [present], to=TensorProto.FLOAT)

    def masked(v):
        return g.op("Where", [present, v, zero])

    half = g.const(0.5)
    cx = masked(g.op("Mul", [g.op("Add", [x0, x1]), half]))
    cy = masked(g.op("Mul", [g.op("Add", [y0, y1]), half]))
    w = masked(g.op("Sub", [x1, x0]))
    h = masked(g.op("Sub", [y1, y0]))
    box = g.op("Concat", [cx, cy, w, h], axis=1)  # [F,4] model pixels
    box = g.op("Div", [g.op("Unsqueeze", [box, g.const([1], np.int64)]), g.const(float(S))])  # [F,1,4]
    keep = np.zeros((1, Q, 1), np.float32)
    keep[0, :2, 0] = 1.0
    grow = np.zeros((1, Q, 4), np.float32)
    grow[0, 1, 2:] = 4.0 / S
    growth = g.op("Mul", [g.op("Unsqueeze", [presf, g.const([2], np.int64)]), g.const(grow)])
    g.op("Add", [g.op("Mul", [box, g.const(keep)]), growth], out_names=["pred_boxes"])

    pres = g.op("Clip", [g.op("Div", [area, g.const(AREA_FULL)]), zero, one])  # [F,1]
    la = np.zeros((1, Q), np.float32)
    lc = np.full((1, Q), -10.0, np.float32)
    la[0, :2] = 10.0
    lc[0, 0], lc[0, 1] = -5.0, -10.5
    logits = g.op("Add", [g.op("Mul", [pres, g.const(la)]), g.const(lc)])
    g.op("Add", [logits, g.op("Unsqueeze", [ctx, g.const([1], np.int64)])], out_names=["pred_logits"])
    g.op("Sub", [g.op("Mul", [presf, g.const(20.0)]), g.const(10.0)], out_names=["presence_logits"])

    ml = g.op("AveragePool", [ms], kernel_shape=[S // M] * 2, strides=[S // M] * 2)  # [F,1,M,M]
    ml = g.op("Mul", [g.op("Sub", [ml, half]), g.const(16.0)])
    ma = np.zeros((1, Q, 1, 1), np.float32)
    ma[0, :2] = 1.0
    mc = np.full((1, Q, 1, 1), -8.0, np.float32)
    mc[0, :2] = 0.0
    g.op("Add", [g.op("Mul", [ml, g.const(ma)]), g.const(mc)], out_names=["pred_masks"])
    return finish(g, "promptseg_tiny_decoder", decoder_inputs(a, P), decoder_outputs(Q, M),
                  "Synthetic SAM3-shaped decoder: segments the class named by the prompt embedding.")


def tiny_prompt(c, seed):
    """Token 0 = class embedding; tokens 1..P-1 = random padding (mask 0)."""
    P = TINY["P"]
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((1, P, D)).astype(np.float32)
    feats[0, 0] = CLASS_EMBED[:, c]
    mask = np.zeros((1, P), np.float32)
    mask[0, 0] = 1.0
    return feats, mask


# --------------------------------------------------------------------------
# full-size-shaped
# --------------------------------------------------------------------------
def full_encoder():
    S, a = FULL["S"], FULL["a"]
    g = gm.G()
    rng = np.random.default_rng(7)
    bdim = g.op("Shape", ["image"], end=1)
    sizes = g.op("Concat", [bdim, g.const([3, a, a], np.int64)], axis=0)
    small = g.op("Resize", ["image", "", "", sizes], "small", mode="linear")
    wconv = (rng.standard_normal((D, 3, 1, 1)) * 0.5).astype(np.float32)
    bconv = (rng.standard_normal(D) * 0.1).astype(np.float32)
    g.op("Conv", [small, g.const(wconv), g.const(bconv)], out_names=["fpn_0"])
    pyramid(g, "fpn_0")
    return finish(g, "promptseg_full_encoder", [vi("image", ["F", 3, S, S])], fpn_outputs(a),
                  "SAM3-sized image encoder for benchmarks (tensor sizes real, compute cheap).")


def full_decoder():
    a, Q, P, M = (FULL[k] for k in "aQPM")
    g = gm.G()
    rng = np.random.default_rng(11)
    pooled = g.op("Reshape", [pooled_prompt(g), g.const([0, D], np.int64)])  # [F,256]
    g1 = g.op("ReduceMean", ["fpn_1"], axes=[2, 3], keepdims=0)
    g2 = g.op("ReduceMean", ["fpn_2"], axes=[2, 3], keepdims=0)
    feat = g.op("Add", [g.op("Add", [g1, g2]), pooled])  # [F,256]

    def proj(x, n, scale):
        return g.op("MatMul", [x, g.const((rng.standard_normal((D, n)) * scale).astype(np.float32))])

    qv = proj(pooled, Q, 0.05)  # [F,Q]
    bias = np.full((1, Q), -6.0, np.float32)
    bias[0, :FULL_ACTIVE] = 4.0
    g.op("Add", [g.op("Mul", [proj(feat, Q, 0.05), g.const(0.1)]), g.const(bias)], out_names=["pred_logits"])
    g.op("Add", [g.op("Mul", [proj(feat, 1, 0.05), g.const(0.1)]), g.const(4.0)],
         out_names=["presence_logits"])
    b = g.op("Sigmoid", [g.op("Reshape", [proj(feat, 4 * Q, 0.2), g.const([0, Q, 4], np.int64)])])
    g.op("Add", [g.op("Mul", [b, g.const(np.array([0.8, 0.8, 0.1, 0.1], np.float32))]),
                 g.const(np.array([0.1, 0.1, 0.05, 0.05], np.float32))], out_names=["pred_boxes"])
    pix = g.op("ReduceMean", ["fpn_0"], axes=[1], keepdims=1)  # [F,1,a,a]
    qs = g.op("Unsqueeze", [qv, g.const([2, 3], np.int64)])  # [F,Q,1,1]
    mb = (rng.standard_normal((1, Q, 1, 1)) * 0.5).astype(np.float32)
    g.op("Add", [g.op("Mul", [pix, qs]), g.const(mb)], out_names=["pred_masks"])
    assert M == a
    return finish(g, "promptseg_full_decoder", decoder_inputs(a, P), decoder_outputs(Q, M),
                  "SAM3-sized decoder for benchmarks (tensor sizes real, compute cheap).")


def full_prompt(c):
    P = FULL["P"]
    rng = np.random.default_rng(100 + c)
    feats = rng.standard_normal((1, P, D)).astype(np.float32)
    n = 3 + 2 * c  # tokens of the class name
    mask = np.zeros((1, P), np.float32)
    mask[0, :n] = 1.0
    return feats, mask


# --------------------------------------------------------------------------
def write_prompt(out, stem, feats, mask):
    np.save(os.path.join(out, f"{stem}.features.npy"), feats)
    np.save(os.path.join(out, f"{stem}.mask.npy"), mask)


def generate(out, full=True):
    os.makedirs(out, exist_ok=True)
    save(tiny_encoder(), os.path.join(out, "promptseg-tiny-encoder.onnx"))
    save(tiny_decoder(), os.path.join(out, "promptseg-tiny-decoder.onnx"))
    for c, label in enumerate(gm.LABELS):
        write_prompt(out, f"promptseg-tiny-{label}", *tiny_prompt(c, 50 + c))
    # A prompt of the wrong width, for the config error tests.
    write_prompt(out, "promptseg-bad-width", np.zeros((1, TINY["P"], 128), np.float32),
                 np.ones((1, TINY["P"]), np.float32))
    if full:
        save(full_encoder(), os.path.join(out, "promptseg-full-encoder.onnx"))
        save(full_decoder(), os.path.join(out, "promptseg-full-decoder.onnx"))
        for c, label in enumerate(gm.LABELS):
            write_prompt(out, f"promptseg-full-{label}", *full_prompt(c))


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------
# Sources whose letterbox to 512 is an integer downscale (what gm.letterbox renders exactly).
SCENES = [
    (512, 384, {0: ("rect", 30, 50, 160, 140), 1: ("ellipse", 340.0, 120.0, 70.0, 50.0),
                2: ("tri", (80, 350), (210, 210), (260, 340)), 3: ("rect", 360, 240, 480, 370)}),
    (1536, 1152, {0: ("ellipse", 500.0, 400.0, 240.0, 160.0), 2: ("rect", 1040, 160, 1440, 720)}),
    (1024, 576, {3: ("tri", (80, 520), (320, 80), (560, 520)), 1: ("rect", 800, 0, 1024, 240)}),
    (512, 384, {}),
    (2048, 1536, {0: ("rect", 100, 100, 180, 180), 1: ("ellipse", 900.0, 700.0, 48.0, 40.0),
                  2: ("rect", 1500, 900, 1900, 1400), 3: ("ellipse", 1500.0, 300.0, 250.0, 150.0)}),
    (384, 512, {2: ("ellipse", 190.0, 250.0, 120.0, 200.0), 0: ("rect", 8, 8, 80, 48)}),
    (512, 512, {0: ("tri", (16, 16), (240, 32), (48, 240)), 1: ("rect", 264, 16, 496, 160),
                2: ("ellipse", 128.0, 384.0, 96.0, 80.0), 3: ("rect", 320, 320, 352, 350)}),
    (1024, 768, {1: ("ellipse", 512.0, 384.0, 320.0, 240.0)}),
]


def upsample_bilinear(x, k):
    """[h, w] -> [k*h, k*w], half-pixel centres, edge clamp (what masks.rs samples)."""
    h, w = x.shape

    def coords(n):
        c = np.clip((np.arange(k * n) + 0.5) / k - 0.5, 0, n - 1)
        i0 = np.floor(c).astype(int)
        return i0, np.minimum(i0 + 1, n - 1), c - i0

    y0, y1, fy = coords(h)
    x0, x1, fx = coords(w)
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bot = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def load_prompt(out, stem):
    return (np.load(os.path.join(out, f"{stem}.features.npy")), np.load(os.path.join(out, f"{stem}.mask.npy")))


def check(out, full=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3

    def sess(name):
        path = os.path.join(out, name)
        gm.expect(os.path.exists(path), f"missing {path}; run without --check first")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    S, Q, M = TINY["S"], TINY["Q"], TINY["M"]
    enc, dec = sess("promptseg-tiny-encoder.onnx"), sess("promptseg-tiny-decoder.onnx")
    dec_names = [o.name for o in dec.get_outputs()]
    frames, truths = [], []
    for (w, h, objs) in SCENES:
        img, masks = gm.render(w, h, objs)
        canvas, s, px, py = gm.letterbox(img, S)
        frames.append(canvas.transpose(2, 0, 1).astype(np.float32) / 255.0)
        truths.append({c: (gm.true_box(mk, s, px, py), gm.true_model_mask(mk, s, px, py, S))
                       for c, mk in masks.items()})
    x = np.stack(frames)
    F = len(frames)
    fpn = enc.run(None, {"image": x})
    gm.expect([t.shape for t in fpn] == [(F, D, 128, 128), (F, D, 64, 64), (F, D, 32, 32)],
              f"encoder shapes {[t.shape for t in fpn]}")
    stats = gm.Stats()
    for c, label in enumerate(gm.LABELS):
        feats, mask = load_prompt(out, f"promptseg-tiny-{label}")
        pf, pm = np.repeat(feats, F, 0), np.repeat(mask, F, 0)
        inputs = {"fpn_0": fpn[0], "fpn_1": fpn[1], "fpn_2": fpn[2], "prompt_features": pf, "prompt_mask": pm}
        o = dict(zip(dec_names, dec.run(None, inputs)))
        gm.check_finite(o, f"class {label}")
        gm.expect(o["pred_masks"].shape == (F, Q, M, M), f"mask shape {o['pred_masks'].shape}")
        score = sigmoid(o["presence_logits"]) * sigmoid(o["pred_logits"])  # [F,Q]
        for b in range(F):
            what = f"tiny class {label} frame {b}"
            if c in truths[b]:
                stats.dets += 1
                gm.expect(score[b, 0] > 0.95 and 0.3 < score[b, 1] < 0.5 and np.all(score[b, 2:] < 1e-3),
                          f"{what}: scores {score[b]}")
                cx, cy, bw, bh = o["pred_boxes"][b, 0] * S
                xyxy = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
                gt_box, gt_mask = truths[b][c]
                stats.box(xyxy, gt_box, 1.5, what)
                up = upsample_bilinear(o["pred_masks"][b, 0], S // M) > 0
                stats.mask(gm.crop(up, xyxy), gt_mask, what)
            else:
                gm.expect(np.all(score[b] < 1e-3), f"{what}: absent class scores {score[b]}")
        # The padding tokens are ignored: other padding features, same outputs.
        pf2 = pf.copy()
        pf2[:, 1:] = 7.0
        o2 = dec.run(None, dict(inputs, prompt_features=pf2))
        gm.expect(all(np.array_equal(u, v) for u, v in zip(o2, o.values())), f"class {label}: padding changes outputs")
        # Batch 1 gives the rows of batch F.
        o1 = dec.run(None, {k: v[2:3] for k, v in inputs.items()})
        gm.expect(all(np.array_equal(u[0], v[2]) for u, v in zip(o1, o.values())), f"class {label}: batch 1 differs")
    print(f"tiny: {F} frames x 4 prompts, dets={stats.dets} max_box_err={stats.max_box_err:.2f}px "
          f"min_mask_iou={stats.min_mask_iou:.3f}")

    if full:
        S, a, Q, P = (FULL[k] for k in "SaQP")
        enc, dec = sess("promptseg-full-encoder.onnx"), sess("promptseg-full-decoder.onnx")
        rng = np.random.default_rng(1)
        x = rng.random((2, 3, S, S), dtype=np.float32)
        t0 = time.perf_counter()
        fpn = enc.run(None, {"image": x})
        t1 = time.perf_counter()
        gm.expect([t.shape for t in fpn] == [(2, D, a, a), (2, D, a // 2, a // 2), (2, D, a // 4, a // 4)],
                  f"full encoder shapes {[t.shape for t in fpn]}")
        feats, mask = load_prompt(out, "promptseg-full-red")
        gm.expect(feats.shape == (1, P, D) and mask.shape == (1, P), f"full prompt {feats.shape} {mask.shape}")
        o = dec.run(None, {"fpn_0": fpn[0], "fpn_1": fpn[1], "fpn_2": fpn[2],
                           "prompt_features": np.repeat(feats, 2, 0), "prompt_mask": np.repeat(mask, 2, 0)})
        t2 = time.perf_counter()
        gm.expect([t.shape for t in o] == [(2, Q, 4), (2, Q), (2, 1), (2, Q, a, a)], f"full decoder {[t.shape for t in o]}")
        score = sigmoid(o[2]) * sigmoid(o[1])
        active = (score > 0.5).sum(1)
        gm.expect(np.all(active == FULL_ACTIVE), f"full: active queries per frame {active}")
        print(f"full: encoder batch 2 {1e3 * (t1 - t0):.0f} ms, decoder batch 2 {1e3 * (t2 - t1):.0f} ms, "
              f"{FULL_ACTIVE} active queries per frame")
    print("SELF-TEST PASSED")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
    ap.add_argument("--check", action="store_true", help="run the self-test on already generated models")
    ap.add_argument("--tiny-only", action="store_true", help="skip the full-size-shaped benchmark pair")
    args = ap.parse_args()
    if args.check:
        try:
            check(args.out, not args.tiny_only)
        except gm.CheckError as e:
            print(f"SELF-TEST FAILED: {e}", file=sys.stderr)
            sys.exit(1)
    else:
        generate(args.out, not args.tiny_only)


if __name__ == "__main__":
    main()
