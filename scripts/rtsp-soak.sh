#!/usr/bin/env bash
# Soak of 8 live RTSP cameras with a fault every 30 s (tests/rtsp_soak.rs).
#   scripts/rtsp-soak.sh [SECONDS]     (default 1800)
# Runs of 600 s or more write bench/results/cpu-rtsp-soak-<date>.json; shorter ones print
# the record and write it to the temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
TRTVISION_SOAK_S="${1:-1800}" exec cargo test --release --test rtsp_soak -- --ignored --nocapture
