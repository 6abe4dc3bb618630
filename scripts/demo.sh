#!/usr/bin/env bash
# Quick start 1: install onnxslim-kd with its distill extra into .venv (torch 2.13.0 is
# the CPU build pip takes from this machine's disk in seconds) and compress the bundled
# digits sample with the default recipe (prune to half the MACs -> decompose where
# faster -> distill -> quantize) within a 2-point accuracy budget, printing the
# before/after table. Extra arguments go to `compress` (e.g. --target-speedup 4).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv .venv -e ".[distill,report]" torch==2.13.0
mkdir -p out
.venv/bin/onnxslim-kd compress samples/digits/model.onnx -o out/digits.slim.onnx \
    --data samples/digits/train.npz --eval-data samples/digits/test.npz \
    --max-drop 0.02 --html out/digits.report.html "$@"
