#!/usr/bin/env bash
# All GPU measurements in one device call (call 5, after the four ORT "stash" calls; see
# scripts/device/build.sh, which stages this script as .device-build/run-all.sh):
#   carry: [".ort/ort5"]   command: cp -r /root/devbuild/.device-build . && bash .device-build/run-all.sh
# Runs from the repository copy's root. Every step has its own timeout, logs to
# $OUT/logs (packed), and never stops the next step; the whole run keeps inside
# TRTV_BUDGET_S seconds (default 500, the call's limit is 600). At the end $OUT holds:
#   results.tar.gz  every result JSON (flat)      logs.tar.gz  one log per step
#   frames.tar.gz   evidence PNGs (640x360)       summary.txt  the table printed last
# Environment knobs: PIPE_TIMEOUT (s per pipeline), TRTV_DECODER_ARGS (default --nvdec),
# FRAMES (per camera, default 240), TRTV_BUDGET_S, SKIP="step names" (e.g. "device_cuda
# device_tiler baseline"), SKIP_INFER, SKIP_PROMPTSEG, SKIP_BENCH, SKIP_LONG (the 20 s
# unpaced runs; LONG_REPEAT=N runs them N times), SKIP_MULTI, SKIP_RECORD, SKIP_FRAMES, DRIFT_S (the drift run, own call),
# PCIE_MATRIX=1 (pipelines that differ by one element: where PCIe bytes come from), CUPTI=1
# (the same pipelines under the CUPTI tracer: API calls, copies, kernels), PACE_SWEEP="2 4 8"
# (preprocess+infer paced at N x real time; PACE_REF=1 adds the paced decode-only reference),
# LOAD_TEST=1 (LOAD_PACE=8, LOAD_SYNC="default spin": paced pipelines with and without
# unrelated GPU load), UNPACED_SYNC="default spin ..." (+UNPACED_FULL=1), NCU=1
# (Nsight Compute profile of the preprocessing kernel), PROBE_ONLY=1 (the PCIe probe without
# the inference runs), GRAPH_RUNS=1 (trtinfer fixed-batch / cuda-graph runs; GRAPH_ONLY=1
# leaves out the plain runs of section 5), INFER_VARIANTS (trtvision-infer-bench
# --io-variants, default plain,fixed,graph), INFER_BATCHES (default 1,2,4,8,16),
# TRTV_LOCAL_TEST=1 (dry run on a machine without the bundle: use the system GStreamer).
set +e
START=$(date +%s)
BUDGET=${TRTV_BUDGET_S:-500}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .device-build
root=$(cd "$here/.." && pwd)
cd "$root" || exit 1
OUT=${OUT:-$root/.device-out}
mkdir -p "$OUT"
W=/tmp/trtv; LOGS=$W/logs; RES=$W/results; FR=$W/frames; CAMS=$W/cams
rm -rf "$W"; mkdir -p "$LOGS" "$RES" "$FR" "$CAMS"
FRAMES=${FRAMES:-240}
SUMMARY=$W/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

# --- environment -------------------------------------------------------------------------
# ONNX Runtime GPU: parts 1-4 were stashed under /root/ortparts by calls 1-4.
if ls /root/ortparts/part.00 /root/ortparts/part.01 /root/ortparts/part.02 /root/ortparts/part.03 >/dev/null 2>&1; then
  source .ort/ort5/ort-gpu-env.sh unpack .ort/ort5
  [ -f "${ORT_DYLIB_PATH:-/nonexistent}" ] && note "ORT: $ORT_DYLIB_PATH" ||
    note "ORT: unpack FAILED (ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-unset})"
else
  note "ORT: parts 1-4 missing in /root/ortparts (machine not warm from calls 1-4?): no CUDA provider this run"
  ls -la /root/ortparts 2>&1 | head -8
fi
# GStreamer bundle: unpacked to /root/gst-bundle by call 1 (gst-env.sh skips the untar then);
# a carried .device/ (7 MB) is the fallback.
if [ -n "${TRTV_LOCAL_TEST:-}" ]; then
  note "GStreamer: TRTV_LOCAL_TEST set: using this machine's GStreamer (dry run)"
elif [ -x /root/gst-bundle/gst/bin/gst-launch-1.0 ]; then
  source .device-build/gst-env.sh .device-build
elif [ -f .device/gst-bundle.tar.xz ]; then
  source .device-build/gst-env.sh .device
else
  note "GStreamer: /root/gst-bundle missing and no .device/ carried: nothing that links GStreamer can run"
