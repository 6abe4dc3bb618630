#!/usr/bin/env bash
# Quick start 1: install onnxslim-kd (core dependencies only, no torch) into .venv and
# compress the bundled digits sample, printing the before/after table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv .venv -e .
mkdir -p out
.venv/bin/onnxslim-kd compress samples/digits/model.onnx -o out/digits.slim.onnx \
    --data samples/digits/calib.npz --eval-data samples/digits/test.npz "$@"
