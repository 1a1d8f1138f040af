#!/usr/bin/env bash
# The GPU peer against the plugin chain: 2 short shapes-scene H.264 files, the chain's
# detections on them (trtjsonexport), then gpu_peer.py twice (batch 2 with 2 sessions, paced;
# batch 1 with 1 session, unpaced) and compare_peer.py: both peer runs give the same results,
# and the same classes and boxes (within 2 px) as the chain.
#   bash benches/baseline/check-gpu-peer.sh [DIR]
# On a CPU machine (the default, PEER_ARGS=--dry-run) the peer decodes with GStreamer and
# computes with numpy; on the GPU machine scripts/device/peer.sh check runs it with
# PEER_ARGS= (PyNvVideoCodec, torch, ONNX Runtime CUDA) and DECODER=nvh264dec for the chain.
# Needs the plugin on GST_PLUGIN_PATH (. scripts/env.sh after cargo build --release), x264enc,
# the DECODER (default avdec_h264), MODEL_CONFIG (default engines/shapes-yolo-seg.toml) and python3 with onnxruntime and numpy (the .venv's).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${1:-$(mktemp -d /tmp/trtv-peer-check.XXXXXX)}
frames=${FRAMES:-30}
mkdir -p "$dir"
cd "$root"
src=()
for i in 0 1; do
  gst-launch-1.0 -q trtscenesrc pattern=shapes camera=$i num-buffers="$frames" \
    ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! video/x-raw,format=I420 \
    ! x264enc bitrate=1000 key-int-max=30 bframes=0 speed-preset=ultrafast ! h264parse ! mp4mux \
    ! filesink location="$dir/cam$i.mp4"
  src+=(filesrc location="$dir/cam$i.mp4" ! qtdemux ! h264parse ! "${DECODER:-avdec_h264}" ! videoconvert
        ! video/x-raw,format=NV12 ! m.sink_$i)
done
model=${MODEL_CONFIG:-engines/shapes-yolo-seg.toml}
gst-launch-1.0 -q trtmux name=m batch-size=2 ! trtpreprocess config-file=$model ! trtinfer model=$model \
  ! trtmaskselect ! trtjsonexport location="$dir/chain.jsonl" ! fakesink "${src[@]}"
read -r -a mode <<< "${PEER_ARGS---dry-run}"
common=("${mode[@]}" --files "$dir" --cameras 2 --model $model --frames "$frames" --duration 0 --warmup-s 0.2)
python3 "$here/gpu_peer.py" "${common[@]}" --batch-size 2 --sessions 2 --decode-threads 2 \
  --results-out "$dir/peer-b2-s2.json" --out "$dir/record.json"
python3 "$here/gpu_peer.py" "${common[@]}" --batch-size 1 --sessions 1 --decode-threads 1 --pace none \
  --results-out "$dir/peer-b1-s1.json" --out "$dir/record-b1.json"
python3 "$here/compare_peer.py" "$dir/peer-b2-s2.json" "$dir/peer-b1-s1.json" --chain "$dir/chain.jsonl"