fi
export XDG_RUNTIME_DIR=/tmp
export GST_PLUGIN_PATH=$here:$here/gst-extra/plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
for d in "$here/gst-extra/lib" /usr/local/nvidia/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
export LD_LIBRARY_PATH
read -r TRTV_COMMIT TRTV_COMMIT_DIRTY < "$here/COMMIT" 2>/dev/null
export TRTV_COMMIT TRTV_COMMIT_DIRTY
export TRTV_DATE=$(date -u +%F)
DATE=$(date -u +%Y%m%d)
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DEV=$(echo "${GPU_NAME:-gpu}" | sed -E 's/^NVIDIA +//; s/^GeForce +//' | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
DEV=${DEV:-gpu}
note "GPU: ${GPU_NAME:-none} ($DEV), commit ${TRTV_COMMIT:-?} dirty=${TRTV_COMMIT_DIRTY:-?}, date $TRTV_DATE, frames/camera $FRAMES"

# Device-wide background log (context only; the benches sample NVML themselves).
nvidia-smi dmon -s pucmt -d 1 > "$LOGS/nvidia-smi-dmon.log" 2>&1 &
DMON_PID=$!

declare -a STATUS=()
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME TIMEOUT COMMAND...: runs with a timeout clipped to the budget, logs to
# $LOGS/NAME.log, records "NAME rc secs"; returns the command's status (99 = skipped).
step() {
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [[ " ${SKIP:-} " == *" $name "* ]]; then STATUS+=("$name skipped(SKIP) 0"); return 99; fi
  if (( l < 20 )); then
    note "[$name] SKIPPED: ${l}s left of the ${BUDGET}s budget"
    STATUS+=("$name skipped(budget) 0"); return 99
  fi
  (( t > l - 15 )) && t=$(( l - 15 ))
  echo "=== [$name] timeout ${t}s: $*" | tee -a "$LOGS/steps.log"
  local t0; t0=$(date +%s)
  timeout -k 5 "$t" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local what="rc=$rc"
  (( rc == 124 || rc == 137 )) && what="TIMEOUT after ${t}s"
  echo "    [$name] $what, ${dt}s" | tee -a "$LOGS/steps.log"
  tail -n 4 "$LOGS/$name.log" | cut -c1-300 | sed 's/^/    | /'
  STATUS+=("$name $rc $dt")
  return $rc
}

pack() {
  kill "$DMON_PID" 2>/dev/null
  wait "$DMON_PID" 2>/dev/null
  printf '%s\n' "${STATUS[@]}" > "$LOGS/status.txt"
  (cd "$RES" && ls *.json >/dev/null 2>&1 && tar -czf "$OUT/results.tar.gz" *.json)
  tar -czf "$OUT/logs.tar.gz" -C "$W" logs
  (cd "$FR" && ls * >/dev/null 2>&1 && tar -czf "$OUT/frames.tar.gz" *)
  cp "$SUMMARY" "$OUT/summary.txt"
  ls -la "$OUT"
}
trap pack EXIT

# The GPU test binaries travel apart (scripts/device/build.sh: call 2 keeps them in
# /root/device-tests); bring them next to the rest.
if ls /root/device-tests/device_* >/dev/null 2>&1; then
  cp /root/device-tests/device_* .device-build/
fi

# --- 1. environment facts ----------------------------------------------------------------
env_facts() {
  nvidia-smi
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,pcie.link.gen.current,pcie.link.width.current,clocks.max.sm --format=csv
  echo "--- env"; env | grep -E '^(ORT_|LD_LIBRARY|GST_|PATH|TRTV_)' | sort
  echo "--- gst-inspect nvh264dec"; gst-inspect-1.0 nvh264dec | head -40
  echo "--- gst-inspect cudadownload"; gst-inspect-1.0 cudadownload | head -12
  echo "--- gst-inspect pngenc"; gst-inspect-1.0 pngenc | head -8
  echo "--- gst-inspect multifilesink"; gst-inspect-1.0 multifilesink | head -8
  echo "--- gst-inspect trtvision"; gst-inspect-1.0 trtvision
  echo "--- ORT providers"
  python3 -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())'
  echo "--- ldd (missing libraries)"
  for b in .device-build/trtvision-bench .device-build/trtvision-infer-bench .device-build/device_* .device-build/libgsttrtvision.so; do
    echo "$b: $(ldd "$b" | grep -c 'not found') missing"; ldd "$b" | grep 'not found'
  done
  nproc; free -g | head -2
  true
}
export -f env_facts
step env 60 bash -c env_facts
grep -E "Plugin Details|nvh264dec|trtmux|CUDAExecutionProvider|missing" "$LOGS/env.log" | head -12

# --- 2. CUDA device tests (parity + preprocess kernel timing) ------------------------------
step device_cuda 150 env TRTV_REQUIRE_CUDA=1 GST_DEBUG=trtoverlay:5 .device-build/device_cuda --include-ignored --nocapture --test-threads=1
DEVICE_CUDA_RC=$?
grep -E "^test |test result" "$LOGS/device_cuda.log" | tail -12
# The other GPU test binaries (tests/device_*.rs), each a step of its own.
for t in .device-build/device_*; do
  n=$(basename "$t")
  [ "$n" = device_cuda ] && continue
  step "$n" 120 env TRTV_REQUIRE_CUDA=1 "$t" --include-ignored --nocapture --test-threads=1
  grep -E "^test |test result" "$LOGS/$n.log" | tail -12
done
grep '"bench":"cuda_preprocess"' "$LOGS/device_cuda.log" > "$W/kernel.jsonl"
if [ -s "$W/kernel.jsonl" ]; then
  python3 - "$W/kernel.jsonl" "$RES/$DEV-preprocess-kernel-$DATE.json" "$DEVICE_CUDA_RC" <<'PY'
import json, os, sys
line = json.loads(open(sys.argv[1]).readline())
batch = 8
med_us = line["kernel_us_median"]
rec = {
    "device": line.get("device") or "unknown",
    "date": os.environ.get("TRTV_DATE"),
    "commit": os.environ.get("TRTV_COMMIT", "unknown"),
    "commit_dirty": os.environ.get("TRTV_COMMIT_DIRTY") == "1",
    "what": "preprocess-kernel",
    "pipeline": "tests/device_cuda.rs timing_8x1080p_nv12_to_640_f16: CudaPreprocessor::run on 8 NV12 1920x1080 frames in device memory -> [8,3,640,640] f16 letterbox, CUDA events around each launch (200 runs after 20 warm-up; single launches, launches queued behind a gate, 200 back to back)",
    "cameras": batch, "width": 1920, "height": 1080, "batch_size": batch,
    "model": "none (preprocessing kernel only, 640x640 f16 letterbox)",
    "backend": "cuda-nvrtc-kernel",
    "frames": batch * 200,
    "fps_total": round(batch / (med_us * 1e-6), 1),
    "fps_per_camera": round(1 / (med_us * 1e-6), 1),
    "latency_ms": {"p50": round(med_us / 1e3, 4), "min": round(line["kernel_us_min"] / 1e3, 4),
                   "p50_queued": round(line["kernel_us_median_queued"] / 1e3, 4) if line.get("kernel_us_median_queued") else None,
                   "pipelined_per_batch": round(line["pipelined_us_per_batch"] / 1e3, 4)},
    "cpu_cores": None, "rss_mib": None, "vram_mib": None,
    "h2d_bytes_per_frame": 0, "d2h_bytes_per_frame": 0,
    "reference": {"name": "device-to-device copy bandwidth (cuMemcpyDtoDAsync 1 GiB, read+write)",
                  "fps_total": None, "gbps": round(line["dtod_copy_gbps"], 2)},
    # The kernel's time on the GPU: launches queued behind a closed gate (cuStreamWaitValue32)
    # so that the events do not also time the host submitting it; the single-launch figure
    # (host submission included, the method up to commit 5ffb601) stays as ratio_single_launch.
    "ratio": round(line["fraction_of_copy_bandwidth_queued"] if line.get("fraction_of_copy_bandwidth_queued") is not None else line["fraction_of_copy_bandwidth"], 4),
    "ratio_meaning": ("achieved bytes/s of the kernel (rows touched + written; median of 200 launches each queued behind a gate, events around the launch) / measured D2D copy bytes/s"
                      if line.get("fraction_of_copy_bandwidth_queued") is not None else
                      "achieved bytes/s of the kernel (rows touched + written; median of 200 single launches between events, host submission included) / measured D2D copy bytes/s"),
    "ratio_single_launch": round(line["fraction_of_copy_bandwidth"], 4),
    "ratio_single_launch_meaning": "the same with the median of 200 single launches between events, the host's submission of each launch inside the timed span (the method up to commit 5ffb601)",
    "ratio_same_size_copy_queued": round(line.get("fraction_of_same_size_copy_queued") or 0, 4),
    "kernel_us_median_queued": line.get("kernel_us_median_queued"),
    "dtod_copy_same_bytes_us_median_queued": line.get("dtod_copy_same_bytes_us_median_queued"),
    "ratio_pipelined": round(line.get("fraction_of_copy_bandwidth_pipelined") or 0, 4),
    "ratio_same_size_copy": round(line.get("fraction_of_same_size_copy") or 0, 4),
    "ratio_same_size_copy_meaning": "the kernel's bytes/s / bytes/s of one cuMemcpyDtoDAsync moving as many bytes (read + write), timed the same way (median of 200 single launches between events)",
    "ratio_pipelined_meaning": "the same with the time per batch of 200 batches queued back to back",
    "pixels_per_thread": line.get("pixels_per_thread"),
    "variants_us": line.get("variants"),
    "cpu_reference_fill_batch_ms": line.get("cpu_fill_batch_ms"),
    "cpu_reference_threads": line.get("cpu_threads"),
    "device_cuda_exit_status": int(sys.argv[3]),
    "raw": line,
}
open(sys.argv[2], "w").write(json.dumps(rec, indent=1) + "\n")
print("wrote", sys.argv[2])
PY
else
  note "[device_cuda] no {\"bench\"...} timing line: no preprocess-kernel record"
