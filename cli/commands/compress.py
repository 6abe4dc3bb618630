"""`onnxslim-kd compress`: the pipeline, with a speed-up target and an accuracy budget."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.commands.common import (
    add_budget_options,
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, number
from onnxslim_kd.defaults import DEFAULT_MIN_SQNR, MAX_TRIALS, PRUNE_NORMS_EPOCHS

#: A speed-up target is a factor over the original: above 1.
SPEEDUP_TARGET = number(1, low_open=True)


EXAMPLES = """examples:
  onnxslim-kd compress samples/digits/model.onnx -o out/digits.slim.onnx \\
      --data samples/digits/train.npz --eval-data samples/digits/test.npz
  onnxslim-kd compress model.onnx -o fast.onnx --data train.npz --eval-data test.npz \\
      --target-speedup 8 --max-drop 0.01 --bench-batch 32 --html report.html
  onnxslim-kd compress model.onnx -o model.slim.onnx --recipe recipe.yaml --json

without --recipe: with --data, prune (to half the MACs) -> decompose where measured
faster -> distill (needs the [distill] extra) -> quantize; without data, only the
lossless canonicalize pass. When that misses the budget and INT8 alone holds it, INT8
alone is kept (and said). Without --eval-data, 20% of --data is held out for every figure.

budget: --max-drop on class outputs (accuracy on the labels' output, top-1 agreement on
the others), --min-sqnr on every other output (boxes, landmarks, states).

--target-speedup/--target-latency: every strength (MACs kept, optionally at half
resolution after the stem) is built untuned and timed interleaved first; then the
gentlest one fast enough is fine-tuned and checked against --max-drop, backing off to
gentler ones while the budget is missed (--max-trials fine-tunes at most).

recipe.yaml:
  passes:
    - prune: {target_macs: 0.5, global_ranking: true}
    - distill: {epochs: 10}
    - quantize

exit codes: 0 success, 2 bad input, 3 the budget (--max-drop, --min-sqnr) was not met
(the best result and its report are still written), 4 --target-speedup/--target-latency
missed within the budget (0 with --best-effort), 130 interrupted (prints how to resume)
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "compress",
        "run the compression pipeline and report before/after",
        EXAMPLES,
    )
    parser.add_argument("model", help="input ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--recipe", help="YAML or TOML recipe; default: the built-in recipe")
    add_data_options(parser)
    parser.add_argument("--eval-data", help="held-out data for accuracy and the budget")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-speedup", type=SPEEDUP_TARGET,
                        help="search for this speed-up (> 1)")  # fmt: skip
    target.add_argument("--target-latency", type=POSITIVE_NUMBER, metavar="MS",
                        help="or this p50 latency")  # fmt: skip
    add_budget_options(
        parser,
        "accuracy budget as a fraction (0.01 = one point; default %(default)s)",
        "budget of outputs that are not class scores (boxes, landmarks): SQNR floor in dB "
        "against the original (%(default)s)",
        min_sqnr=DEFAULT_MIN_SQNR,
        default_drop=0.01,
    )
    parser.add_argument("--label-output", metavar="NAME",
                        help="the output the labels describe (default: the one [N, C] output "
                        "whose C is the labels' class count)")  # fmt: skip
    parser.add_argument("--distill-epochs", type=POSITIVE, default=30, help="KD epochs (30)")
    parser.add_argument("--max-trials", type=NON_NEGATIVE, default=MAX_TRIALS,
                        help="fine-tuned search candidates at most (%(default)s)")  # fmt: skip
    parser.add_argument("--best-effort", action="store_true",
                        help="exit 0 when --target-speedup/--target-latency is missed within "
                        "the budget (default: exit 4)")  # fmt: skip
    parser.add_argument("--no-downsample", action="store_true",
                        help="search channel pruning only, at full resolution")  # fmt: skip
    parser.add_argument("--prune-norms", action=argparse.BooleanOptionalAction, default=None,
                        help="prune a transformer's residual width (the channels LayerNorms "
                             "normalise; lossy) always / never; default: only when a target "
                             "search cannot reach the target without it, fine-tuning those "
                             f"candidates {PRUNE_NORMS_EPOCHS}x --distill-epochs")  # fmt: skip
    add_shape_option(parser)
    parser.add_argument("--threads", type=POSITIVE, default=os.cpu_count(),
                        help="intra-op threads")  # fmt: skip
    parser.add_argument("--bench-runs", type=NON_NEGATIVE, default=50,
                        help="timed runs (0: no timing)")  # fmt: skip
    parser.add_argument("--bench-batch", type=POSITIVE, default=1,
                        help="batch size for timing (1)")  # fmt: skip
    parser.add_argument("--work-dir", help="keep stage checkpoints here (default: OUT.work, "
                        "removed after success)")  # fmt: skip
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--markdown", metavar="FILE", help="write the summary as Markdown")
    add_json_option(parser, "the full report")
    parser.set_defaults(
        handler="cli.run.compress",
        paths=PathRoles(
            inputs=("model", "recipe", "data", "eval_data"),
            models=("output",),
            files=("json", "html", "markdown"),
            derived=_derived_outputs,
        ),
        resumable=lambda args: has_stages(work_dir_for(args)),
    )


def _derived_outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The JSON report beside the model and the stage-checkpoint directory."""
    return [
        ("the report", str(report_path_for(Path(args.output)))),
        ("--work-dir/", str(work_dir_for(args))),
    ]


def report_path_for(output: Path) -> Path:
    return output.with_name(output.name + ".report.json")


def work_dir_for(args: argparse.Namespace) -> Path:
    return Path(args.work_dir or f"{args.output}.work")


def has_stages(work_dir: Path) -> bool:
    """Whether the work directory holds a finished stage (or a distill checkpoint)."""
    return work_dir.is_dir() and (any(work_dir.glob("*.onnx")) or any(work_dir.glob("*.d/*")))
