#!/usr/bin/env bash
# The GPU peer against the plugin chain: 2 short shapes-scene H.264 files, the chain's
# detections on them (trtjsonexport) with the segmentation and the detection model, then
# gpu_peer.py: the segmentation model twice (batch 2 with 2 sessions, paced; batch 1 with 1
# session, unpaced), the detection model once, and compare_peer.py: both segmentation runs give
# the same results, and every run the chain's classes and boxes (within 2 px).
#   bash benches/baseline/check-gpu-peer.sh [DIR]
# On a CPU machine (the default, PEER_ARGS=--dry-run) the peer decodes with GStreamer and
# computes with numpy; on the GPU machine scripts/device/peer.sh check runs it with
# PEER_ARGS= (PyNvVideoCodec, torch, ONNX Runtime CUDA) and DECODER=nvh264dec for the chain.
# Needs the plugin on GST_PLUGIN_PATH (. scripts/env.sh after cargo build --release), x264enc,
# the DECODER (default avdec_h264), MODEL_CONFIG and DET_MODEL_CONFIG (default
# engines/shapes-yolo-seg.toml, engines/shapes-yolo.toml) and python3 with onnxruntime and numpy (the .venv's).
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
# The segmentation model (boxes and masks), then the detection model.
seg=${MODEL_CONFIG:-engines/shapes-yolo-seg.toml}
det=${DET_MODEL_CONFIG:-engines/shapes-yolo.toml}
chain() {
  gst-launch-1.0 -q trtmux name=m batch-size=2 ! trtpreprocess config-file="$1" ! trtinfer model="$1" \
    ! trtmaskselect ! trtjsonexport location="$2" ! fakesink "${src[@]}"
}
chain "$seg" "$dir/chain.jsonl"
chain "$det" "$dir/chain-det.jsonl"
read -r -a mode <<< "${PEER_ARGS---dry-run}"
common=("${mode[@]}" --files "$dir" --cameras 2 --frames "$frames" --duration 0 --warmup-s 0.2)
python3 "$here/gpu_peer.py" "${common[@]}" --model "$seg" --batch-size 2 --sessions 2 --decode-threads 2 \
  --results-out "$dir/peer-b2-s2.json" --out "$dir/record.json"
python3 "$here/gpu_peer.py" "${common[@]}" --model "$seg" --batch-size 1 --sessions 1 --decode-threads 1 --pace none \
  --results-out "$dir/peer-b1-s1.json" --out "$dir/record-b1.json"
python3 "$here/gpu_peer.py" "${common[@]}" --model "$det" --batch-size 2 --sessions 2 --decode-threads 2 \
  --results-out "$dir/peer-det.json" --out "$dir/record-det.json"
python3 "$here/compare_peer.py" "$dir/peer-b2-s2.json" "$dir/peer-b1-s1.json" --chain "$dir/chain.jsonl"
python3 "$here/compare_peer.py" "$dir/peer-det.json" --chain "$dir/chain-det.jsonl"