fi

grep '"bench":"cuda_overlay"' "$LOGS/device_cuda.log" > "$W/overlay.jsonl"
if [ -s "$W/overlay.jsonl" ]; then
  python3 - "$W/overlay.jsonl" "$RES/$DEV-overlay-kernel-$DATE.json" "$DEVICE_CUDA_RC" <<'PY'
import json, os, sys
line = json.loads(open(sys.argv[1]).readline())
batch = 8
total_us = line["draw_total_us_median"]
rec = {
    "device": line.get("device") or "unknown",
    "date": os.environ.get("TRTV_DATE"),
    "commit": os.environ.get("TRTV_COMMIT", "unknown"),
    "commit_dirty": os.environ.get("TRTV_COMMIT_DIRTY") == "1",
    "what": "overlay-kernel",
    "pipeline": "tests/device_cuda.rs timing_overlay_8x1080p_nv12: OverlayCommands built for 8 NV12 1920x1080 frames in device memory (masked, labelled detections), CudaOverlay::draw (one copy + one launch) and wait, 200 runs after 20 warm-up",
    "cameras": batch, "width": 1920, "height": 1080, "batch_size": batch,
    "model": "none (overlay drawing only)",
    "backend": "cuda-nvrtc-kernel",
    "frames": batch * 200,
    "fps_total": round(batch / (total_us * 1e-6), 1),
    "fps_per_camera": round(1 / (total_us * 1e-6), 1),
    "latency_ms": {"p50": round(total_us / 1e3, 4),
                   "build_p50": round(line["build_us_median"] / 1e3, 4),
                   "copy_and_kernel_p50": round(line["copy_and_kernel_us_median"] / 1e3, 4)},
    "cpu_cores": None, "rss_mib": None, "vram_mib": None,
    "h2d_bytes_per_frame": line["h2d_bytes_per_batch"] // batch, "d2h_bytes_per_frame": 0,
    "reference": {"name": "CPU draw_frame on the same frames, 1 thread",
                  "fps_total": round(batch / (line["cpu_draw_frame_ms_per_batch"] * 1e-3), 1)},
    "ratio": round(line["cpu_draw_frame_ms_per_batch"] * 1e3 / total_us, 2),
    "ratio_meaning": "CPU drawing time / GPU drawing time (build + copy + kernel + wait) per batch",
    "device_cuda_exit_status": int(sys.argv[3]),
    "raw": line,
}
open(sys.argv[2], "w").write(json.dumps(rec, indent=1) + "\n")
print("wrote", sys.argv[2])
PY
else
  note "[device_cuda] no cuda_overlay timing line: no overlay-kernel record"
fi

