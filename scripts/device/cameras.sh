#!/usr/bin/env bash
# Cameras per GPU: camera-like content made on the GPU machine, then N file cameras paced in
# real time through nvh264dec -> trtmux -> trtpreprocess -> trtinfer -> trtmaskselect ->
# trtoverlay -> trtdemux, with the decode-only ceiling of the same files as `reference`.
#
# Runs on the GPU machine from the repository copy's root, after scripts/device/build.sh
# staged .device-build and calls 1-4 stashed the ONNX Runtime GPU parts (same sequence as
# run-all.sh: carry [".ort/ort5"], start with `cp -r /root/devbuild/.device-build .`):
#   bash .device-build/cameras.sh CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [PROPS]
# e.g.  bash .device-build/cameras.sh 120 yolo11n-seg fp16 2 600 16 cuda-graph=true,prefer-nhwc=true
#   MODEL      yolo11n-seg | yolo11n (engines/<MODEL>.toml)
#   PRECISION  fp32 (models/<MODEL>.onnx) | fp16 (models/<MODEL>-fp16.onnx, FP32 input + Cast)
#   SESSIONS   trtinfer sessions=N (alternate batches on their own streams)
#   BATCH      trtmux batch-size and trtinfer max-batch (default 16)
#   PROPS      further trtinfer properties, comma separated
# Environment: DISTINCT (distinct content files, default 16; camera i plays file i % DISTINCT),
# CONTENT_S (seconds per file, default 20; files loop for DURATION), OUT (default .device-out),
# REFERENCE (decode-only, the default, or none: leave out the decode-only run of the same
# files, for sweeps whose ceiling was measured once in the same call), PUSH_TIMEOUT (trtmux
# batched-push-timeout in us), TAG (appended to the record's name).
# PACE (realtime, the default, or none: as fast as the pipeline goes, for the capacity),
# STAGES (trtvision-bench --stages, e.g. `none` for NVDEC and trtmux alone with SINK=fakesink,
# or `preprocess,infer`), SINK (demux, the default, or fakesink).
# CUPTI=1: the pipeline run (not the reference) under the CUPTI tracer (scripts/device/cupti/):
# kernels' GPU time per stream and the share of time with >= 1 / >= 2 kernels running (do the
# sessions' kernels run side by side?), explicit copies; CUPTI_START_S (default 20: 120
# cameras take ~15 s to start) seconds are warm-up. Writes <record>-cupti/ (one summary per
# process) and <record>-cupti.txt, and adds cupti_kernel_time / cupti_explicit_copies to the
# record. Rates are lowered by the tracer: use it to compare runs, not for the headline.
# Writes $OUT/<gpu>-cameras-<MODEL>-<PRECISION>-<date>-<CAMERAS>cam-s<SESSIONS>-b<BATCH>[-TAG].json
# (bench-schema record + cameras_realtime, fps_per_camera_min/p5, per_camera windows, duration_s).
set -euo pipefail
cams=${1:?usage: cameras.sh CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [PROPS]}
model=${2:?model}; prec=${3:?precision}; sessions=${4:?sessions}; dur=${5:?duration}
batch=${6:-16}; props=${7:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .device-build
root=$(cd "$here/.." && pwd)
cd "$root"
OUT=${OUT:-$root/.device-out}
mkdir -p "$OUT"
source .ort/ort5/ort-gpu-env.sh unpack .ort/ort5
if [ -x /root/gst-bundle/gst/bin/gst-launch-1.0 ]; then
  source "$here/gst-env.sh" "$here"
else
  source "$here/gst-env.sh" .device
fi
export XDG_RUNTIME_DIR=/tmp
export GST_PLUGIN_PATH=$here${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}

# Content: DISTINCT files rendered and encoded here (16 cores), the other cameras link to them.
content=/tmp/trtv-camera-content
distinct=${DISTINCT:-16}
(( distinct > cams )) && distinct=$cams
if [ ! -s "$content/cam$((distinct - 1)).mp4" ]; then
  bash "$here/make-camera-content.sh" "$content" "$distinct" "${CONTENT_S:-20}"
fi
for i in $(seq "$distinct" $((cams - 1))); do
  ln -sf "cam$((i % distinct)).mp4" "$content/cam$i.mp4"
done

# The YOLO11 models are generated here (engines/yolo11.py, FP32 and FP16), as run-all.sh does.
if [ ! -s "$here/engines/models/$model-fp16.onnx" ] || [ ! -s "$here/engines/models/$model.onnx" ]; then
  python3 engines/yolo11.py --out "$here/engines/models"
fi
cfg=$here/engines/$model.toml
case $prec in
  fp32) ;;
  fp16)
    sed "s#models/$model.onnx#models/$model-fp16.onnx#" "$cfg" > "$here/engines/$model-fp16.toml"
    cfg=$here/engines/$model-fp16.toml ;;
  *) echo "precision must be fp32 or fp16, got '$prec'" >&2; exit 2 ;;
