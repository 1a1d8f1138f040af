#!/usr/bin/env bash
# trtvision vs the seed-style Python baseline on the same H.264 files, model and frames.
#
#   benches/compare.sh [options]
#     --gpu             GPU run: ours with --nvdec --backend onnxruntime-cuda --pcie, the
#                       baseline with --provider cuda (default: CPU on both sides)
#     --cameras N       (default 8)       --size WxH   (default 640x480)
#     --frames F        frames per camera file (default 90)   --warmup W (default 10)
#     --cams DIR        camera files DIR/cam<i>.mp4, made when missing
#                       (default /tmp/trtv-cams/<W>x<H>-<F>f)
#     --out-dir DIR     (default bench/results)   --device NAME (default cpu, or h100 etc.)
#     --date YYYYMMDD   (default today, UTC)      --timeout S  per side (default 600)
#     --repeat R        run the sides alternately R times; each is represented by its
#                       median-fps run (all fps kept in the record; default 1)
#   Environment: BENCH (trtvision-bench binary; default target/release/trtvision-bench,
#   built with cargo), MODEL (default engines/shapes-yolo-seg.toml), DECODER (ours without
#   --gpu: default avdec_h264, else openh264dec), PYTHON (used as is) or BENCH_VENV (default
#   .venv; benches/baseline/requirements.txt is installed there when missing).
#
# Writes into the out dir:
#   <dev>-<N>cam-vs-seed-baseline-<date>.json  the comparison record (ours + reference + ratios)
#   <dev>-<N>cam-files-trtvision-<date>.json   our side (trtvision-bench --source files)
#   <dev>-<N>cam-seed-baseline-<date>.json     the baseline side
# and prints the ratio table (markdown).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. benches/lib.sh

GPU=0 CAMERAS=8 SIZE=640x480 FRAMES=90 WARMUP=10 CAMS="" OUTDIR=bench/results DEV="" DATE="" TIMEOUT=600 REPEAT=1
while [ $# -gt 0 ]; do
  case $1 in
    --gpu) GPU=1 ;;
    --cameras) CAMERAS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --frames) FRAMES=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --cams) CAMS=$2; shift ;;
    --out-dir) OUTDIR=$2; shift ;;
    --device) DEV=$2; shift ;;
    --date) DATE=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
W=${SIZE%x*} H=${SIZE#*x}
DATE=${DATE:-$(date -u +%Y%m%d)}
CAMS=${CAMS:-/tmp/trtv-cams/${W}x${H}-${FRAMES}f}
MODEL=${MODEL:-engines/shapes-yolo-seg.toml}
if [ -z "$DEV" ]; then
  if (( GPU )); then DEV=$(device_short_name); else DEV=cpu; fi
fi
mkdir -p "$OUTDIR"

[ -f scripts/env.sh ] && [ -z "${TRTV_LOCAL_TEST:-}${BENCH:-}" ] && . scripts/env.sh
if [ -z "${BENCH:-}" ]; then
  cargo build --release -p trtvision-tools --bin trtvision-bench >&2
  BENCH=target/release/trtvision-bench
fi
PY=$(bench_python "$root")

make_cam_files "$CAMS" "$CAMERAS" "$W" "$H" "$FRAMES"

ours=$OUTDIR/$DEV-${CAMERAS}cam-files-trtvision-$DATE.json
base=$OUTDIR/$DEV-${CAMERAS}cam-seed-baseline-$DATE.json
comb=$OUTDIR/$DEV-${CAMERAS}cam-vs-seed-baseline-$DATE.json
if (( GPU )); then
  OURS_ARGS=(--nvdec --backend onnxruntime-cuda --pcie)
  BASE_ARGS=(--provider cuda)
else
  OURS_ARGS=(--decoder "${DECODER:-$(software_h264_decoder)}" --backend onnxruntime-cpu)
  BASE_ARGS=(--provider cpu)
fi

tmp=$(mktemp -d /tmp/trtv-compare.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for ((r = 1; r <= REPEAT; r++)); do
  echo "=== [$r/$REPEAT] trtvision: $CAMERAS x $CAMS/cam<i>.mp4 (${W}x$H, $FRAMES frames)" >&2
  timeout "$TIMEOUT" "$BENCH" --what "${CAMERAS}cam-files-trtvision" --cameras "$CAMERAS" --width "$W" --height "$H" \
    --source files "$CAMS" "${OURS_ARGS[@]}" --model "$MODEL" --sink demux \
    --frames "$FRAMES" --warmup "$WARMUP" --out "$tmp/ours-$r.json"
  echo "=== [$r/$REPEAT] seed baseline: the same files, model and frames" >&2
  timeout "$TIMEOUT" "$PY" benches/baseline/seed_baseline.py --what "${CAMERAS}cam-seed-baseline" --files "$CAMS" \
    --cameras "$CAMERAS" --warmup "$WARMUP" --model "$MODEL" "${BASE_ARGS[@]}" --out "$tmp/base-$r.json"
done
"$PY" benches/baseline/combine.py --ours "$tmp"/ours-*.json --baseline "$tmp"/base-*.json \
  --out "$comb" --what "${CAMERAS}cam-vs-seed-baseline"
# The two sides as they stand in the comparison (the median runs).
"$PY" - "$comb" "$ours" "$base" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))
base = rec["seed_baseline"]
ours = {k: v for k, v in rec.items() if k not in ("seed_baseline", "ratios", "ratios_note", "repeats", "trtvision_what")}
ours.update(what=rec["trtvision_what"], reference=None, ratio=None)
open(sys.argv[2], "w").write(json.dumps(ours, indent=1) + "\n")
open(sys.argv[3], "w").write(json.dumps(base, indent=1) + "\n")
PY
