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
    # decodebin, not `qtdemux ! h264parse ! decoder`: under gst-launch a bare demuxer can
    # push before the decoder after it is started, and that camera then silently stops.
    # decodebin plugs nvh264dec (highest rank on NVIDIA machines), which outputs CUDA memory
    # because trtmux accepts it; DECODER only labels the run.
    branches+=" filesrc location=$IN/cam$i.mp4 ! decodebin ! queue ! m.sink_$i"
    # All eight branches are fed from trtdemux's one streaming thread: the encoders' delay
    # must not block it while the other files wait to preroll, so queues hold whole frames
    # (no byte limit) and the file sinks do not wait for preroll.
    branches+=" d.src_$i ! queue max-size-bytes=0 max-size-buffers=64 max-size-time=0 ! $ENC ! mp4mux ! filesink async=false location=out/rec-cam$i.mp4"
done

echo "inference backend: $BACKEND" >&2
set -x
gst-launch-1.0 -e \
    trtmux name=m batch-size=8 \
    ! trtpreprocess config-file="$MODEL" \
    ! trtinfer model="$MODEL" backend="$BACKEND" \
    ! trtmaskselect \
    ! trtoverlay \
    ! trtdemux name=d \
    $branches
