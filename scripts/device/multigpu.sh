#!/usr/bin/env bash
# Several GPUs: the cameras-per-GPU pipeline (cameras.sh: NVDEC -> trtmux -> trtpreprocess ->
# trtinfer -> trtmaskselect -> trtoverlay -> trtdemux) on one GPU, then one chain per GPU on
# all N GPUs at once (each chain in its own process, pinned with CUDA_VISIBLE_DEVICES, with
# CAMERAS cameras each), in the same call; writes the record `multigpu-cameras-<N>gpu` with
# fps_total of the N chains together over the one-GPU run as `ratio` (target >= 1.9 on 2 GPUs).
#
# Runs on the GPU machine from the repository copy's root, set up as for cameras.sh:
#   bash .device-build/multigpu.sh CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [PROPS]
# e.g.  bash .device-build/multigpu.sh 64 yolo11n-seg fp16 2 120 16
# CAMERAS is per GPU. PACE defaults to none (capacity: frames/s each chain sustains); with
# PACE=realtime the record also carries cameras_realtime summed over the chains.
# Environment as cameras.sh (OUT, DISTINCT, CONTENT_S, STAGES, SINK, PUSH_TIMEOUT); GPUS
# (default: every GPU nvidia-smi lists). Fails when fewer than 2 GPUs are there.
set -euo pipefail
cams=${1:?usage: multigpu.sh CAMERAS MODEL PRECISION SESSIONS DURATION [BATCH] [PROPS]}
model=${2:?model}; prec=${3:?precision}; sessions=${4:?sessions}; dur=${5:?duration}
batch=${6:-16}; props=${7:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$root/.device-out}
mkdir -p "$OUT"
gpus=${GPUS:-$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)}
if (( gpus < 2 )); then
  echo "multigpu.sh: $gpus GPU(s) here; the measurement needs 2 or more" >&2
  exit 3
fi
export PACE=${PACE:-none} REFERENCE=none
work=$(mktemp -d /tmp/trtv-multigpu.XXXXXX)

# One GPU.
OUT=$work/one TAG=gpu0 CUDA_VISIBLE_DEVICES=0 \
  bash "$here/cameras.sh" "$cams" "$model" "$prec" "$sessions" "$dur" "$batch" "$props"
# All GPUs, one chain each, started together.
pids=()
for g in $(seq 0 $((gpus - 1))); do
  OUT=$work/all TAG=gpu$g CUDA_VISIBLE_DEVICES=$g \
    bash "$here/cameras.sh" "$cams" "$model" "$prec" "$sessions" "$dur" "$batch" "$props" \
    > "$work/chain$g.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for g in $(seq 0 $((gpus - 1))); do sed "s/^/[gpu$g] /" "$work/chain$g.log"; done
(( rc == 0 )) || { echo "multigpu.sh: a chain failed" >&2; exit 1; }

dev=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 |
  sed -E 's/^NVIDIA +//' | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
out=$OUT/${dev:-gpu}-multigpu-cameras-${gpus}gpu-$(date -u +%Y%m%d).json
python3 - "$out" "$gpus" "$work/one" "$work/all" <<'PY'
import glob, json, sys
out, n = sys.argv[1], int(sys.argv[2])
one = json.load(open(glob.glob(sys.argv[3] + "/*.json")[0]))
chains = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[4] + "/*.json"))]
assert len(chains) == n, f"{len(chains)} chain records for {n} GPUs"
r = dict(one)
r["what"] = f"multigpu-cameras-{n}gpu"
r["gpus"] = n
r["cameras"] = sum(c["cameras"] for c in chains)
r["frames"] = sum(c["frames"] for c in chains)
r["fps_total"] = sum(c["fps_total"] for c in chains)
r["fps_per_camera"] = r["fps_total"] / r["cameras"]
r["fps_per_camera_min"] = min(c.get("fps_per_camera_min") or 0 for c in chains)
r["cameras_realtime"] = sum(c.get("cameras_realtime", 0) for c in chains)
r["latency_ms"] = {k: max((c.get("latency_ms") or {}).get(k) or 0 for c in chains) for k in ("p50", "p95", "p99")}
r["per_gpu"] = chains
r["reference"] = {"name": "one-gpu", "fps_total": one["fps_total"], "cameras": one["cameras"],
                  "cameras_realtime": one.get("cameras_realtime")}
r["ratio"] = r["fps_total"] / one["fps_total"] if one["fps_total"] else None
r["pipeline"] = f"{n} x ({one['pipeline']}), one process per GPU (CUDA_VISIBLE_DEVICES)"
json.dump(r, open(out, "w"), indent=2)
print(f"{n} GPUs: {r['fps_total']:.1f} frames/s vs one GPU {one['fps_total']:.1f} -> ratio {r['ratio']:.2f} (target >= {0.95 * n:.2f})")
PY
echo "record: $out"