# --- 3. backend benchmark: CPU vs CUDA provider, batch 1..16 --------------------------------
# The YOLO11n/-seg architectures (random weights) are generated here: too large to carry.
step yolo11_models 60 python3 engines/yolo11.py --out .device-build/engines/models --no-fp16
infer_bench() {
  cd .device-build
  # What NVML counts on PCIe with no copy at all (idle, kernel launches, cross-stream waits).
  ./trtvision-infer-bench --pcie-probe 3 > "$W/pcie-probe.jsonl" || true
  cat "$W/pcie-probe.jsonl"
  python3 - "$W/pcie-probe.jsonl" "$RES/$DEV-pcie-probe-$DATE.json" <<'PY' || true
import json, os, sys
line = json.loads(open(sys.argv[1]).readline())
l, x, idle = line["launches"], line["cross_stream"], line["idle"]
rec = {
    "device": line.get("device") or "unknown",
    "date": os.environ.get("TRTV_DATE"),
    "commit": os.environ.get("TRTV_COMMIT", "unknown"),
    "commit_dirty": os.environ.get("TRTV_COMMIT_DIRTY") == "1",
    "what": "pcie-probe",
    "pipeline": "trtvision-infer-bench --pcie-probe 3: " + line["what"],
    "cameras": 1, "width": 64, "height": 64, "batch_size": 1,
    "model": "none (preprocessing kernel launches only)",
    "backend": "cuda-nvrtc-kernel",
    "frames": l["count"],
    "fps_total": l["per_s"], "fps_per_camera": l["per_s"],
    "latency_ms": None, "cpu_cores": None, "rss_mib": None, "vram_mib": None,
    "h2d_bytes_per_frame": l["h2d_bytes_per_launch_above_idle"],
    "d2h_bytes_per_frame": l["d2h_bytes_per_launch_above_idle"],
    "frame_meaning": "one kernel launch (no copy): NVML bytes above the idle rate per launch",
    "reference": {"name": "idle (nothing running)", "fps_total": None,
                  "h2d_bytes_per_s": idle["h2d_bytes_per_s"], "d2h_bytes_per_s": idle["d2h_bytes_per_s"]},
    "ratio": None,
    "cross_stream": x,
    "blocked_waits": line.get("blocked_waits"),
    "host_funcs": line.get("host_funcs"),
    "copies": line.get("copies"),
    "raw": line,
}
open(sys.argv[2], "w").write(json.dumps(rec, indent=1) + "\n")
print("wrote", sys.argv[2])
PY
  # PROBE_ONLY=1: the probe without the inference runs.
  [ -n "${PROBE_ONLY:-}" ] && return 0
  local v="--io-variants ${INFER_VARIANTS:-plain,fixed,graph}" nb=${INFER_BATCHES:-1,2,4,8,16}
  ./trtvision-infer-bench --model engines/shapes-yolo-seg.toml $v \
    --batches $nb --warmup 10 --iters 50 --out-dir "$RES" --require-cuda || return 1
  for m in yolo11n-seg yolo11n; do
    [ -f engines/models/$m.onnx ] || continue
    ./trtvision-infer-bench --model engines/$m.toml --batches $nb --warmup 5 --iters 20 $v \
      --cpu-iters 2 --out-dir "$RES" --file-tag $m --require-cuda || return 1
  done
}
export -f infer_bench
export RES W DEV DATE INFER_VARIANTS INFER_BATCHES
[ -n "${SKIP_INFER:-}" ] || step infer_bench 200 bash -c infer_bench
sed -n '/--- summary ---/,$p' "$LOGS/infer_bench.log" | cut -c1-200

# --- 3b. prompt-conditioned segmentation: routes a, b, c and the hand-written seed -----------
# Routes a, b, c, c with single-buffered decoder outputs (c1) and the seed; results_match
# in each JSON (bitwise and within tolerance); exit status 1 = beyond the tolerance.
promptseg_bench() {
  cd .device-build && ./trtvision-promptseg-bench --config engines/promptseg-full.toml \
    --routes a,b,c,c1,seed --frames 8 --classes 4 --rounds 20 --warmup 3 \
    --backend onnxruntime-cuda --out-dir "$RES"
}
# The VRAM cost of double buffering with ONNX Runtime's arena growing by exactly what is
# requested (route-c[-single-buffer]-exact-arena-*.json, "double_buffering").
promptseg_arena() {
  cd .device-build && ./trtvision-promptseg-bench --config engines/promptseg-full.toml \
    --routes c,c1 --frames 8 --classes 4 --rounds 20 --warmup 3 --exact-arena \
    --backend onnxruntime-cuda --out-dir "$RES"
}
export -f promptseg_bench promptseg_arena
if [ -z "${SKIP_PROMPTSEG:-}" ]; then
  step promptseg_bench 300 bash -c promptseg_bench
  step promptseg_arena 90 bash -c promptseg_arena
fi
grep -hE "^(route|match)" "$LOGS/promptseg_bench.log" "$LOGS/promptseg_arena.log" 2>/dev/null | cut -c1-260

# --- 4. eight 1080p30 H.264 files (4:2:0, High) from the synthetic scene ---------------------
make_files() {
  local pids=()
  for i in 0 1 2 3 4 5 6 7; do
    gst-launch-1.0 -q trtscenesrc camera=$i num-buffers=$FRAMES \
      ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
      ! x264enc speed-preset=ultrafast ! video/x-h264,profile=high ! h264parse ! mp4mux \
      ! filesink location=$CAMS/cam$i.mp4 &
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ls -la $CAMS
  return $rc
}
export -f make_files
export CAMS FRAMES
step make_files 120 bash -c make_files
FILES_OK=1
for i in 0 1 2 3 4 5 6 7; do [ -s "$CAMS/cam$i.mp4" ] || FILES_OK=0; done
(( FILES_OK )) || note "[make_files] some of $CAMS/cam0..7.mp4 are missing: the pipeline runs will fail"

