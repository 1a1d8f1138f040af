#!/usr/bin/env python3
"""Reads the results trtdemux attaches to each frame, from Python (PyGObject).

    . scripts/env.sh && python3 pipelines/read-roi-meta.py

Needs python3-gi and gir1.2-gst-plugins-base-1.0 (Debian/Ubuntu packages; scripts/setup.sh
installs them and makes .venv see them). Each ROI meta's
id is the index of the detection in its frame, so ids 0, 1, 2, ... are looked up until
one is missing.
"""
import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

MODEL = "engines/shapes-yolo-seg.toml"


def frame_results(buf):
    """Yields (label, confidence, class_id, (x, y, w, h), mask or None) per detection."""
    i = 0
    while True:
        roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)
        if roi is None:
            return
        det = roi.get_param("detection")
        mask = roi.get_param("trtvision-mask")
        if mask is not None:
            mask = (mask.get_value("x"), mask.get_value("y"), mask.get_value("width"),
                    mask.get_value("height"), mask.get_value("data").get_data())
        yield (GLib.quark_to_string(roi.roi_type), det.get_value("confidence"),
               det.get_value("class-id"), (roi.x, roi.y, roi.w, roi.h), mask)
        i += 1


def main():
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"trtmux name=m ! trtpreprocess config-file={MODEL} ! trtinfer model={MODEL} "
        "! trtmaskselect ! trtdemux name=d "
        "trtscenesrc camera=0 num-buffers=3 ! video/x-raw,width=640,height=480 ! m.sink_0 "
        "d.src_0 ! fakesink name=out signal-handoffs=true")

    def on_frame(_sink, buf, _pad):
        for label, conf, class_id, rect, mask in frame_results(buf):
            area = sum(1 for v in mask[4] if v >= 128) if mask else 0
            print(f"frame {buf.offset}: {label} ({class_id}) {conf:.2f} box={rect} mask_pixels={area}")

    pipeline.get_by_name("out").connect("handoff", on_frame)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg.type == Gst.MessageType.ERROR:
        raise SystemExit(msg.parse_error()[0].message)


if __name__ == "__main__":
    main()
