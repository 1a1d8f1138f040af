#!/usr/bin/env python3
"""Reads trtanalytics' results after trtdemux, from Python (PyGObject).

    . scripts/env.sh && python3 pipelines/read-analytics-meta.py [FRAMES]

Per frame: the TrtVisionAnalyticsMeta summary (objects per zone and class, occupancy over
threshold, line crossings on this frame and since the start); per detection: the
"trtvision-analytics" parameter of its ROI meta (zones it is in with the dwell time, lines it
crossed on this frame with the direction). Needs python3-gi and gir1.2-gst-plugins-base-1.0
(scripts/setup.sh installs them). docs/analytics.md describes every field.
"""
import sys
import warnings

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

MODEL = "engines/shapes-yolo-seg.toml"
RULES = "docs/examples/analytics.toml"


def array(structure, field):
    """The values of an array field (GstValueArray) as a Python list (structures copied: the
    array they come from is freed on return)."""
    ok, values = structure.get_array(field)
    if not ok:
        return []
    with warnings.catch_warnings():
        # GValueArray is deprecated in GLib, but it is what PyGObject returns here.
        warnings.simplefilter("ignore", DeprecationWarning)
        items = [values.get_nth(i) for i in range(values.n_values)]
    return [v.copy() if isinstance(v, Gst.Structure) else v for v in items]


def frame_summary(buf):
    """(zones, lines) of the frame's TrtVisionAnalyticsMeta, or None without one."""
    meta = buf.get_custom_meta("TrtVisionAnalyticsMeta")
    if meta is None:
        return None
    s = meta.get_structure()
    zones = [{
        "name": z.get_value("name"),
        "total": z.get_value("total"),
        "over_threshold": z.get_value("over-threshold"),
        "per_class": dict(zip(array(z, "labels"), array(z, "counts"))),
    } for z in array(s, "zones")]
    lines = [{
        "name": l.get_value("name"),
        "forward": l.get_value("forward"),
        "backward": l.get_value("backward"),
        "forward_total": l.get_value("forward-total"),
        "backward_total": l.get_value("backward-total"),
    } for l in array(s, "lines")]
    return zones, lines


def object_results(buf):
    """Yields (label, track id, zones with dwell seconds, crossed lines with direction)."""
    i = 0
    while (roi := GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)) is not None:
        det = roi.get_param("detection")
        a = roi.get_param("trtvision-analytics")  # None when the camera has no rules
        zones = list(zip(array(a, "zones"), array(a, "dwell-s"))) if a else []
        lines = list(zip(array(a, "lines"), array(a, "directions"))) if a else []
        yield GLib.quark_to_string(roi.roi_type), det.get_value("object-id"), zones, lines
        i += 1


def main():
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"trtmux name=m ! trtpreprocess config-file={MODEL} ! trtinfer model={MODEL} "
        f"! trtmaskselect ! trttracker ! trtanalytics config-file={RULES} ! trtdemux name=d "
        f"trtscenesrc camera=0 num-buffers={frames} ! video/x-raw,width=640,height=480 ! m.sink_0 "
        "d.src_0 ! fakesink name=out signal-handoffs=true")
    totals = {}

    def on_frame(_sink, buf, _pad):
        summary = frame_summary(buf)
        if summary is None:
            print(f"frame {buf.offset}: no analytics summary", file=sys.stderr)
            return
        zones, lines = summary
        for z in zones:
            alarm = " OVER THRESHOLD" if z["over_threshold"] else ""
            print(f"frame {buf.offset}: zone {z['name']} {z['total']} {z['per_class']}{alarm}")
        for label, track, in_zones, crossed in object_results(buf):
            for line, direction in crossed:
                print(f"frame {buf.offset}: {label} track {track} crossed {line} {direction}")
            for zone, dwell in in_zones:
                if dwell >= 0:
                    print(f"frame {buf.offset}: {label} track {track} in {zone} for {dwell:.2f} s")
        for l in lines:
            totals[l["name"]] = (l["forward_total"], l["backward_total"])

    pipeline.get_by_name("out").connect("handoff", on_frame)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg.type == Gst.MessageType.ERROR:
        raise SystemExit(msg.parse_error()[0].message)
    for name, (fwd, bwd) in totals.items():
        print(f"line {name}: {fwd} forward, {bwd} backward")


if __name__ == "__main__":
    main()
