#!/usr/bin/env bash
# Cameras per GPU, several configurations in one device call (same machine, same content):
# scripts/device/cameras.sh once per line of a plan, each with `nvidia-smi dmon` (SM, memory,
# NVDEC utilisation per second) beside it, then one summary table.
#
# Runs on the GPU machine from the repository copy's root (as cameras.sh):
#   bash .device-build/cameras-sweep.sh PLAN_FILE DURATION
# PLAN_FILE: one run per line, `CAMERAS MODEL PRECISION SESSIONS BATCH [PROPS] [KEY=VALUE...]`
# (blank lines and # comments skipped); KEY=VALUE sets cameras.sh's environment for that
# run (REFERENCE, PACE, PUSH_TIMEOUT, TAG), e.g.
#   120 yolo11n-seg fp16 2 16 cuda-graph=true,prefer-nhwc=true REFERENCE=decode-only
#   120 yolo11n-seg fp16 4 16 cuda-graph=true,prefer-nhwc=true
# Runs without REFERENCE=... leave out the decode-only run (REFERENCE=none).
# Environment: SWEEP_BUDGET_S (skip the runs that would start after this many seconds,
# default 540), OUT (default .device-out); DISTINCT and CONTENT_S as for cameras.sh.
# Writes to $OUT: results.tar.gz (the records), logs.tar.gz (bench and dmon logs) and
# sweep-summary.txt (also printed last).
set -uo pipefail
plan=${1:?usage: cameras-sweep.sh PLAN_FILE DURATION}
dur=${2:?duration}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .device-build
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$root/.device-out}
res=$(mktemp -d /tmp/trtv-sweep-res.XXXX)
logs=$(mktemp -d /tmp/trtv-sweep-logs.XXXX)
budget=${SWEEP_BUDGET_S:-540}
start=$(date +%s)
mkdir -p "$OUT"
n=0
while read -r cams model prec sessions batch rest; do
  [[ -z "${cams:-}" || "$cams" == \#* ]] && continue
  n=$((n + 1))
  if (( $(date +%s) - start > budget )); then
    echo "sweep: run $n ($cams $model $prec s$sessions b$batch) skipped: past ${budget} s" | tee -a "$logs/skipped.txt"
    continue
  fi
  props=""
  envs=()
  for word in $rest; do
    case $word in
      REFERENCE=*|PACE=*|PUSH_TIMEOUT=*|TAG=*|STAGES=*|SINK=*) envs+=("$word") ;;
      *) props=$word ;;
    esac
  done
  tag="run$n"
  nvidia-smi dmon -s um -d 1 > "$logs/$tag-dmon.log" 2>&1 &
  dmon=$!
  echo "== $tag: $cams cameras $model $prec sessions=$sessions batch=$batch $props ${envs[*]}"
  env REFERENCE=none "${envs[@]}" OUT="$res" bash "$here/cameras.sh" "$cams" "$model" "$prec" "$sessions" "$dur" "$batch" "$props" \
    > "$logs/$tag.log" 2>&1
  echo "   exit $?: $(tail -n 1 "$logs/$tag.log")"
  kill "$dmon" 2>/dev/null
  wait "$dmon" 2>/dev/null
  # Mean SM / memory / NVDEC utilisation over the run's middle (skip the first 25 % start-up).
  python3 - "$logs/$tag-dmon.log" <<'PY' | tee -a "$logs/$tag.log"
import sys
rows = []
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("#") or not line.strip():
        continue
    f = line.split()
    try:
        rows.append([float(x) if x != "-" else 0.0 for x in f[1:6]])
    except ValueError:
        pass
if rows:
    mid = rows[len(rows) // 4 :] or rows
    cols = ["sm", "mem", "enc", "dec", "jpg"]
    print("   dmon mean " + " ".join(f"{c} {sum(r[i] for r in mid) / len(mid):.0f}%" for i, c in enumerate(cols)))
PY
done < "$plan"

python3 - "$res" <<'PY' | tee "$OUT/sweep-summary.txt"
import glob, json, os, sys
print("record | cameras | sessions | batch | fps total | per camera mean/min/p5 | p50/p99 ms | worst 10s min fps | cpu | vram MiB | decode-only")
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")), key=os.path.getmtime):
    r = json.load(open(path))
    lat = r.get("latency_ms") or {}
    pc = r.get("per_camera") or {}
    ref = (r.get("reference") or {}).get("fps_total")
    vram = (r.get("vram_mib") or {}).get("above_baseline_steady")
    props = r.get("infer_props", "")
    s = next((w.split("=")[1] for w in props.split() if w.startswith("sessions=")), "?")
    print(f"{os.path.basename(path)} | {r.get('cameras')} | {s} | {r.get('batch_size')} | {r.get('fps_total')} | "
          f"{r.get('fps_per_camera')}/{r.get('fps_per_camera_min')}/{r.get('fps_per_camera_p5')} | "
          f"{lat.get('p50')}/{lat.get('p99')} | {pc.get('worst_window_fps_per_camera_min')} | {r.get('cpu_cores')} | {vram} | {ref}")
PY
tar -C "$res" -czf "$OUT/results.tar.gz" .
tar -C "$logs" -czf "$OUT/logs.tar.gz" .
