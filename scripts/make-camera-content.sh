#!/usr/bin/env bash
# Camera-like test content for decoder and capacity benchmarks:
#   scripts/make-camera-content.sh OUT_DIR [N] [SECONDS] [WIDTH] [HEIGHT]
# writes OUT_DIR/cam<i>.mp4 (H.264 High 4:2:0, 4 Mbit/s CBR, GOP 60, no B-frames, 30 fps)
# and OUT_DIR/cam<i>-h265.mp4 (H.265 at 2 Mbit/s, when x265enc is installed) for cameras
# 0..N-1 (default 8 cameras, 20 s, 1920x1080), rendered by trtscenesrc pattern=camera
# (deterministic per camera). The files are made in parallel, one per core.
# Needs gst-launch-1.0 with x264enc and the trtvision plugin on GST_PLUGIN_PATH.
set -euo pipefail
out=${1:?usage: make-camera-content.sh OUT_DIR [N] [SECONDS] [WIDTH] [HEIGHT]}
n=${2:-8}
secs=${3:-20}
w=${4:-1920}
h=${5:-1080}
frames=$((secs * 30))
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 4)
have265=0
gst-inspect-1.0 x265enc >/dev/null 2>&1 && have265=1
one() {
  local i=$1
  gst-launch-1.0 -q trtscenesrc pattern=camera camera="$i" num-buffers="$frames" \
    ! "video/x-raw,width=$w,height=$h,framerate=30/1" ! videoconvert ! video/x-raw,format=I420 \
    ! x264enc bitrate=4000 pass=cbr key-int-max=60 bframes=0 speed-preset=veryfast threads=2 \
    ! video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$out/cam$i.mp4"
  if [ "$have265" = 1 ]; then
    gst-launch-1.0 -q trtscenesrc pattern=camera camera="$i" num-buffers="$frames" \
      ! "video/x-raw,width=$w,height=$h,framerate=30/1" ! videoconvert ! video/x-raw,format=I420 \
      ! x265enc bitrate=2000 key-int-max=60 speed-preset=veryfast option-string=bframes=0 \
      ! h265parse ! mp4mux ! filesink location="$out/cam$i-h265.mp4"
  fi
}
export -f one
export out frames w h have265
seq 0 $((n - 1)) | xargs -P "$jobs" -I{} bash -c 'one {}'
[ "$have265" = 1 ] || echo "x265enc not installed: no H.265 variant made" >&2
ls -la "$out"
