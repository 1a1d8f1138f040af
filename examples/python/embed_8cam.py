#!/usr/bin/env python3
"""Embedding gst-trtvision in a Python application (PyGObject): an 8-camera pipeline built
in code whose per-camera results are read from appsinks and acted on.

    . scripts/env.sh && python3 examples/python/embed_8cam.py [frames per camera] [model config]

    8 x trtscenesrc -> trtmux -> trtpreprocess -> trtinfer -> trtmaskselect -> trttracker
      -> trtdemux -> per camera: queue -> appsink

For every frame it reads the detections (label, confidence, box), the masks and the
tracker's object ids from the frame's GstVideoRegionOfInterestMeta, prints a line when a
new tracked object enters a camera's view, and at the end a count per camera. Exit status 1
when a camera delivered no frame or nothing at all was detected. Replace the trtscenesrc
cameras by decoders of real streams and the rest stays the same.
"""
import sys
from collections import Counter

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstApp, GstVideo  # noqa: E402,F401

CAMERAS = 8


class CameraStats:
    def __init__(self):
        self.frames = 0
        self.detections = 0
        self.masks = 0
        self.tracks = set()
        self.per_label = Counter()


def detections(buf):
    """Yields (label, confidence, object_id, (x, y, w, h), mask pixels or None) per detection.

    ROI ids are the detection's index in its frame: look them up until one is missing."""
    i = 0
    while (roi := GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)) is not None:
        det = roi.get_param("detection")
        mask = roi.get_param("trtvision-mask")  # None without a mask
        pixels = None
        if mask is not None:
            # width*height bytes, row-major, 0 = background, 255 = object
            pixels = sum(1 for v in mask.get_value("data").get_data() if v >= 128)
        yield (det.get_value("label") or GLib.quark_to_string(roi.roi_type),
               det.get_value("confidence"), det.get_value("object-id"),
               (roi.x, roi.y, roi.w, roi.h), pixels)
        i += 1


def on_frame(camera, frame, seen, st):
    """The application's reaction to one frame of one camera."""
    st.frames += 1
    for label, conf, object_id, (x, y, w, h), pixels in seen:
        st.detections += 1
        st.per_label[label] += 1
        if pixels is not None:
            st.masks += 1
        # object-id is -1 until the tracker confirms the object (trttracker min-hits).
        if object_id >= 0 and object_id not in st.tracks:
            st.tracks.add(object_id)
            print(f"camera {camera} frame {frame}: {label} #{object_id} entered at {x},{y} {w}x{h} "
                  f"(confidence {conf:.2f}, mask pixels {pixels if pixels is not None else 'none'})",
                  flush=True)


def make(factory, **props):
    e = Gst.ElementFactory.make(factory, None)
    if e is None:
        raise SystemExit(f"cannot create {factory} (is GST_PLUGIN_PATH set? source scripts/env.sh)")
    for k, v in props.items():
        e.set_property(k.replace("_", "-"), v)
    return e


def build(frames, model, stats):
    pipeline = Gst.Pipeline.new("embed-8cam")
    mux = make("trtmux", batch_size=CAMERAS)
    chain = [mux, make("trtpreprocess", config_file=model), make("trtinfer", model=model),
             make("trtmaskselect"), make("trttracker"), make("trtdemux")]
    for e in chain:
        pipeline.add(e)
    for a, b in zip(chain, chain[1:]):
        if not a.link(b):
            raise SystemExit(f"cannot link {a.get_name()} to {b.get_name()}")
    caps = Gst.Caps.from_string("video/x-raw,format=NV12,width=640,height=480,framerate=30/1")
    for i in range(CAMERAS):
        src = make("trtscenesrc", camera=i, num_buffers=frames)
        filt = make("capsfilter", caps=caps)
        pipeline.add(src)
        pipeline.add(filt)
        src.link(filt)
        if filt.get_static_pad("src").link(mux.request_pad_simple(f"sink_{i}")) != Gst.PadLinkReturn.OK:
            raise SystemExit(f"camera {i}: cannot link to trtmux")

    # trtdemux adds one src_N pad per camera once that camera's first frame arrives. Each
    # pad gets its own branch starting with a `queue`: a demuxer's branches must each have
    # one, or the first sink to preroll blocks the streaming thread all cameras share and
    # the pipeline never reaches PLAYING.
    def on_pad_added(_demux, pad):
        name = pad.get_name()
        if not name.startswith("src_"):
            return
        camera = int(name[4:])
        if camera >= CAMERAS:
            return
        queue = make("queue")
        sink = make("appsink", sync=False, emit_signals=True)

        def on_sample(appsink):
            sample = appsink.pull_sample()
            buf = sample.get_buffer() if sample else None
            if buf is not None:
                on_frame(camera, buf.offset, list(detections(buf)), stats[camera])
            return Gst.FlowReturn.OK

        sink.connect("new-sample", on_sample)
        pipeline.add(queue)
        pipeline.add(sink)
        queue.link(sink)
        queue.sync_state_with_parent()
        sink.sync_state_with_parent()
        pad.link(queue.get_static_pad("sink"))

    chain[-1].connect("pad-added", on_pad_added)
    return pipeline


def main():
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    model = sys.argv[2] if len(sys.argv) > 2 else "engines/shapes-yolo-seg.toml"
    Gst.init(None)
    stats = [CameraStats() for _ in range(CAMERAS)]
    pipeline = build(frames, model, stats)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg.type == Gst.MessageType.ERROR:
        err, debug = msg.parse_error()
        print(f"embed_8cam.py: {msg.src.get_path_string()}: {err.message} ({debug})", file=sys.stderr)
        return 2

    ok = True
    for i, st in enumerate(stats):
        labels = " ".join(f"{k}={v}" for k, v in sorted(st.per_label.items()))
        print(f"camera {i}: {st.frames} frames, {st.detections} detections ({st.masks} with a mask), "
              f"{len(st.tracks)} tracked objects [{labels}]")
        if st.frames == 0:
            print(f"camera {i} delivered no frame", file=sys.stderr)
            ok = False
    if sum(st.detections for st in stats) == 0:
        print("nothing was detected on any camera", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