# --- 5. pipeline benchmarks on the GPU ----------------------------------------------------
B=./trtvision-bench
WARMUP=$(( FRAMES >= 150 ? 30 : FRAMES / 5 ))
DECODER_ARGS=${TRTV_DECODER_ARGS:---nvdec}   # dry runs elsewhere: "--decoder openh264dec"
COMMON="--cameras 8 --source files $CAMS $DECODER_ARGS --frames $FRAMES --warmup $WARMUP --width 1920 --height 1080 --format NV12 --pcie"
MODEL=engines/shapes-yolo-seg.toml
# bench WHAT TIMEOUT PIPE_TIMEOUT ARGS...: one trtvision-bench run from .device-build. If a
# --sink demux run fails (a stalled file pipeline was seen with trtdemux), it is retried
# once with the batch straight into a fakesink (the record says sink=fakesink), and later
# runs go to the fakesink at once.
DEMUX_BROKEN=0
bench() {
  local what=$1 t=$2 pt=${PIPE_TIMEOUT:-$3}; shift 3
  local file="$RES/$DEV-$what-$DATE.json"
  local args=" $* "
  if (( DEMUX_BROKEN )) && [[ "$args" == *" --sink demux "* && "$args" != *" --encode "* ]]; then
    note "[$what] trtdemux stalled before: running with --sink fakesink"
    args=${args/ --sink demux / --sink fakesink }
  fi
  step "$what" "$t" bash -c "cd .device-build && $B --what $what $args --timeout $pt --out $file"
  local rc=$?
  if (( rc != 0 && rc != 99 )) && [[ "$args" == *" --sink demux "* && "$args" != *" --encode "* ]]; then
    grep -q "timed out" "$LOGS/$what.log" && DEMUX_BROKEN=1
    note "[$what] failed with --sink demux (rc=$rc): retrying with --sink fakesink (recorded as sink=fakesink)"
    args=${args/ --sink demux / --sink fakesink }
    step "$what-fakesink" "$t" bash -c "cd .device-build && $B --what $what $args --timeout $pt --out $file"
    rc=$?
  fi
  [ -f "$file" ] || note "[$what] no result file"
  return $rc
}
if (( FILES_OK )) && [ -z "${SKIP_BENCH:-}" ] && [ -z "${GRAPH_ONLY:-}" ]; then
  bench 8cam-nvdec-full 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --reference decode-only --device-masks
  bench 8cam-nvdec-full-hostmasks 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --reference decode-only
  bench 8cam-nvdec-gpuinfer 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --reference decode-only
  bench 8cam-nvdec-noinfer 120 40 $COMMON --model $MODEL --stages preprocess,maskselect,overlay --sink demux --reference decode-only
  bench 8cam-nvdec-realtime 120 $(( FRAMES / 30 + 30 )) $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --pace realtime --device-masks
  # The same unpaced runs for 20 s (files loop): PCIe bytes per frame over ~40 000 frames
  # instead of the ~2 s above (NVML averages 20 ms windows; SKIP_LONG=1 leaves them out).
  # LONG_REPEAT=N runs each N times (results -20s, -20s-r2, ...): NVML's bytes per frame
  # vary by tens of percent between runs of the same pipeline.
  [ -n "${SKIP_LONG:-}" ] || for r in $(seq 1 "${LONG_REPEAT:-1}"); do
    sfx=$([ "$r" = 1 ] && echo "" || echo "-r$r")
    bench 8cam-nvdec-gpuinfer-20s$sfx 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --duration 20 --drift-warmup 5
    bench 8cam-nvdec-full-20s$sfx 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --device-masks --duration 20 --drift-warmup 5
  done
  # Several models on one stream set: detector on 3 cameras + depth on camera 0; detector
  # then landmarks on every detected object of 8 cameras (crops on the GPU from CUDA frames).
  [ -n "${SKIP_MULTI:-}" ] || {
    bench multimodel-3cam 120 100 ${COMMON/--cameras 8/--cameras 3} --scenario multimodel --backend onnxruntime-cuda --sink demux --reference decode-only
    bench cascade-8cam 120 100 $COMMON --scenario cascade --backend onnxruntime-cuda --sink demux --reference decode-only
  }
fi

# --- 5a. GRAPH_RUNS=1: trtinfer with its batch fixed at 8 (fixed-batch) and with CUDA graphs
# (cuda-graph, which fixes the batch too): the preprocess+infer and full pipelines, 600
# frames per camera and 20 s, and paced in real time. GRAPH_ONLY=1 skips section 5's runs.
if (( FILES_OK )) && [ -n "${GRAPH_RUNS:-}" ]; then
  G="--infer-props cuda-graph=true,max-batch=8"
  F="--infer-props fixed-batch=true,max-batch=8"
  [ -n "${GRAPH_SHORT_SKIP:-}" ] || {
  bench 8cam-nvdec-gpuinfer-graph 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --reference decode-only $G
  bench 8cam-nvdec-full-graph 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --reference decode-only --device-masks $G
  bench 8cam-nvdec-gpuinfer-fixed 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --reference decode-only $F
  bench 8cam-nvdec-full-fixed 120 100 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --reference decode-only --device-masks $F
  bench 8cam-nvdec-realtime-graph 120 $(( FRAMES / 30 + 30 )) $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --pace realtime --device-masks $G
  }
  [ -n "${SKIP_LONG:-}" ] || for r in $(seq 1 "${LONG_REPEAT:-1}"); do
    sfx=$([ "$r" = 1 ] && echo "" || echo "-r$r")
    bench 8cam-nvdec-gpuinfer-20s-graph$sfx 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --duration 20 --drift-warmup 5 $G
    bench 8cam-nvdec-full-20s-graph$sfx 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --device-masks --duration 20 --drift-warmup 5 $G
  done
fi

# SYNC_COMPARE=1: the 20 s gpuinfer and full runs with CUDA graphs once more with host
# threads sleeping while they wait for the GPU in the primary context
# (GST_TRTVISION_CUDA_SYNC=blocking; results -blocking), next to the graph runs above.
if (( FILES_OK )) && [ -n "${SYNC_COMPARE:-}" ]; then
  G="--infer-props cuda-graph=true,max-batch=8"
  export GST_TRTVISION_CUDA_SYNC=blocking
  bench 8cam-nvdec-gpuinfer-20s-graph-blocking 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --duration 20 --drift-warmup 5 $G
  bench 8cam-nvdec-full-20s-graph-blocking 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --device-masks --duration 20 --drift-warmup 5 $G
  bench 8cam-nvdec-gpuinfer-20s-blocking 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --duration 20 --drift-warmup 5
  bench 8cam-nvdec-full-20s-blocking 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --device-masks --duration 20 --drift-warmup 5
  unset GST_TRTVISION_CUDA_SYNC
fi

# --- 5b. optional (PCIE_MATRIX=1): where the PCIe bytes of unpaced GPU inference come from.
# The same 8 files through pipelines that differ by one element or setting each; the
# decode-only reference of each run records its own PCIe bytes.
if (( FILES_OK )) && [ -n "${PCIE_MATRIX:-}" ]; then
  DET=engines/shapes-yolo.toml
  bench pcie-matrix-gpuinfer 60 40 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --reference decode-only
  bench pcie-matrix-gpuinfer-fakesink 60 40 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink fakesink
  bench pcie-matrix-gpuinfer-maskselect 60 40 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer,maskselect --device-masks --sink demux
  bench pcie-matrix-gpuinfer-overlay 60 40 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer,overlay --sink demux
  bench pcie-matrix-full 60 40 $COMMON --model $MODEL --backend onnxruntime-cuda --device-masks --sink demux
  bench pcie-matrix-gpuinfer-paced 60 $(( FRAMES / 30 + 30 )) $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --pace realtime
  bench pcie-matrix-preprocess 60 40 $COMMON --model $MODEL --stages preprocess --sink demux
  bench pcie-matrix-det-gpuinfer 60 40 $COMMON --model $DET --backend onnxruntime-cuda --stages preprocess,infer --sink demux
  bench pcie-matrix-det-full 60 40 $COMMON --model $DET --backend onnxruntime-cuda --sink demux
