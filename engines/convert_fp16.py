#!/usr/bin/env python3
"""Convert an FP32 ONNX model to FP16 for the native TensorRT backend.

TensorRT 11 builds strongly typed engines only: the builder precision flags of TensorRT 10
(``BuilderFlag::kFP16``) are gone and every tensor keeps the type the ONNX model gives it.
An FP16 engine therefore needs an FP16 ONNX model. This script writes one:

    python3 engines/convert_fp16.py models/yolo.onnx models/yolo-fp16.onnx

By default the model inputs and outputs stay FP32 (a Cast is inserted after each input and
before each output), so the element configuration (input/output types) does not change;
``--fp16-io`` makes them FP16 as well (then set the input type to f16 in the model config).

Implementation: ``onnxconverter_common.float16.convert_float_to_float16`` when the package
``onnxconverter-common`` is installed (``pip install onnxconverter-common``), otherwise a
built-in converter using only ``onnx`` and ``numpy``: float initializers and constants become
float16 (values clipped to the float16 range), Casts to float become Casts to float16, and
inputs that ONNX defines as float32-only (Resize/Upsample scales, NonMaxSuppression inputs)
get a Cast back to float32. ``--builtin`` forces the built-in converter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit(f"convert_fp16.py needs the 'onnx' and 'numpy' packages ({exc}); pip install onnx numpy")

FP16_MAX = float(np.finfo(np.float16).max)
FP16_TINY = float(np.finfo(np.float16).tiny)

# (op_type, input index) pairs that ONNX types as float32 only: they are fed through a Cast.
FLOAT32_ONLY_INPUTS = {
    ("Resize", 2),  # scales
    ("Upsample", 1),  # scales
    ("NonMaxSuppression", 0),  # boxes
    ("NonMaxSuppression", 1),  # scores
    ("NonMaxSuppression", 3),  # iou_threshold
    ("NonMaxSuppression", 4),  # score_threshold
}


def _to_fp16_array(arr: np.ndarray) -> np.ndarray:
    """float32 -> float16 with values clipped to the float16 range (no inf) and tiny
    magnitudes kept at the smallest normal value instead of flushing to zero."""
    arr = arr.astype(np.float32)
    sign = np.sign(arr)
    mag = np.abs(arr)
    mag = np.where((mag > 0) & (mag < FP16_TINY), FP16_TINY, mag)
    mag = np.minimum(mag, FP16_MAX)
    return (sign * mag).astype(np.float16)


def _convert_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    if t.data_type != TensorProto.FLOAT:
        return t
    arr = numpy_helper.to_array(t)
    new = numpy_helper.from_array(_to_fp16_array(arr), t.name)
    return new


def _convert_value_info(vi: onnx.ValueInfoProto) -> None:
    tt = vi.type.tensor_type
    if tt.elem_type == TensorProto.FLOAT:
        tt.elem_type = TensorProto.FLOAT16


def _convert_graph(graph: onnx.GraphProto, keep_io_types: bool, top_level: bool, counter: list) -> None:
    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__fp16conv{counter[0]}"

    # Initializers and Constant nodes.
    for i, init in enumerate(list(graph.initializer)):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[i].CopyFrom(_convert_tensor(init))
    new_nodes = []
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_convert_tensor(attr.t))
            elif attr.type == onnx.AttributeProto.GRAPH:
                _convert_graph(attr.g, keep_io_types=False, top_level=False, counter=counter)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _convert_graph(g, keep_io_types=False, top_level=False, counter=counter)
            elif node.op_type in ("Cast", "CastLike") and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif node.op_type in ("EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike",
                                  "RandomUniformLike", "Multinomial") and attr.name == "dtype" \
                    and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
        # Float32-only inputs get a Cast back to float32.
        for idx, name in enumerate(node.input):
            if name and (node.op_type, idx) in FLOAT32_ONLY_INPUTS:
                cast_out = fresh(name + "_fp32")
                new_nodes.append(helper.make_node("Cast", [name], [cast_out], to=TensorProto.FLOAT,
                                                  name=fresh("cast_fp32")))
                node.input[idx] = cast_out
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)

    # Intermediate type annotations are re-inferred.
    for vi in graph.value_info:
        _convert_value_info(vi)

    if not top_level:
        for vi in list(graph.input) + list(graph.output):
            _convert_value_info(vi)
        return

    if keep_io_types:
        # float32 input -> Cast(float16) consumed by the graph; Cast(float32) -> output.
        head, tail = [], []
        for vi in graph.input:
            if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            if any(init.name == vi.name for init in graph.initializer):
                continue
            casted = fresh(vi.name + "_fp16")
            for node in graph.node:
                for i, n in enumerate(node.input):
                    if n == vi.name:
                        node.input[i] = casted
            head.append(helper.make_node("Cast", [vi.name], [casted], to=TensorProto.FLOAT16,
                                         name=fresh("cast_in")))
        for vi in graph.output:
            if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            produced = fresh(vi.name + "_fp16")
            for node in graph.node:
                for i, n in enumerate(node.output):
                    if n == vi.name:
                        node.output[i] = produced
            tail.append(helper.make_node("Cast", [produced], [vi.name], to=TensorProto.FLOAT,
                                         name=fresh("cast_out")))
        nodes = head + list(graph.node) + tail
        del graph.node[:]
        graph.node.extend(nodes)
    else:
        for vi in list(graph.input) + list(graph.output):
            _convert_value_info(vi)


def convert_builtin(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    """Built-in FP32 -> FP16 conversion (see the module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # stale float32 annotations; shape inference re-creates them
    _convert_graph(out.graph, keep_io_types=keep_io_types, top_level=True, counter=[0])
    try:
        out = onnx.shape_inference.infer_shapes(out)
    except Exception as exc:  # noqa: BLE001 - annotations are optional
        print(f"note: shape inference failed ({exc}); the model is still valid", file=sys.stderr)
    return out


def convert_onnxconverter(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    from onnxconverter_common import float16  # type: ignore[import-not-found]

    return float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)


def verify(fp32_path: Path, fp16_model: onnx.ModelProto) -> None:
    """Runs both models on the same random inputs (dynamic dimensions = 2) with ONNX Runtime."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("note: --verify needs onnxruntime; skipped", file=sys.stderr)
        return
    providers = ["CPUExecutionProvider"]
    ref = ort.InferenceSession(str(fp32_path), providers=providers)
    new = ort.InferenceSession(fp16_model.SerializeToString(), providers=providers)
    rng = np.random.default_rng(0)
    feeds_ref, feeds_new = {}, {}
    for a, b in zip(ref.get_inputs(), new.get_inputs()):
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in a.shape]
        x = rng.random(shape, dtype=np.float32) if "float" in a.type else np.ones(shape, dtype=np.int64)
        feeds_ref[a.name] = x
        feeds_new[b.name] = x.astype(np.float16) if b.type == "tensor(float16)" else x
    for meta, x, y in zip(ref.get_outputs(), ref.run(None, feeds_ref), new.run(None, feeds_new)):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        scale = max(float(np.max(np.abs(x))), 1e-6) if x.size else 1.0
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        print(f"verify {meta.name}: max |fp32 - fp16| = {diff:.4g} (max |fp32| = {scale:.4g})")


def has_float32(model: onnx.ModelProto) -> bool:
    return any(t.data_type == TensorProto.FLOAT for t in model.graph.initializer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path, help="FP32 ONNX model")
    ap.add_argument("output", type=Path, help="FP16 ONNX model to write")
    ap.add_argument("--fp16-io", action="store_true", help="make model inputs/outputs float16 too")
    ap.add_argument("--builtin", action="store_true", help="do not use onnxconverter-common")
    ap.add_argument("--no-check", action="store_true", help="skip onnx.checker on the result")
    ap.add_argument("--verify", action="store_true",
                    help="run both models with onnxruntime (CPU) on random inputs and print the differences")
    args = ap.parse_args(argv)

    model = onnx.load(str(args.input))
    if not has_float32(model):
        print(f"note: {args.input} has no float32 initializers (already FP16?)", file=sys.stderr)
    keep_io = not args.fp16_io

    converted = None
    if not args.builtin:
        try:
            converted = convert_onnxconverter(model, keep_io)
            # Strict type inference catches the occasional mistyped Cast it produces.
            onnx.checker.check_model(converted, full_check=True)
            how = "onnxconverter-common"
        except ImportError:
            print("note: onnxconverter-common is not installed (pip install onnxconverter-common); "
                  "using the built-in converter", file=sys.stderr)
            converted = None
        except Exception as exc:  # noqa: BLE001 - any failure: use the built-in converter
            print(f"note: onnxconverter-common produced an invalid model ({str(exc).strip()[:200]}); "
                  "using the built-in converter", file=sys.stderr)
            converted = None
    if converted is None:
        converted = convert_builtin(model, keep_io)
        how = "built-in converter"

    if not args.no_check:
        onnx.checker.check_model(converted, full_check=True)
    if args.verify:
        verify(args.input, converted)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    large = converted.ByteSize() > 2_000_000_000
    onnx.save(converted, str(args.output), save_as_external_data=large)
    print(f"wrote {args.output} ({how}, {'float32' if keep_io else 'float16'} inputs/outputs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