esac

date_tag=$(date -u +%Y%m%d)
# The record is named after the GPU (h100, h200, ...), as run-all.sh names its records.
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 |
  sed -E 's/^NVIDIA +//' | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
out=$OUT/${dev:-gpu}-cameras-$model-$prec-$date_tag-${cams}cam-s$sessions-b$batch${TAG:+-$TAG}.json
ref=()
[ "${REFERENCE:-decode-only}" = none ] || ref=(--reference "${REFERENCE:-decode-only}")
st=()
[ -z "${STAGES:-}" ] || st=(--stages "$STAGES")
pt=()
[ -z "${PUSH_TIMEOUT:-}" ] || pt=(--push-timeout "$PUSH_TIMEOUT")
infer="max-batch=$batch,sessions=$sessions${props:+,$props}"
cd "$here"
tracer=()
if [ -n "${CUPTI:-}" ]; then
  lib=$(bash cupti/find-libcupti.sh) || { echo "CUPTI=1: no libcupti found" >&2; exit 1; }
  [ -f cupti/trtv_cupti.so ] || { echo "CUPTI=1: no cupti/trtv_cupti.so in $here (scripts/device/build.sh)" >&2; exit 1; }
  rm -rf "${out%.json}-cupti"; mkdir -p "${out%.json}-cupti"
  tracer=(env CUDA_INJECTION64_PATH="$here/cupti/trtv_cupti.so" TRTV_CUPTI_LIB="$lib"
    TRTV_CUPTI_OUT="${out%.json}-cupti/cupti-%p.json" TRTV_CUPTI_START_AFTER_S="${CUPTI_START_S:-20}")
fi
"${tracer[@]}" ./trtvision-bench --what "cameras-$model-$prec" --cameras "$cams" --source files "$content" --nvdec \
  --width 1920 --height 1080 --format NV12 --batch-size "$batch" --model "$cfg" \
  --backend onnxruntime-cuda --infer-props "$infer" --sink "${SINK:-demux}" --device-masks "${st[@]}" \
  --pace "${PACE:-realtime}" --duration "$dur" "${ref[@]}" "${pt[@]}" --timeout $((dur + 240)) --out "$out"
python3 - "$out" "$dur" "$distinct" "${CONTENT_S:-20}" <<'PY'
import json, sys
path, dur = sys.argv[1], float(sys.argv[2])
r = json.load(open(path))
r["content"] = (f"trtscenesrc pattern=camera via scripts/make-camera-content.sh: {sys.argv[3]} distinct files of "
                f"{sys.argv[4]} s, 1920x1080 30 fps H.264 High 4:2:0, 4 Mbit/s CBR, GOP 60, no B-frames (x264); "
                "camera i plays file i mod the distinct count, looping")
fps = r.get("fps_per_camera")
fmin = r.get("fps_per_camera_min")
lat = (r.get("latency_ms") or {}).get("p99")
# Real time: the slowest camera at >= 29.5 frames/s over the run, p99 latency <= 150 ms.
ok = fmin is not None and fmin >= 29.5 and lat is not None and lat <= 150
r["duration_s"] = dur
r["cameras_realtime"] = r["cameras"] if ok else 0
json.dump(r, open(path, "w"), indent=2)
print(f"{r['cameras']} cameras: {fps} fps/camera mean, min {fmin}, p99 {lat} ms -> real time: {ok}")
PY
if [ -n "${CUPTI:-}" ]; then
  python3 cupti/summarize.py --top-kernels 15 "${out%.json}-cupti" > "${out%.json}-cupti.txt" 2>&1 || true
  python3 cupti/merge_copies.py "${out%.json}-cupti" "$out" || true
  grep -E "kernel timeline|kernel GPU time per stream" -A3 "${out%.json}-cupti.txt" | head -20
fi