fi
# PACE_SWEEP="2 4 8 16" (whole numbers): the preprocess+infer pipeline paced at N times 30 fps
# (PACE_PROPS=cuda-graph=true,max-batch=8: with those trtinfer properties, results pace-gpuinfer-graph-Nx)
# per camera (`--pace Nx`): NVML's bytes per frame against the frame rate (paced real time
# they stay near the decoder's own; unpaced they do not). PACE_REF=1: each run also measures
# the decode-only pipeline paced the same way (its own PCIe bytes in "reference").
if (( FILES_OK )) && [ -n "${PACE_SWEEP:-}" ]; then
  for r in $PACE_SWEEP; do
    bench pace-gpuinfer${PACE_PROPS:+-graph}-${r}x $(( 70 + (PACE_REF ? 1 : 0) * FRAMES / (30 * r) )) $(( (PACE_REF ? 2 : 1) * FRAMES / (30 * r) + 40 )) $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --pace ${r}x ${PACE_PROPS:+--infer-props $PACE_PROPS} ${PACE_REF:+--reference decode-only}
  done
fi
# LOAD_TEST=1: does unrelated GPU work change NVML's bytes per frame of the same pipeline?
# gpu-load.py (PyTorch FP16 matrix products in a process of its own, a few hundred launches
# per second) first alone (its own bytes per second: pcie-load-alone), then next to the
# noinfer and gpuinfer-with-graphs pipelines paced at LOAD_PACE (default 8) x 30 fps per
# camera, each also without the load, each with its paced decode-only reference (which then
# runs under the load too). Results pcie-load-<pipeline>-<N>x-{quiet,loaded}.
load_bench() {  # NAME ARGS...: the run quiet, then with gpu-load.py running beside it
  local name=$1; shift
  bench "$name-quiet" 90 60 "$@"
  python3 .device-build/gpu-load.py --seconds 70 > "$LOGS/$name-load.log" 2>&1 &
  local lp=$!
  sleep 3
  bench "$name-loaded" 90 60 "$@"
  kill "$lp" 2>/dev/null; wait "$lp" 2>/dev/null
}
if (( FILES_OK )) && [ -n "${LOAD_TEST:-}" ]; then
  R=${LOAD_PACE:-8}
  G="--infer-props cuda-graph=true,max-batch=8"
  step pcie-load-alone 60 python3 .device-build/gpu-load.py --seconds 10 --what pcie-load-alone --out "$RES/$DEV-pcie-load-alone-$DATE.json"
  # LOAD_SYNC="default spin": each pair once per GST_TRTVISION_CUDA_SYNC setting ("default":
  # unset, the plugin's default; results -<setting> for the others).
  for sync in ${LOAD_SYNC:-default}; do
    sfx=""
    if [ "$sync" != default ]; then export GST_TRTVISION_CUDA_SYNC=$sync; sfx="-$sync"; fi
    load_bench pcie-load-noinfer-${R}x$sfx $COMMON --model $MODEL --stages preprocess,maskselect,overlay --sink demux --pace ${R}x --reference decode-only
    load_bench pcie-load-gpuinfer-graph-${R}x$sfx $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --pace ${R}x --reference decode-only $G
    unset GST_TRTVISION_CUDA_SYNC
  done
fi
# UNPACED_SYNC="default spin default spin": the unpaced 20 s gpuinfer (and with UNPACED_FULL=1
# full) runs with CUDA graphs, alternating GST_TRTVISION_CUDA_SYNC settings ("default": unset;
# results -sync-<setting>-<i>).
if (( FILES_OK )) && [ -n "${UNPACED_SYNC:-}" ]; then
  G="--infer-props cuda-graph=true,max-batch=8"
  i=0
  for sync in $UNPACED_SYNC; do
    i=$(( i + 1 ))
    [ "$sync" != default ] && export GST_TRTVISION_CUDA_SYNC=$sync
    bench 8cam-nvdec-gpuinfer-20s-graph-sync-$sync-$i 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --duration 20 --drift-warmup 5 $G
    [ -n "${UNPACED_FULL:-}" ] && bench 8cam-nvdec-full-20s-graph-sync-$sync-$i 100 90 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --device-masks --duration 20 --drift-warmup 5 $G
    unset GST_TRTVISION_CUDA_SYNC
  done
fi
# PCIE_CTXLOG=1: which CUDA context each element uses in the preprocess+infer pipeline
# (GStreamer's and our debug lines about contexts, first 300).
if (( FILES_OK )) && [ -n "${PCIE_CTXLOG:-}" ]; then
  step pcie-ctxlog 60 bash -c "cd .device-build && GST_DEBUG=cudacontext:6,cudautils:6,cudamemory:4,nvh264dec:4,trtpreprocess:6,trtinfer:6,trtdemux:6 GST_DEBUG_NO_COLOR=1 $B --what pcie-ctxlog ${COMMON/--frames $FRAMES/--frames 60} --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --timeout 40 --out /tmp/ctxlog.json 2>&1 | grep -iE 'context|CUcontext|peer|fallback|device' | head -300"
fi

