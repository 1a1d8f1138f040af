#!/usr/bin/env python3
"""Reads trtdemux's GstAnalytics output from Python (GStreamer >= 1.28, plugin built with
cargo feature v1_28). Runs two synthetic cameras through the detection chain and prints,
per frame, every object-detection entry with its related tracking, classification and
segmentation entries.

    scripts/gstreamer-1.28.sh run -- cargo build --release --features v1_28
    scripts/gstreamer-1.28.sh run -- python3 scripts/analytics-read.py
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstAnalytics", "1.0")
from gi.repository import GLib, Gst, GstAnalytics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET = os.path.join(ROOT, "engines", "shapes-yolo-seg.toml")
ATTR = os.path.join(ROOT, "engines", "shapes-landmarks.toml")


def related(rmeta, od, mtd_type):
    """The first entry of `mtd_type` the object-detection entry relates to, or None."""
    for mtd in rmeta.iter_on_type(mtd_type):
        if rmeta.get_relation(od.id, mtd.id) == GstAnalytics.RelTypes.RELATE_TO:
            return mtd
    return None


def describe(buf):
    rmeta = GstAnalytics.buffer_get_analytics_relation_meta(buf)
    if rmeta is None:
        return []
    out = []
    for od in rmeta.iter_on_type(GstAnalytics.ODMtd):
        ok, x, y, w, h, conf = od.get_location()
        text = f"{GLib.quark_to_string(od.get_obj_type())} {conf:.2f} box=({x},{y},{w},{h})"
        trk = related(rmeta, od, GstAnalytics.TrackingMtd)
        if trk is not None:
            ok, tid, first, last, lost = trk.get_info()
            text += f" track={tid} first-seen={first / 1e9:.3f}s"
        cls = related(rmeta, od, GstAnalytics.ClsMtd)
        if cls is not None:
            text += f" class={GLib.quark_to_string(cls.get_quark(0))}:{cls.get_level(0):.2f}"
        seg = related(rmeta, od, GstAnalytics.SegmentationMtd)
        if seg is not None:
            mask, mx, my, mw, mh = seg.get_mask()
            with_object = sum(1 for v in mask.extract_dup(0, mask.get_size()) if v)
            text += f" mask=({mx},{my},{mw},{mh}) {with_object} px"
        out.append(text)
    return out


def main():
    Gst.init(None)
    desc = (
        f"trtmux name=m batch-size=2 ! trtpreprocess config-file={DET} ! trtinfer model={DET} "
        f"! trtmaskselect ! trttracker ! trtinfer model={ATTR} operate-on=objects "
        f"operate-on-model=shapes-yolo-seg ! trtdemux name=d meta=analytics"
    )
    for i, (w, h) in enumerate([(640, 480), (800, 600)]):
        desc += (
            f" trtscenesrc camera={i} num-buffers=3 ! video/x-raw,format=NV12,width={w},height={h}"
            f" ! m.sink_{i} d.src_{i} ! queue ! appsink name=out{i} emit-signals=true sync=false"
        )
    pipeline = Gst.parse_launch(desc)
    lines = []

    def on_sample(sink, camera):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        for text in describe(buf):
            lines.append(f"camera {camera} frame {buf.offset}: {text}")
        return Gst.FlowReturn.OK

    for i in range(2):
        pipeline.get_by_name(f"out{i}").connect("new-sample", on_sample, i)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        print("pipeline failed:", msg.parse_error() if msg else "timeout", file=sys.stderr)
        return 1
    print("\n".join(sorted(lines)))
    if not lines:
        print("no GstAnalytics object-detection entries found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
