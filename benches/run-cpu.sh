#!/usr/bin/env bash
# CPU benchmark records for bench/results/ (see benches/README.md).
#
#   benches/run-cpu.sh [date]        # date used in the file names, default: today (YYYYMMDD)
#
# Builds trtvision-bench (release) and writes:
#   bench/results/cpu-8cam-cpu-<date>.json            8 x 640x480 NV12, yolo-seg, all stages, demux,
#                                                     sources-only reference, trtmux overhead keys
#   bench/results/cpu-8cam1080p-cpu-<date>.json       8 x 1920x1080 NV12, same pipeline, fewer frames
#   bench/results/cpu-trtmux-overhead-cpu-<date>.json trtmux overhead only (no model)
#   bench/results/cpu-multimodel-3cam-<date>.json     3 x 640x480 NV12, detector on all + depth on camera 0
#   bench/results/cpu-cascade-8cam-<date>.json        8 x 640x480 NV12, detector then landmarks on every object
# Each run stays under ~3 minutes on a 2-core machine. The JSON records the load average at
# start and end: results taken while other work runs on the machine are not comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
DATE="${1:-$(date +%Y%m%d)}"
OUT=bench/results
mkdir -p "$OUT"
# Optional: ONNX Runtime from the repository's .venv (otherwise found in site-packages).
[ -f scripts/env.sh ] && . scripts/env.sh
cargo build --release -p trtvision-tools --bin trtvision-bench
BENCH=target/release/trtvision-bench
MODEL=engines/shapes-yolo-seg.toml

set -x
"$BENCH" --what 8cam-cpu --cameras 8 --width 640 --height 480 --format NV12 \
    --model "$MODEL" --backend onnxruntime-cpu --sink demux --frames 120 --warmup 5 \
    --reference decode-only --trtmux-overhead --overhead-frames 600 --overhead-reps 5 \
    --out "$OUT/cpu-8cam-cpu-$DATE.json"

"$BENCH" --what 8cam1080p-cpu --cameras 8 --width 1920 --height 1080 --format NV12 \
    --model "$MODEL" --backend onnxruntime-cpu --sink demux --frames 30 --warmup 3 \
    --reference decode-only \
    --out "$OUT/cpu-8cam1080p-cpu-$DATE.json"

"$BENCH" --what trtmux-overhead --cameras 8 --width 640 --height 480 --format NV12 \
    --overhead-frames 1000 --overhead-reps 5 \
    --out "$OUT/cpu-trtmux-overhead-cpu-$DATE.json"

"$BENCH" --scenario multimodel --width 640 --height 480 --format NV12 --backend onnxruntime-cpu \
    --frames 60 --warmup 5 --reference decode-only \
    --out "$OUT/cpu-multimodel-3cam-$DATE.json"

"$BENCH" --scenario cascade --width 640 --height 480 --format NV12 --backend onnxruntime-cpu \
    --frames 40 --warmup 5 --reference decode-only \
    --out "$OUT/cpu-cascade-8cam-$DATE.json"
