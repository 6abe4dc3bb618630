"""`onnxslim-kd check`: a CI gate on a compressed model against its baseline."""

from __future__ import annotations

import argparse
import os

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import POSITIVE, POSITIVE_NUMBER, max_drop
from onnxslim_kd.defaults import MAX_ROUNDS_FACTOR, SESSION_MARGIN

EXAMPLES = """examples:
  onnxslim-kd check model.slim.onnx --baseline model.onnx --data test.npz \\
      --max-drop 0.01 --min-speedup 2 --max-size-mb 5 --markdown gate.md

exit codes: 0 every limit holds, 3 --max-drop or --max-size-mb fails, 4 --min-speedup
fails (measurably below; each failure named on stderr), 2 bad input
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "check",
        "CI gate: fidelity, latency and size of CANDIDATE against --baseline",
        EXAMPLES,
    )
    parser.add_argument("candidate", help="the compressed model")
    parser.add_argument("--baseline", required=True, help="the original model")
    add_data_options(parser, required=True)
    parser.add_argument("--max-drop", type=max_drop, help="allowed accuracy drop, a fraction")
    parser.add_argument(
        "--min-speedup", type=POSITIVE_NUMBER,
        help="required latency speed-up; fails only when measurably below it: the 95%% "
        f"interval of the per-round speed-up under it by more than {SESSION_MARGIN * 100:g}%%, "
        f"timed --runs more rounds at a time (up to {MAX_ROUNDS_FACTOR}x) while undecided",
    )  # fmt: skip
    parser.add_argument("--max-size-mb", type=POSITIVE_NUMBER, help="largest allowed size on disk")
    parser.add_argument("--threads", type=POSITIVE, default=os.cpu_count(), help="intra-op threads")
    parser.add_argument("--runs", type=POSITIVE, default=100, help="interleaved timed runs (100)")
    add_json_option(parser, "the gate record")
    parser.add_argument("--markdown", metavar="FILE", help="write the summary (PR comment)")
    parser.set_defaults(
        handler="cli.run.check",
        paths=PathRoles(inputs=("candidate", "baseline", "data"), files=("json", "markdown")),
    )
