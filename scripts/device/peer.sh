#!/usr/bin/env bash
# The GPU peer (benches/baseline/gpu_peer.py) on the GPU machine, run from the repository
# copy's root.
#   bash scripts/device/peer.sh install
#       installs the carried wheel (.peer/pynvvideocodec-*.whl, fetched here by
#       scripts/device/peer-wheel.sh) into /root/pylib (pip --no-deps; the machine has no
#       network) and checks that PyNvVideoCodec imports and NVDEC decodes.
#   bash scripts/device/peer.sh run CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [-- PEER ARGS]
#       e.g.  bash scripts/device/peer.sh run 64 yolo11n-seg fp16 2 60 16 -- --prefer-nhwc
#       CAMERAS is one count, or a comma list (8,16,32,...) to step through with --find-max.
#   bash scripts/device/peer.sh check
#       the GPU path against the plugin chain (benches/baseline/check-gpu-peer.sh with
#       PyNvVideoCodec, torch and ONNX Runtime CUDA; the chain decodes with nvh264dec) on two
#       short shapes-scene files: same classes, boxes within 2 px, batching without effect.
# `run` and `check` need the ONNX Runtime GPU parts (calls 1-4 of scripts/device/build.sh's sequence,
# this call carrying .ort/ort5) and, for the camera files and the YOLO11 models,
# .device-build (`cp -r /root/devbuild/.device-build .` first): the same files as
# .device-build/cameras.sh (/tmp/trtv-camera-content/cam<i>.mp4, DISTINCT distinct files,
# default 16, CONTENT_S seconds, default 20). Writes
# $OUT/<gpu>-peer-cameras-<MODEL>-<PRECISION>-<date>-<CAMERAS>cam-s<SESSIONS>-b<BATCH>.json
# (OUT defaults to .device-out; the device tool's $OUT brings it back).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
pylib=/root/pylib
die() { echo "peer.sh: $*" >&2; exit 1; }

check_import() {
  PYTHONPATH=$pylib${PYTHONPATH:+:$PYTHONPATH} python3 - <<'PY' || exit 1
import sys
sys.path.insert(0, "benches/baseline")
import gpu_peer
try:
    nvc, how = gpu_peer.import_nvc()
except gpu_peer.PeerError as e:
    sys.exit(f"peer.sh: {e}")
print(f"PyNvVideoCodec {getattr(nvc, '__version__', '?')} imported ({how})")
PY
}

# ONNX Runtime GPU (PYTHONPATH, ORT_DYLIB_PATH), PyNvVideoCodec (/root/pylib), the GStreamer
# bundle with the plugin (for the content and the chain).
device_env() {
  [ -d "$pylib/PyNvVideoCodec" ] || die "PyNvVideoCodec is not installed in $pylib: run \`bash scripts/device/peer.sh install\` first (carry [\".peer\"])"
  nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi finds no GPU"
  [ -f .ort/ort5/ort-gpu-env.sh ] || die "no .ort/ort5 in this call: carry [\".ort/ort5\"] after calls 1-4 (scripts/device/build.sh)"
  [ -x "$here/trtvision-bench" ] || die "no .device-build here: start the call with \`cp -r /root/devbuild/.device-build .\`"
  source .ort/ort5/ort-gpu-env.sh unpack .ort/ort5
  export PYTHONPATH=$pylib:$PYTHONPATH
  if [ -x /root/gst-bundle/gst/bin/gst-launch-1.0 ]; then source "$here/gst-env.sh" "$here"; else source "$here/gst-env.sh" .device; fi
  export XDG_RUNTIME_DIR=/tmp
  export GST_PLUGIN_PATH=$here${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
  read -r TRTV_COMMIT TRTV_COMMIT_DIRTY < "$here/COMMIT" || true
  export TRTV_COMMIT TRTV_COMMIT_DIRTY TRTV_DATE=$(date -u +%F)
}
here=$root/.device-build

case ${1:-} in
  install)
    shopt -s nullglob
    wheels=(.peer/pynvvideocodec-*-cp312-*.whl)
    [ ${#wheels[@]} -gt 0 ] || die "no .peer/pynvvideocodec-*-cp312-*.whl in this call: run scripts/device/peer-wheel.sh on the build machine and carry [\".peer\"]"
    command -v python3 >/dev/null || die "no python3 on this machine"
    python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' ||
      die "the wheel is for Python 3.12, this machine has $(python3 --version 2>&1)"
    nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi finds no GPU"
    python3 -m pip install -q --no-deps --no-index --target "$pylib" --upgrade "${wheels[-1]}" ||
      die "pip could not install ${wheels[-1]} into $pylib"
    for lib in libcuda.so.1 libnvcuvid.so.1 libnvidia-encode.so.1; do
      if ldconfig -p | grep -q "$lib"; then echo "$lib: $(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')"
      else echo "$lib: not found by ldconfig"; fi
    done
    check_import
    ;;
  run)
    shift
    cams=${1:?usage: peer.sh run CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [-- PEER ARGS]}
    model=${2:?model}; prec=${3:?precision}; sessions=${4:?sessions}; dur=${5:?duration}
    shift 5
    batch=16
    if [ $# -gt 0 ] && [ "$1" != -- ]; then batch=$1; shift; fi
    [ "${1:-}" != -- ] || shift
    device_env
    max=$(echo "$cams" | tr ',' '\n' | sort -n | tail -1)
    content=/tmp/trtv-camera-content
    distinct=${DISTINCT:-16}
    (( distinct > max )) && distinct=$max
    if [ ! -s "$content/cam$((distinct - 1)).mp4" ]; then
      bash "$here/make-camera-content.sh" "$content" "$distinct" "${CONTENT_S:-20}"
    fi
    for i in $(seq "$distinct" $((max - 1))); do ln -sf "cam$((i % distinct)).mp4" "$content/cam$i.mp4"; done
    if [ ! -s "$here/engines/models/$model-fp16.onnx" ] || [ ! -s "$here/engines/models/$model.onnx" ]; then
      python3 engines/yolo11.py --out "$here/engines/models"
    fi
    OUT=${OUT:-$root/.device-out}
    mkdir -p "$OUT"
    dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 |
      sed -E 's/^NVIDIA +//' | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
    tag=${cams//,/-}
    out=$OUT/${dev:-gpu}-peer-cameras-$model-$prec-$(date -u +%Y%m%d)-${tag}cam-s$sessions-b$batch.json
    count=(--cameras "$cams")
    [[ $cams != *,* ]] || count=(--find-max "$cams")
    python3 benches/baseline/gpu_peer.py "${count[@]}" --files "$content" --model "$here/engines/$model.toml" \
      --precision "$prec" --sessions "$sessions" --batch-size "$batch" --duration "$dur" --out "$out" "$@"
    ;;
  check)
    device_env
    OUT=${OUT:-$root/.device-out}
    mkdir -p "$OUT/peer-check"
    DECODER=nvh264dec PEER_ARGS= MODEL_CONFIG=$here/engines/shapes-yolo-seg.toml DET_MODEL_CONFIG=$here/engines/shapes-yolo.toml \
      bash benches/baseline/check-gpu-peer.sh "$OUT/peer-check"
    ;;
  *)
    sed -n '2,18p' "$0" >&2
    exit 2 ;;
esac
