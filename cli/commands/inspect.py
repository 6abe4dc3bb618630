"""`onnxslim-kd inspect`: what is in a model."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import POSITIVE

EXAMPLES = """examples:
  onnxslim-kd inspect model.onnx
  onnxslim-kd inspect model.onnx --shape input=1x3x224x224 --json
  onnxslim-kd inspect detector.onnx --data calib.npz     # MACs at the data's H and W
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "inspect",
        "inputs, outputs, opset, params, MACs, size, op histogram",
        EXAMPLES,
    )
    parser.add_argument("model", help="ONNX model file")
    add_shape_option(parser)
    add_data_options(parser)
    parser.add_argument(
        "--batch", type=POSITIVE, default=1, help="size of a dynamic batch axis (1)"
    )
    parser.add_argument("--per-node", action="store_true", help="include MACs of every node")
    add_json_option(parser, "the statistics")
    parser.set_defaults(
        handler="cli.run.inspect", paths=PathRoles(inputs=("model", "data"), files=("json",))
    )
