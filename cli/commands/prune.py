"""`onnxslim-kd prune`: structured channel pruning with dependency propagation."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import FRACTION_KEEP, FRACTION_OPEN, POSITIVE, RATIO
from onnxslim_kd.defaults import PRUNE_CRITERIA

EXAMPLES = """examples:
  onnxslim-kd prune model.onnx -o model.pruned.onnx --ratio 0.5
  onnxslim-kd prune model.onnx -o small.onnx --target-macs 0.5 --global --criterion fpgm
  onnxslim-kd prune model.onnx -o small.onnx --criterion apoz --data calib.npz
  onnxslim-kd prune model.onnx -o small.onnx --ratio 0.3 --plan-out plan.json
  onnxslim-kd prune model.onnx -o small.onnx --plan plan.json      # re-apply an edited plan
  onnxslim-kd prune model.onnx -o small.onnx --downsample 2 --target-macs 0.15 --global \\
      --data train.npz   # half resolution after the stem, then channels; then distill
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "prune",
        "remove whole channels, coupled across residuals, concats and groups",
        EXAMPLES,
    )
    parser.add_argument("model", help="input ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the pruned model")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--ratio", type=RATIO, default=0.5,
                        help="channels removed per group, in [0, 1) (0.5)")  # fmt: skip
    budget.add_argument("--target-macs", type=FRACTION_KEEP,
                        help="keep this fraction of the MACs, in (0, 1]")  # fmt: skip
    parser.add_argument(
        "--criterion", default="l1", choices=list(PRUNE_CRITERIA), help="importance"
    )
    parser.add_argument("--global", dest="global_ranking", action="store_true",
                        help="rank channels across groups instead of a uniform ratio")  # fmt: skip
    parser.add_argument("--max-ratio", type=FRACTION_OPEN, default=0.8,
                        help="cap per group, in (0, 1) (0.8)")  # fmt: skip
    parser.add_argument("--round-to", type=POSITIVE, default=8,
                        help="kept channels multiple of (8)")  # fmt: skip
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="node names, regexes or op types to leave alone")  # fmt: skip
    parser.add_argument("--prune-stem", action="store_true", help="also prune the stem conv")
    parser.add_argument("--prune-norms", action="store_true",
                        help="also prune channels a LayerNorm normalises over (a transformer's "
                             "residual width, its patch-embedding conv included): not exact, "
                             "distill after")  # fmt: skip
    parser.add_argument("--downsample", type=POSITIVE, default=1, metavar="F",
                        help="run layers after the stem conv at 1/F resolution (raises its "
                        "stride; needs distill; resolution-free outputs only)")  # fmt: skip
    parser.add_argument("--plan", help="apply the kept channels of a saved plan")
    parser.add_argument("--plan-out", help="save the plan (kept channels per group) as JSON")
    add_data_options(parser)
    add_shape_option(parser)
    add_json_option(parser, "the summary")
    parser.set_defaults(
        handler="cli.run.prune",
        paths=PathRoles(
            inputs=("model", "data", "plan"), models=("output",), files=("json", "plan_out")
        ),
    )
