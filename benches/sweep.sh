#!/usr/bin/env bash
# Throughput sweeps of the full pipeline (files -> decode -> trtmux -> preprocess -> infer ->
# maskselect -> overlay -> trtdemux -> fakesinks, model engines/shapes-yolo-seg.toml):
#   cameras     1, 2, 4, 8, 16, 32 at 640x480, batch-size = cameras up to the model's
#               max-batch (16 for shapes-yolo-seg: 32 cameras run in batches of 16)  (what sweep-cameras-<N>)
#   batch size  1, 2, 4, 8, 16 at 8 cameras 640x480                    (what sweep-batch-<B>)
#   resolution  640x480, 1280x720, 1920x1080 at 8 cameras, batch 8     (what sweep-res-<W>x<H>)
#
#   benches/sweep.sh [options]
#     --gpu            ours with --nvdec --backend onnxruntime-cuda (default: CPU decoder
#                      $DECODER or avdec_h264/openh264dec, onnxruntime-cpu)
#     --frames F       frames per camera file (default 60; 30 with --gpu)  --warmup W (default F/6)
#     --budget S       seconds for everything, making missing camera files included: a run
#                      gets at most what is left, none starts with less than 10 s left, and
#                      skipped runs are listed in the record (default 900; 150 with --gpu)
#     --only LIST      comma list of cameras,batch,res (default all three)
#     --cams-root DIR  camera files go to DIR/<W>x<H>-<F>f/ (default /tmp/trtv-cams)
#     --out-dir DIR    (default bench/results)  --device NAME (default cpu, or h100 etc.)
#     --date YYYYMMDD  (default today, UTC)
#   Environment: BENCH (default target/release/trtvision-bench, built with cargo), MODEL,
#   DECODER, PYTHON / BENCH_VENV (a python with matplotlib for the plot; see compare.sh).
#
# Writes <out-dir>/<dev>-sweep-<date>.json (what "sweep": every run's full trtvision-bench
# record in `runs`, plus a `table` of the headline numbers) and <dev>-sweep-<date>.png
# (throughput vs cameras and vs batch size, benches/plot.py).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
. benches/lib.sh

GPU=0 FRAMES="" WARMUP="" BUDGET="" ONLY=cameras,batch,res CAMS_ROOT=/tmp/trtv-cams OUTDIR=bench/results DEV="" DATE=""
while [ $# -gt 0 ]; do
  case $1 in
    --gpu) GPU=1 ;;
    --frames) FRAMES=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --cams-root) CAMS_ROOT=$2; shift ;;
    --out-dir) OUTDIR=$2; shift ;;
    --device) DEV=$2; shift ;;
    --date) DATE=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if (( GPU )); then FRAMES=${FRAMES:-30} BUDGET=${BUDGET:-150}; else FRAMES=${FRAMES:-60} BUDGET=${BUDGET:-900}; fi
WARMUP=${WARMUP:-$(( FRAMES / 6 ))}
DATE=${DATE:-$(date -u +%Y%m%d)}
MODEL=${MODEL:-engines/shapes-yolo-seg.toml}
if [ -z "$DEV" ]; then
  if (( GPU )); then DEV=$(device_short_name); else DEV=cpu; fi
fi
START=$(date +%s)
mkdir -p "$OUTDIR"
RUNS=$(mktemp -d /tmp/trtv-sweep.XXXXXX)

[ -f scripts/env.sh ] && [ -z "${TRTV_LOCAL_TEST:-}${BENCH:-}" ] && . scripts/env.sh
if [ -z "${BENCH:-}" ]; then
  cargo build --release -p trtvision-tools --bin trtvision-bench >&2 || exit 1
  BENCH=target/release/trtvision-bench
fi
if (( GPU )); then
  ARGS=(--nvdec --backend onnxruntime-cuda)
else
  ARGS=(--decoder "${DECODER:-$(software_h264_decoder)}" --backend onnxruntime-cpu)
fi

# Camera files first (made once, kept in --cams-root; their encoding counts in the budget).
want() { [[ ",$ONLY," == *",$1,"* ]]; }
NMAX=8
want cameras && NMAX=32
make_cam_files "$CAMS_ROOT/640x480-${FRAMES}f" "$NMAX" 640 480 "$FRAMES" || exit 1
if want res; then
  make_cam_files "$CAMS_ROOT/1280x720-${FRAMES}f" 8 1280 720 "$FRAMES" || exit 1
  make_cam_files "$CAMS_ROOT/1920x1080-${FRAMES}f" 8 1920 1080 "$FRAMES" || exit 1
fi

