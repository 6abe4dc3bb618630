#!/usr/bin/env bash
# Quick start 2: install onnxslim-kd with test dependencies into .venv-test and run the
# whole test suite. torch 2.14.1 + torchvision 0.29.1 are pinned because the zoo tests
# export torchvision architectures and pip takes exactly these from the local disk.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv .venv-test -e ".[dev,distill]" torch==2.14.1 torchvision==0.29.1
# the executor's conformance suite: ONNX's node tests, from a pinned onnx wheel
.venv-test/bin/python scripts/fetch_node_tests.py
.venv-test/bin/python -m pytest "$@"
