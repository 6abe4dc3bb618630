"""`onnxslim-kd bench`: onnxruntime latency, several models interleaved."""

from __future__ import annotations

import argparse
import os

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE

EXAMPLES = """examples:
  onnxslim-kd bench model.onnx
  onnxslim-kd bench model.onnx model.slim.onnx --data calib.npz --batch 32 --threads 2
  onnxslim-kd bench a.onnx b.onnx --runs 200 --json=bench.json --markdown bench.md
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "bench",
        "onnxruntime CPU latency; several models are timed interleaved (A B A B)",
        EXAMPLES,
    )
    parser.add_argument("models", nargs="+", help="ONNX models; speed-ups are against the first")
    add_data_options(parser)
    add_shape_option(parser)
    parser.add_argument(
        "--threads", type=POSITIVE, default=os.cpu_count(), help="intra-op threads (all cores)"
    )
    parser.add_argument("--batch", type=POSITIVE, default=1, help="samples per run (1)")
    parser.add_argument("--runs", type=POSITIVE, default=100, help="timed runs per model (100)")
    parser.add_argument(
        "--warmup", type=NON_NEGATIVE, default=10, help="untimed runs per model (10)"
    )
    add_json_option(parser, "the timings and environment")
    parser.add_argument("--markdown", metavar="FILE", help="write the summary table to FILE")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add the per-op-type time from onnxruntime's profiler",
    )
    parser.set_defaults(
        handler="cli.run.bench",
        paths=PathRoles(inputs=("models", "data"), files=("json", "markdown")),
    )
