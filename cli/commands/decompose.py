"""`onnxslim-kd decompose`: low-rank factorisation (SVD, Tucker-2) where it makes layers faster."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_budget_options,
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import FRACTION_KEEP
from onnxslim_kd.defaults import DECOMPOSE_METHODS, DEFAULT_MIN_SQNR

EXAMPLES = """examples:
  onnxslim-kd decompose model.onnx -o model.lr.onnx                  # keep 95 % energy per layer
  onnxslim-kd decompose model.onnx -o model.lr.onnx --energy 0.9 --measure
  onnxslim-kd decompose model.onnx -o model.lr.onnx --rank-ratio 0.25 --exclude '*classifier*'
  onnxslim-kd decompose model.onnx -o model.lr.onnx --target-macs 0.5 --json=report.json
  onnxslim-kd decompose model.onnx -o model.lr.onnx --vbmf --method tucker
  onnxslim-kd decompose model.onnx -o model.lr.onnx --energy 0.8 --data calib.npz \\
      --max-drop 0.02

A layer is factorised only when its ranks (rounded up to multiples of 8) cut its MACs,
with --measure when onnxruntime runs the factorised layer faster at its real input shape,
and with --max-drop when the outputs on --data stay within the budget: the layers whose
factorisation alone hurts the outputs most keep their full rank until it holds. --data
alone measures every output and warns past the default floors.
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "decompose",
        "low-rank factorisation: SVD for Gemm/MatMul/1x1 Conv, Tucker-2 for kxk Conv",
        EXAMPLES,
    )
    parser.add_argument("model", help="input ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument(
        "--method",
        choices=DECOMPOSE_METHODS,
        default="auto",
        help="svd: only Gemm/MatMul/1x1 Conv; tucker: only kxk Conv (auto: both)",
    )
    ranks = parser.add_mutually_exclusive_group()
    ranks.add_argument(
        "--energy",
        type=FRACTION_KEEP,
        metavar="E",
        help="keep this fraction of squared singular values per layer (0.95)",
    )
    ranks.add_argument(
        "--rank-ratio", type=FRACTION_KEEP, metavar="R", help="rank = R x full rank of each mode"
    )
    ranks.add_argument("--vbmf", action="store_true", help="ranks by variational Bayes (EVBMF)")
    ranks.add_argument(
        "--target-macs",
        type=FRACTION_KEEP,
        metavar="F",
        help="keep at most this fraction of the model's MACs",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="time each layer in onnxruntime; keep only faster factorisations",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="glob over node names or op types to leave alone, e.g. '*fc*' Gemm",
    )
    add_budget_options(
        parser,
        "with --data: accuracy budget as a fraction (0.01 = one point) against the "
        "original, without fine-tuning; sensitive layers keep their full rank",
        "with --max-drop: SQNR floor in dB of outputs that are not class scores (%(default)s)",
        min_sqnr=DEFAULT_MIN_SQNR,
    )
    add_shape_option(parser)
    add_data_options(parser)
    add_json_option(parser, "the summary")
    parser.set_defaults(
        handler="cli.run.decompose",
        paths=PathRoles(inputs=("model", "data"), models=("output",), files=("json",)),
    )
