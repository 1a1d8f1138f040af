#!/usr/bin/env bash
# RTSP cameras on the GPU machine: CAMERAS gst-rtsp-server cameras served in-process from
# camera-like 1080p30 H.264 clips (scripts/make-camera-content.sh, made here on first use),
# received by CAMERAS trtcamsrc (NVDEC into CUDA memory) -> trtmux -> trtdemux, while the
# first quarter of the cameras get a fault every 10 s (server stopped 5 s and restarted,
# garbage instead of H.264 for 3 s). Self-checking (tests/device_rtsp.rs): it fails unless
# every other camera keeps the clips' 30 frames/s, loses no frame and never reconnects,
# and the frames are in CUDA memory.
#
# Runs from the repository copy's root on the GPU machine after scripts/device/build.sh
# staged .devpack here (no ONNX Runtime needed). One call, carry [".device", ".devpack"]:
#   source .device/gst-env.sh .device && mkdir -p /root/device-tests /root/devbuild
#   && xz -dc .devpack/devtests.tar.xz | tar -C /root/device-tests -xf -
#   && xz -dc .devpack/devbuild.tar.xz | tar -C /root/devbuild -xf -
#   && cp -r /root/devbuild/.device-build . && bash .device-build/rtsp-cameras.sh 32 120
# Usage: bash .device-build/rtsp-cameras.sh [CAMERAS (32)] [SECONDS measured (120)]
# Environment: DISTINCT (distinct clips, default 8; camera i serves clip i % DISTINCT),
# CONTENT_S (seconds per clip, default 20; clips loop), OUT (default .device-out).
# Writes $OUT/rtsp-cameras.log and $OUT/h100-rtsp-cameras-<date>-<CAMERAS>cam.json.
set -euo pipefail
cams=${1:-32}
secs=${2:-120}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .device-build
root=$(cd "$here/.." && pwd)
cd "$root"
OUT=${OUT:-$root/.device-out}
mkdir -p "$OUT"
if [ -x /root/gst-bundle/gst/bin/gst-launch-1.0 ]; then
  source "$here/gst-env.sh" "$here"
else
  source "$here/gst-env.sh" .device
fi
export XDG_RUNTIME_DIR=/tmp
for d in "$here/gst-extra/lib" /usr/local/nvidia/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
bin=$here/device_rtsp
[ -x "$bin" ] || bin=/root/device-tests/device_rtsp
[ -x "$bin" ] || { echo "rtsp-cameras.sh: no device_rtsp test binary (scripts/device/build.sh stages it)" >&2; exit 1; }

# Clips: made here with the plugin's trtscenesrc (the test binary registers the plugin itself).
content=/tmp/trtv-rtsp-content
distinct=${DISTINCT:-8}
(( distinct > cams )) && distinct=$cams
if [ ! -s "$content/cam$((distinct - 1)).mp4" ]; then
  GST_PLUGIN_PATH=$here${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH} \
    bash "$here/make-camera-content.sh" "$content" "$distinct" "${CONTENT_S:-20}" >/dev/null
fi

TRTV_REQUIRE_CUDA=1 TRTVISION_RTSP_CAMERAS=$cams TRTVISION_RTSP_SECONDS=$secs \
  TRTVISION_RTSP_CONTENT=$content OUT=$OUT \
  "$bin" --ignored --exact device_rtsp_cameras --nocapture --test-threads=1 2>&1 | tee "$OUT/rtsp-cameras.log"
exit "${PIPESTATUS[0]}"
