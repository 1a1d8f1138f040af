#!/usr/bin/env bash
# Sets up everything gst-trtvision needs on a Debian 12 / Ubuntu 24.04 machine that is
# missing it, then builds the plugin and generates the test models. Idempotent: what is
# already there is not installed again.
#
#   scripts/setup.sh            set up and build (release)
#   TRTVISION_PROFILE=debug     build the debug profile instead
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. Debian packages: GStreamer 1.22+ with development files, the plugins the demo and the
#    tests use (videotestsrc, x264enc, mp4mux, appsrc/appsink, an H.264 decoder to read
#    recordings back), pkg-config, a C compiler, python venv, PyGObject with GStreamer's
#    introspection data (the Python examples), the RTSP server library (the live-camera
#    tests) and the message brokers the trtmsgbroker tests start on loopback ports
#    (mosquitto, redis-server, nats-server; their services are not needed), openssl, which
#    makes the throw-away CA of the TLS tests, and meson and ninja for the meson build
#    (scripts/meson-check.sh).
PKGS=(pkg-config build-essential git curl ca-certificates python3 python3-venv python3-pip
      meson ninja-build
      python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
      gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
      gstreamer1.0-libav libgstrtspserver-1.0-dev
      mosquitto mosquitto-clients redis-server redis-tools nats-server openssl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Rust toolchain (rustup) when cargo is missing.
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        say "installing the Rust toolchain with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

# 3. Python environment with ONNX Runtime (its shared library is what the plugin loads)
#    and the model generator's needs, in .venv (PEP 668 keeps system pip read-only).
#    scripts/env.sh puts .venv/bin first on PATH, so the venv is made from the system's
#    Python with --system-site-packages: its python3 also sees Debian's PyGObject (gi), which
#    pip cannot install without a compiler toolchain for it. A .venv from before (no gi) is
#    made again.
sys_python=/usr/bin/python3
[ -x "$sys_python" ] || sys_python=python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnxruntime, onnx, numpy, gi" 2>/dev/null; then
    say "creating .venv (system site packages) with onnxruntime, onnx and numpy"
    rm -rf .venv
    "$sys_python" -m venv --system-site-packages .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r engines/requirements.txt
fi

# 3b. NVRTC from PyPI's nvidia-cuda-nvrtc wheel: the CUDA kernels compile with it on any
#     machine (no GPU, no CUDA toolkit); .ci/run puts its library directory on
#     LD_LIBRARY_PATH for the kernel-compile tests (`scripts/nvrtc-libdir.sh` finds it).
if [ -z "$(scripts/nvrtc-libdir.sh)" ]; then
    say "installing NVRTC (nvidia-cuda-nvrtc) into .venv"
    .venv/bin/python -m pip install -q "nvidia-cuda-nvrtc>=13,<14"
fi

# 4. Test models (generated, never downloaded) and their self-check: the synthetic "shapes"
#    models and the YOLO11n / YOLO11n-seg architectures with random weights (benchmarks and
#    the real-architecture tests; about 10 s and 33 MB together).
stale=0
[ -f engines/models/.generated ] || stale=1
for f in engines/generate_models.py engines/yolo11.py engines/convert_fp16.py engines/generate_promptseg_models.py; do
    [ "$f" -nt engines/models/.generated ] && stale=1
done
if [ "$stale" = 1 ]; then
    say "generating test models in engines/models"
    .venv/bin/python engines/generate_models.py --out engines/models --yolo11
    .venv/bin/python engines/generate_models.py --out engines/models --yolo11 --check >/dev/null
    .venv/bin/python engines/generate_promptseg_models.py --out engines/models
    .venv/bin/python engines/generate_promptseg_models.py --out engines/models --check >/dev/null
    touch engines/models/.generated
fi

# 5. The plugin.
profile="${TRTVISION_PROFILE:-release}"
say "building the plugin ($profile)"
if [ "$profile" = release ]; then
    cargo build --release --quiet
else
    cargo build --quiet
fi
say "done: source scripts/env.sh to use the plugin from this checkout"
