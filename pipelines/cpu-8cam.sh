#!/usr/bin/env bash
# Eight synthetic cameras → batch of 8 → preprocessing → inference (ONNX Runtime, CPU)
# → masks → overlay → JSON lines + a 4x2 mosaic recorded to MP4.
#
#   pipelines/cpu-8cam.sh [frames] [width] [height] [model-config]
# Output: out/cpu-8cam.mp4 and out/cpu-8cam.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
FRAMES="${1:-150}"
W="${2:-640}"
H="${3:-480}"
MODEL="${4:-engines/shapes-yolo-seg.toml}"
mkdir -p out

cams=""
for i in 0 1 2 3 4 5 6 7; do
    cams+=" trtscenesrc camera=$i num-buffers=$FRAMES ! video/x-raw,format=NV12,width=$W,height=$H,framerate=30/1 ! m.sink_$i"
done

set -x
gst-launch-1.0 -e \
    trtmux name=m batch-size=8 \
    ! trtpreprocess config-file="$MODEL" \
    ! trtinfer model="$MODEL" \
    ! trtmaskselect \
    ! trtoverlay \
    ! trtjsonexport location=out/cpu-8cam.jsonl \
    ! trttiler columns=4 rows=2 width=1280 height=480 \
    ! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency \
    ! video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location=out/cpu-8cam.mp4 \
    $cams
set +x
echo "wrote out/cpu-8cam.mp4 ($(stat -c %s out/cpu-8cam.mp4) bytes) and out/cpu-8cam.jsonl ($(wc -l < out/cpu-8cam.jsonl) frames)"
