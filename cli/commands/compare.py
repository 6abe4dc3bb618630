"""`onnxslim-kd compare`: fidelity of a candidate model against a reference on real data."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import POSITIVE

EXAMPLES = """examples:
  onnxslim-kd compare model.onnx model.int8.onnx --data test.npz
  onnxslim-kd compare model.onnx model.slim.onnx --data images/ --samples 500 --json -
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "compare",
        "top-1 agreement, accuracy, max abs diff, cosine and SQNR of CAND against REF",
        EXAMPLES,
    )
    parser.add_argument("reference", help="reference ONNX model (usually the original)")
    parser.add_argument("candidate", help="candidate ONNX model (usually the compressed one)")
    add_data_options(parser, required=True)
    parser.add_argument("--batch", type=POSITIVE, default=32, help="samples per inference (32)")
    parser.add_argument("--label-output", metavar="NAME",
                        help="the output the labels describe (default: the one [N, C] output "
                        "whose C is the labels' class count)")  # fmt: skip
    add_json_option(parser, "the fidelity record")
    parser.add_argument("--markdown", metavar="FILE", help="write the table to FILE")
    parser.set_defaults(
        handler="cli.run.compare",
        paths=PathRoles(inputs=("reference", "candidate", "data"), files=("json", "markdown")),
    )