# --- 5c. optional (NCU=1): Nsight Compute profile of the preprocessing kernel (the NV12 entry
# point and the generic one, default blocks, 8 x 1080p NV12 -> 640x640 f16) when the device
# has ncu.
ncu_preprocess() {
  local ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  [ -x "$ncu" ] || { echo "no ncu"; return 1; }
  local t=.device-build/device_cuda
  # In timing_8x1080p_nv12_to_640_f16 each timed variant launches its kernel 420 times; the
  # 31st launch of the NV12 entry point (default), and of the generic x4 inline kernel (its
  # first launch is the empty warm-up at creation, then the "-generic" variants).
  "$ncu" --set full -k regex:nchw_x4_nv12rgb_inline --launch-skip 30 --launch-count 1 -o $W/ncu-nv12 -f \
    env TRTV_REQUIRE_CUDA=1 $t timing_8x1080p_nv12_to_640_f16 --nocapture --test-threads=1 > $W/ncu-run1.txt 2>&1
  "$ncu" --set full -k regex:nchw_x4_inline --launch-skip 31 --launch-count 1 -o $W/ncu-direct -f \
    env TRTV_REQUIRE_CUDA=1 $t timing_8x1080p_nv12_to_640_f16 --nocapture --test-threads=1 > $W/ncu-run2.txt 2>&1
  tail -5 $W/ncu-run1.txt $W/ncu-run2.txt
  for v in nv12 direct; do
    "$ncu" --import $W/ncu-$v.ncu-rep --page details > $LOGS/ncu-$v-details.txt 2>&1
    echo "== $v"; grep -E "Duration|DRAM Throughput|Memory Throughput|L1/TEX Hit|L2 Hit|Achieved Occupancy|Registers Per|Compute \(SM\) Throughput|Warp Cycles Per Issued|Issue Slots Busy|Dynamic Shared|Theoretical Occupancy" $LOGS/ncu-$v-details.txt | head -20
  done
  cp $W/ncu-*.ncu-rep "$OUT/" 2>/dev/null
  true
}
export -f ncu_preprocess
export W LOGS OUT
[ -n "${NCU:-}" ] && step ncu_preprocess 200 bash -c ncu_preprocess

# --- 5d. optional (CUPTI=1): CUDA API calls, copies and kernels of unpaced pipelines, counted
# by the CUPTI injection tracer (scripts/device/cupti/) in every process of the run; the
# "steady" figures leave out the first TRTV_CUPTI_START_AFTER_S seconds. 12 s per pipeline
# (files loop) next to NVML's PCIe bytes of the same run; fps are lowered by the tracer.
# CUPTI_RUNS picks the pipelines (default "gpuinfer gpuinfer-overlay full"; also gpuinfer-graph, full-graph,
# gpuinfer-fakesink, mux: decode and trtmux only).
cupti_run() {  # NAME ARGS...: one traced trtvision-bench run, then its summary
  local name=$1; shift
  mkdir -p "$LOGS/cupti-$name"
  step "cupti-$name" 170 env CUDA_INJECTION64_PATH="$root/.device-build/cupti/trtv_cupti.so" \
    TRTV_CUPTI_LIB="$CUPTI_LIB" TRTV_CUPTI_OUT="$LOGS/cupti-$name/cupti-%p.json" TRTV_CUPTI_START_AFTER_S=4 \
    bash -c "cd .device-build && $B --what cupti-$name $* --duration 12 --drift-warmup 4 --timeout 135 --out $RES/$DEV-cupti-$name-$DATE.json"
  python3 .device-build/cupti/summarize.py "$LOGS/cupti-$name" > "$LOGS/cupti-$name-summary.txt" 2>&1
  head -80 "$LOGS/cupti-$name-summary.txt" | tee -a "$SUMMARY"
  # The explicit copies (what crossed PCIe as data, by any cuMemcpy of any library in the
  # process) per frame, next to NVML's device-wide bytes in the same record.
  python3 .device-build/cupti/merge_copies.py "$LOGS/cupti-$name" "$RES/$DEV-cupti-$name-$DATE.json" || true
}
if (( FILES_OK )) && [ -n "${CUPTI:-}" ]; then
  if [ -f .device-build/cupti/trtv_cupti.so ] && CUPTI_LIB=$(bash .device-build/cupti/find-libcupti.sh); then
    note "CUPTI: $CUPTI_LIB"
    for c in ${CUPTI_RUNS:-gpuinfer gpuinfer-overlay full}; do
      case $c in
        gpuinfer) cupti_run gpuinfer $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux ;;
        gpuinfer-fakesink) cupti_run gpuinfer-fakesink $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink fakesink ;;
        gpuinfer-overlay) cupti_run gpuinfer-overlay $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer,overlay --sink demux ;;
        full) cupti_run full $COMMON --model $MODEL --backend onnxruntime-cuda --device-masks --sink demux ;;
        mux) cupti_run mux $COMMON --stages none --sink fakesink ;;
        gpuinfer-graph) cupti_run gpuinfer-graph $COMMON --model $MODEL --backend onnxruntime-cuda --stages preprocess,infer --sink demux --infer-props cuda-graph=true,max-batch=8 ;;
        full-graph) cupti_run full-graph $COMMON --model $MODEL --backend onnxruntime-cuda --device-masks --sink demux --infer-props cuda-graph=true,max-batch=8 ;;
      esac
    done
  else
    note "CUPTI: no tracer in .device-build/cupti or no libcupti on this machine: traces skipped"
  fi
fi

# --- 6. evidence: the recording pipeline (pipelines/nvdec-8cam-record.sh, x264 stand-in for
# NVENC) on all 8 files, a few downscaled PNG frames of two recordings, and PNG frames of a
# 2x2 mosaic of the full GPU pipeline (pngenc and multifilesink come from gst-extra).
record() {
  GST_PLUGIN_PATH=$PWD/.device-build timeout 150 bash pipelines/nvdec-8cam-record.sh "$CAMS" .device-build/engines/shapes-yolo-seg.toml onnxruntime-cuda
  ls -la out/ && mkdir -p "$FR" && cp out/rec-cam0.mp4 out/rec-cam5.mp4 "$FR/" 2>/dev/null
  # Playable? Decode one back with NVDEC and count frames.
  gst-launch-1.0 -q filesrc location=out/rec-cam5.mp4 ! qtdemux ! h264parse ! nvh264dec ! fakesink silent=false 2>&1 | grep -c "chain" || true
  # Evidence: a few downscaled frames of two recordings as PNG.
  for c in 0 5; do
    gst-launch-1.0 -q filesrc location=out/rec-cam$c.mp4 ! qtdemux ! h264parse ! nvh264dec ! cudadownload \
      ! videoconvert ! videoscale ! video/x-raw,width=640,height=360 ! videorate ! video/x-raw,framerate=1/5 \
      ! pngenc ! multifilesink location="$FR/rec-cam$c-%02d.png" max-files=3 || true
  done
  ls -la "$FR"
}
frames_tiler() {
  local branches=""
  for i in 0 1 2 3; do
    branches+=" filesrc location=$CAMS/cam$i.mp4 ! parsebin ! nvh264dec ! capsfilter caps=video/x-raw(memory:CUDAMemory) ! queue ! m.sink_$i"
  done
  cd .device-build && gst-launch-1.0 -e trtmux name=m batch-size=4 \
    ! trtpreprocess config-file=engines/shapes-yolo-seg.toml \
    ! trtinfer model=engines/shapes-yolo-seg.toml backend=onnxruntime-cuda \
    ! trtmaskselect download-masks=false ! trtoverlay ! trttiler rows=2 columns=2 width=960 height=540 \
    ! videoconvert ! videorate ! video/x-raw,framerate=1/4 ! pngenc \
    ! multifilesink location=$FR/mosaic-%02d.png max-files=4 $branches
  ls -la "$FR"
}
export -f record frames_tiler
export FR
if (( FILES_OK )); then
  mkdir -p "$FR"
  [ -n "${SKIP_RECORD:-}" ] || step record 170 bash -c record
  [ -n "${SKIP_FRAMES:-}" ] || step frames_tiler 60 bash -c frames_tiler
