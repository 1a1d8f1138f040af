#!/usr/bin/env bash
# Eight H.264 files decoded by NVDEC → batch of 8 in CUDA memory → preprocessing →
# inference → masks → overlay → per-camera re-encoding to MP4.
#
#   pipelines/nvdec-8cam-record.sh INPUT_DIR [model-config] [backend]
# INPUT_DIR holds cam0.mp4 … cam7.mp4 (H.264 4:2:0). Writes out/rec-cam<i>.mp4.
# Encoder: nvh264enc where the GPU has NVENC; otherwise (for example on an H100, which has
# NVDEC but no NVENC) the script says so and falls back to x264enc after cudadownload.
# Backend: onnxruntime-cuda by default (ONNX Runtime with the CUDA provider); pass
# onnxruntime-cpu to run inference on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
IN="${1:?usage: $0 INPUT_DIR [model-config] [backend]}"
MODEL="${2:-engines/shapes-yolo-seg.toml}"
BACKEND="${3:-onnxruntime-cuda}"
mkdir -p out

# DECODER=openh264dec (or avdec_h264) runs the same pipeline without a GPU, for testing.
DECODER="${DECODER:-nvh264dec}"
if [ "$DECODER" != nvh264dec ]; then
    ENC="videoconvert ! x264enc speed-preset=ultrafast ! video/x-h264,profile=high ! h264parse"
elif gst-inspect-1.0 nvh264enc >/dev/null 2>&1; then
    ENC="nvh264enc ! h264parse"
else
    echo "nvh264enc is not available on this machine (no NVENC hardware): encoding with x264enc instead" >&2
    ENC="cudadownload ! videoconvert ! x264enc speed-preset=ultrafast ! video/x-h264,profile=high ! h264parse"
fi

branches=""
for i in 0 1 2 3 4 5 6 7; do
    branches+=" filesrc location=$IN/cam$i.mp4 ! parsebin ! $DECODER ! queue ! m.sink_$i"
    # All eight branches are fed from trtdemux's one streaming thread: the encoders' delay
    # must not block it while the other files wait to preroll, so queues hold whole frames
    # (no byte limit) and the file sinks do not wait for preroll.
    branches+=" d.src_$i ! queue max-size-bytes=0 max-size-buffers=64 max-size-time=0 ! $ENC ! mp4mux ! filesink async=false location=out/rec-cam$i.mp4"
done

echo "inference backend: $BACKEND" >&2
# trtvision-launch (built with the plugin) is gst-launch-1.0 -e that starts the file readers
# and demuxers last: under gst-launch-1.0 a demuxer can push before the decoder after it is
# started, and that camera then never delivers a frame (docs/troubleshooting.md, "File cameras stall at start").
LAUNCH="$(command -v trtvision-launch || true)"
for cand in target/release/trtvision-launch .device-build/trtvision-launch; do
    [ -z "$LAUNCH" ] && [ -x "$cand" ] && LAUNCH="$cand"
done
if [ -z "$LAUNCH" ]; then
    echo "trtvision-launch not found (cargo build --release): using gst-launch-1.0, which can stall at start with file cameras" >&2
    LAUNCH="gst-launch-1.0 -e"
fi
set -x
$LAUNCH \
    trtmux name=m batch-size=8 \
    ! trtpreprocess config-file="$MODEL" \
    ! trtinfer model="$MODEL" backend="$BACKEND" \
    ! trtmaskselect \
    ! trtoverlay \
    ! trtdemux name=d \
    $branches
