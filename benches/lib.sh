# Shared by benches/compare.sh, benches/sweep.sh and scripts/device/bench-baseline.sh
# (source it; it sets nothing else).

# make_cam_files DIR CAMERAS WIDTH HEIGHT FRAMES: DIR/cam<i>.mp4 for every missing i, from
# the synthetic scene: trtscenesrc ! x264enc (ultrafast) ! H.264 High, 4:2:0 (I420) ! mp4mux,
# 30 fps, one encoder per camera in parallel. Needs gst-launch-1.0 and the trtvision plugin
# on GST_PLUGIN_PATH. Existing files are kept (whatever their size or length).
make_cam_files() {
  local dir=$1 n=$2 w=$3 h=$4 f=$5 i rc=0
  local pids=()
  mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    [ -s "$dir/cam$i.mp4" ] && continue
    nice gst-launch-1.0 -q trtscenesrc camera=$i num-buffers="$f" \
      ! "video/x-raw,format=I420,width=$w,height=$h,framerate=30/1" \
      ! x264enc speed-preset=ultrafast ! video/x-h264,profile=high ! h264parse ! mp4mux \
      ! filesink location="$dir/cam$i.mp4.part" && mv "$dir/cam$i.mp4.part" "$dir/cam$i.mp4" ||
      rm -f "$dir/cam$i.mp4.part" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  for ((i = 0; i < n; i++)); do
    [ -s "$dir/cam$i.mp4" ] || { echo "make_cam_files: $dir/cam$i.mp4 was not made" >&2; rc=1; }
  done
  return $rc
}

# software_h264_decoder: avdec_h264 when installed, else openh264dec.
software_h264_decoder() {
  if gst-inspect-1.0 avdec_h264 >/dev/null 2>&1; then echo avdec_h264; else echo openh264dec; fi
}

# device_short_name: "h100" etc. from nvidia-smi (as scripts/device/run-all.sh), "cpu" without a GPU.
device_short_name() {
  local n
  n=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$n" ] || { echo cpu; return; }
  echo "$n" | sed -E 's/^NVIDIA +//; s/^GeForce +//' | awk '{print tolower($1)}' | tr -cd 'a-z0-9'
}

# bench_python: prints a python that has the baseline's requirements. $PYTHON when set
# (used as is); else $BENCH_VENV (default .venv), created and completed from
# benches/baseline/requirements.txt when something is missing.
bench_python() {
  local root=$1
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local venv=${BENCH_VENV:-$root/.venv}
  local need="import cv2, numpy, onnxruntime${BENCH_PY_EXTRA:+, $BENCH_PY_EXTRA}"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$need" 2>/dev/null; then
    echo "$venv/bin/python"; return
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2 || return 1
  echo "bench_python: installing benches/baseline/requirements.txt into $venv" >&2
  "$venv/bin/python" -m pip install -q -r "$root/benches/baseline/requirements.txt" >&2 || return 1
  echo "$venv/bin/python"
}