fi

# --- 7. optional: x264 encode after trtdemux (the H100 has no NVENC) ------------------------
if (( FILES_OK )) && [ -z "${SKIP_BENCH:-}" ] && (( $(left) > 120 )) && (( ! DEMUX_BROKEN )); then
  bench 8cam-nvdec-full-x264 110 50 $COMMON --model $MODEL --backend onnxruntime-cuda --sink demux --encode x264
fi

# --- 7b. VRAM/RSS drift: the full pipeline paced in real time for DRIFT_S seconds ----------
# (a call of its own: DRIFT_S=520 TRTV_BUDGET_S=590 with every other step skipped). File
# cameras loop; RSS and VRAM are sampled every second and fitted after a warm-up.
# Longer than one call (10 minutes: DRIFT_S=660), as done for -s14f: call 5 copies
# .device-build and .ort/ort5 to /root/dr and starts this script there in a process session
# of its own, which outlives the call (OUT=/root/drift-out FRAMES=300 DRIFT_S=660
# TRTV_BUDGET_S=790 SKIP_...=1 setsid nohup bash .device-build/run-all.sh > /root/drift.log
# 2>&1 < /dev/null &), then sleeps 575 s; call 6, right after, waits for
# /root/drift-out/summary.txt and copies /root/drift-out/* to $OUT.
# DRIFT_PROPS=cuda-graph=true,max-batch=8: with those trtinfer properties (8cam-nvdec-drift-graph).
if (( FILES_OK )) && [ -n "${DRIFT_S:-}" ]; then
  bench 8cam-nvdec-drift${DRIFT_PROPS:+-graph} $(( DRIFT_S + 60 )) $(( DRIFT_S + 50 )) $COMMON --model $MODEL \
    --backend onnxruntime-cuda --sink demux --pace realtime --device-masks --duration "$DRIFT_S" \
    --drift-warmup 60 ${DRIFT_PROPS:+--infer-props $DRIFT_PROPS}
fi

# --- 8. seed-style baseline comparison and the sweeps (scripts/device/bench-baseline.sh) ---
# Needs about 300 s: runs only with 200 s or more of the budget left (skip the other steps
# to make room, e.g. SKIP_BENCH=1 SKIP_INFER=1 SKIP_RECORD=1 SKIP_FRAMES=1 SKIP=device_cuda);
# SKIP=baseline turns it off.
if (( FILES_OK )) && (( $(left) >= 200 )); then
  step baseline $(( $(left) - 20 )) env CAMS="$CAMS" RES="$RES" DEV="$DEV" DATE="$DATE" FRAMES="$FRAMES" \
    bash scripts/device/bench-baseline.sh $(( $(left) - 35 ))
  grep -E "^\| |^sweep-|rc=|SKIPPED" "$LOGS/baseline.log" | cut -c1-160
fi

# --- summary ------------------------------------------------------------------------------
{
  echo
  echo "=== steps (name rc seconds)"; printf '%s\n' "${STATUS[@]}"
  echo "=== results ($(ls "$RES" | wc -l) files), total $(( $(date +%s) - START ))s"
  python3 - "$RES" <<'PY'
import json, os, sys
d = sys.argv[1]
def g(r, *ks):
    for k in ks:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r
def f(v, fmt="{:.1f}"):
    return "-" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))
print(f"{'what':24} {'backend':17} {'fps':>9} {'ref fps':>9} {'ratio':>7} {'p50 ms':>8} {'p95 ms':>8} {'cores':>6} {'vram':>7} {'h2d B/f':>10} {'d2h B/f':>10} extra")
for name in sorted(os.listdir(d)):
    try:
        r = json.load(open(os.path.join(d, name)))
    except Exception as e:
        print(name, "unreadable:", e); continue
    extra = []
    if g(r, "parity", "rel_l2") is not None:
        extra.append(f"rel_l2 {g(r, 'parity', 'rel_l2'):.1e} {'PASS' if g(r, 'parity', 'pass') else 'FAIL'}")
    if isinstance(r.get("input_on_device"), dict) and "fps_total" in r["input_on_device"]:
        extra.append(f"devin {f(g(r, 'input_on_device', 'fps_total'))} fps")
    if r.get("sink") and r.get("sink") != "demux":
        extra.append(f"sink={r['sink']}")
    if r.get("what") == "preprocess-kernel":
        extra.append(f"{g(r, 'raw', 'achieved_gbps'):.0f}/{g(r, 'reference', 'gbps'):.0f} GB/s")
    print(f"{str(r.get('what'))[:24]:24} {str(r.get('backend'))[:17]:17} {f(r.get('fps_total')):>9} "
          f"{f(g(r, 'reference', 'fps_total')):>9} {f(r.get('ratio'), '{:.3f}'):>7} "
          f"{f(g(r, 'latency_ms', 'p50'), '{:.2f}'):>8} {f(g(r, 'latency_ms', 'p95'), '{:.2f}'):>8} "
          f"{f(r.get('cpu_cores'), '{:.2f}'):>6} {f(g(r, 'vram_mib', 'steady'), '{:.0f}'):>7} "
          f"{f(r.get('h2d_bytes_per_frame'), '{:.0f}'):>10} {f(r.get('d2h_bytes_per_frame'), '{:.0f}'):>10} {' '.join(extra)}")
PY
} 2>&1 | tee -a "$SUMMARY"
exit 0