SKIPPED=()
# run WHAT CAMERAS BATCH WxH: one trtvision-bench record in $RUNS.
run() {
  local what=$1 n=$2 b=$3 size=$4
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < 10 )); then
    echo "--- $what: skipped (budget of ${BUDGET}s spent)" >&2
    SKIPPED+=("$what"); return
  fi
  echo "--- $what: $n cameras, batch $b, $size (${left}s of the budget left)" >&2
  timeout -k 5 "$left" "$BENCH" --what "$what" --cameras "$n" --batch-size "$b" \
    --width "${size%x*}" --height "${size#*x}" --source files "$CAMS_ROOT/$size-${FRAMES}f" "${ARGS[@]}" \
    --model "$MODEL" --sink demux --frames "$FRAMES" --warmup "$WARMUP" --out "$RUNS/$what.json" ||
    { echo "--- $what: failed or timed out (rc $?)" >&2; SKIPPED+=("$what(failed)"); }
}
# The model's largest batch ([model] max-batch): more cameras are batched in several batches.
MAXB=$(sed -nE 's/^max-batch *= *([0-9]+).*/\1/p' "$MODEL" | head -1)
MAXB=${MAXB:-16}
if want cameras; then for n in 1 2 4 8 16 32; do run "sweep-cameras-$n" "$n" $(( n < MAXB ? n : MAXB )) 640x480; done; fi
if want batch; then for b in 1 2 4 8 16; do (( b <= MAXB )) && run "sweep-batch-$b" 8 "$b" 640x480; done; fi
if want res; then for s in 640x480 1280x720 1920x1080; do run "sweep-res-$s" 8 8 "$s"; done; fi

out=$OUTDIR/$DEV-sweep-$DATE.json
cmd="benches/sweep.sh $(if (( GPU )); then echo --gpu; fi) --frames $FRAMES --warmup $WARMUP --budget $BUDGET --only $ONLY"
python3 - "$RUNS" "$out" "$cmd" "$(( $(date +%s) - START ))" "${SKIPPED[@]}" <<'PY'
import glob, json, os, sys
runs_dir, out, cmd, wall = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
skipped = sys.argv[5:]
order = {"cameras": 0, "batch": 1, "res": 2}
def key(r):
    kind = r["what"].split("-")[1]
    return (order.get(kind, 9), r["cameras"] if kind == "cameras" else r["batch_size"] if kind == "batch" else r["width"])
runs = sorted((json.load(open(f)) for f in glob.glob(os.path.join(runs_dir, "*.json"))), key=key)
if not runs:
    sys.exit("sweep: no run produced a record")
first = runs[0]
table = [{k: r.get(k) for k in ("what", "cameras", "batch_size", "width", "height", "frames", "fps_total",
                                "fps_per_camera", "cpu_cores")} |
         {"latency_p50_ms": (r.get("latency_ms") or {}).get("p50"),
          "latency_p95_ms": (r.get("latency_ms") or {}).get("p95"),
          "rss_steady_mib": (r.get("rss_mib") or {}).get("steady"),
          "vram_steady_mib": (r.get("vram_mib") or {}).get("steady"),
          "mean_batch_fill": r.get("mean_batch_fill")} for r in runs]
rec = {
    "device": first["device"], "date": first["date"], "commit": first["commit"],
    "commit_dirty": any(r.get("commit_dirty") for r in runs), "what": "sweep",
    "pipeline": cmd + " :: each run: " + first["pipeline"].split(" :: ")[0],
    "cameras": None, "width": None, "height": None, "batch_size": None,
    "model": first["model"], "backend": first["backend"],
    "frames": sum(r["frames"] for r in runs), "fps_total": None, "fps_per_camera": None,
    "latency_ms": None, "cpu_cores": None, "rss_mib": None, "vram_mib": None,
    "h2d_bytes_per_frame": None, "d2h_bytes_per_frame": None, "reference": None, "ratio": None,
    "note": "one record per run in `runs` (what sweep-cameras-<N>, sweep-batch-<B>, sweep-res-<W>x<H>); "
            "headline numbers of each in `table`",
    "sweep_wall_s": wall, "skipped": skipped, "table": table, "runs": runs,
}
with open(out, "w") as f:
    f.write(json.dumps(rec, indent=1) + "\n")
print(f"wrote {out}", file=sys.stderr)
print(f"{'what':24} {'cams':>4} {'batch':>5} {'size':>10} {'fps':>8} {'fps/cam':>8} {'p50 ms':>8} {'p95 ms':>8} {'cores':>6}")
for t in table:
    print(f"{t['what']:24} {t['cameras']:>4} {t['batch_size']:>5} {str(t['width'])+'x'+str(t['height']):>10} "
          f"{t['fps_total']:>8.1f} {t['fps_per_camera']:>8.2f} {t['latency_p50_ms'] or 0:>8.1f} "
          f"{t['latency_p95_ms'] or 0:>8.1f} {t['cpu_cores'] or 0:>6.2f}")
PY
rc=$?
rm -rf "$RUNS"
(( rc == 0 )) || exit $rc
PY=$(BENCH_PY_EXTRA=matplotlib bench_python "$root") && "$PY" benches/plot.py "$out" "${out%.json}.png" ||
  echo "sweep.sh: no plot (no python with matplotlib)" >&2
