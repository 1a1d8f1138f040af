#!/usr/bin/env bash
# GPU machine: trtvision vs the seed-style Python baseline, then the throughput sweeps,
# inside a time budget. Runs from the repository copy's root with the environment that
# scripts/device/run-all.sh sets up (GStreamer bundle, ONNX Runtime GPU, GST_PLUGIN_PATH
# with .device-build, python3 with cv2/numpy/onnxruntime-gpu); run-all.sh calls it as its
# step "baseline".
#
#   bash scripts/device/bench-baseline.sh [BUDGET_S]        (default 300)
#
# Environment: CAMS (8 x 1920x1080 cam<i>.mp4 from run-all's make_files; made here when
# missing), FRAMES (frames per file there, default 240), RES (result directory, default
# /tmp/trtv/results), DEV / DATE (default from nvidia-smi / today, UTC), PYTHON (default
# python3), TRTV_LOCAL_TEST=1 (dry run without a GPU: CPU decoder and provider, few frames).
# Writes into $RES:
#   <dev>-8cam-vs-seed-baseline-<date>.json (+ <dev>-8cam-files-trtvision-, <dev>-8cam-seed-baseline-)
#   <dev>-sweep-<date>.json (+ .png when python3 has matplotlib; else: benches/plot.py JSON)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
. benches/lib.sh
START=$(date +%s)
BUDGET=${1:-300}
RES=${RES:-/tmp/trtv/results}
CAMS=${CAMS:-/tmp/trtv/cams}
FRAMES=${FRAMES:-240}
DATE=${DATE:-$(date -u +%Y%m%d)}
DEV=${DEV:-$(device_short_name)}
export PYTHON=${PYTHON:-python3}
export BENCH=${BENCH:-$root/.device-build/trtvision-bench}
export MODEL=${MODEL:-$root/.device-build/engines/shapes-yolo-seg.toml}
GPU=--gpu
SWEEP_FRAMES=30
if [ -n "${TRTV_LOCAL_TEST:-}" ]; then
  # Dry run here: the locally built binary, CPU on both sides, a handful of frames.
  GPU="" SWEEP_FRAMES=${SWEEP_FRAMES_TEST:-8}
  . scripts/env.sh
  [ -x "$BENCH" ] || BENCH=$root/target/release/trtvision-bench
  [ -f "$MODEL" ] || MODEL=$root/engines/shapes-yolo-seg.toml
fi
mkdir -p "$RES"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
echo "bench-baseline: budget ${BUDGET}s, cams $CAMS ($FRAMES frames), results $RES, dev $DEV, python $PYTHON"
"$PYTHON" -c 'import cv2, numpy, onnxruntime as o; print("python:", cv2.__version__, numpy.__version__, o.__version__, o.get_available_providers())' ||
  echo "bench-baseline: $PYTHON lacks cv2/numpy/onnxruntime: the baseline side will fail"

# 1. The comparison on run-all's 8 camera files (1080p), at most 45% of the budget.
t=$(( $(left) * 45 / 100 ))
if (( t >= 30 )); then
  echo "=== compare (timeout ${t}s)"
  timeout -k 5 "$t" benches/compare.sh $GPU --cameras 8 --size 1920x1080 --frames "$FRAMES" \
    --warmup $(( FRAMES >= 150 ? 30 : FRAMES / 5 )) --cams "$CAMS" --out-dir "$RES" --device "$DEV" \
    --date "$DATE" --timeout $(( t / 2 ))
  echo "compare: rc=$?"
else
  echo "compare: SKIPPED (${t}s of the budget)"
fi

# 2. The sweeps with what is left (camera files are made before the sweep's own budget
#    starts: 32 x 640x480 and 8 x 720p/1080p, $SWEEP_FRAMES frames each).
t=$(( $(left) - 10 ))
if (( t >= 30 )); then
  echo "=== sweep (timeout ${t}s)"
  timeout -k 5 "$t" benches/sweep.sh $GPU --frames "$SWEEP_FRAMES" --budget $(( t - 25 )) \
    --cams-root /tmp/trtv-cams --out-dir "$RES" --device "$DEV" --date "$DATE"
  echo "sweep: rc=$?"
else
  echo "sweep: SKIPPED (${t}s of the budget)"
fi
ls -la "$RES" | grep -E "seed-baseline|files-trtvision|sweep" || true
echo "bench-baseline: $(( $(date +%s) - START ))s"
