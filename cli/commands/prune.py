"""`onnxslim-kd prune`: structured channel pruning with dependency propagation."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    add_shape_option,
    data_from,
    emit_json,
    save_output,
    say,
    shapes_from,
)
from cli.commands.paths import PathRoles
from cli.commands.values import FRACTION_KEEP, FRACTION_OPEN, POSITIVE, RATIO
from onnxslim_kd import progress
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check
from onnxslim_kd.prune.importance import CRITERIA
from onnxslim_kd.prune.plan import write_plan
from onnxslim_kd.prune.prune import PruneOptions, PruneSummary, prune
from onnxslim_kd.report.table import markdown_table

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
    parser.add_argument("--criterion", default="l1", choices=list(CRITERIA), help="importance")
    parser.add_argument("--global", dest="global_ranking", action="store_true",
                        help="rank channels across groups instead of a uniform ratio")  # fmt: skip
    parser.add_argument("--max-ratio", type=FRACTION_OPEN, default=0.8,
                        help="cap per group, in (0, 1) (0.8)")  # fmt: skip
    parser.add_argument("--round-to", type=POSITIVE, default=8,
                        help="kept channels multiple of (8)")  # fmt: skip
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="node names, regexes or op types to leave alone")  # fmt: skip
    parser.add_argument("--prune-stem", action="store_true", help="also prune the stem conv")
    parser.add_argument("--downsample", type=POSITIVE, default=1, metavar="F",
                        help="run layers after the stem conv at 1/F resolution (raises its "
                        "stride; needs distill; resolution-free outputs only)")  # fmt: skip
    parser.add_argument("--plan", help="apply the kept channels of a saved plan")
    parser.add_argument("--plan-out", help="save the plan (kept channels per group) as JSON")
    add_data_options(parser)
    add_shape_option(parser)
    add_json_option(parser, "the summary")
    parser.set_defaults(
        handler=run,
        paths=PathRoles(
            inputs=("model", "data", "plan"), models=("output",), files=("json", "plan_out")
        ),
    )


def run(args: argparse.Namespace) -> int:
    options = PruneOptions(
        ratio=args.ratio if args.target_macs is None else 0.5,
        target_macs=args.target_macs,
        criterion=args.criterion,
        global_ranking=args.global_ranking,
        max_ratio=args.max_ratio,
        round_to=args.round_to,
        exclude=args.exclude,
        keep_stem=not args.prune_stem,
        downsample=args.downsample,
        plan=args.plan,
    )
    model = load(args.model)
    data = data_from(args, model, args.data)
    pruned, summary = prune(model, options, data, shapes_from(args))
    check(pruned)
    save_output(pruned, args.output, args.model)
    if args.plan_out:
        write_plan(summary.plan, args.plan_out)
    emit_json(args.json, summary.as_dict())
    say(args, render(summary))
    progress.warn("prune", summary.warnings)
    return 0


def render(summary: PruneSummary) -> str:
    """Groups pruned and skipped (with reasons), then params and MACs before/after."""
    rows = [
        (g.id, g.status, f"{g.size} -> {g.kept}", "; ".join(g.reasons[:2])) for g in summary.groups
    ]
    totals = [
        ("params", f"{summary.params_before:,}", f"{summary.params_after:,}",
         f"{summary.params_before / max(summary.params_after, 1):.2f}x"),
        ("MACs", f"{summary.macs_before:,}", f"{summary.macs_after:,}",
         f"{summary.macs_before / max(summary.macs_after, 1):.2f}x"),
    ]  # fmt: skip
    parts = [
        markdown_table(["group", "status", "channels", "why skipped"], rows),
        markdown_table(["", "before", "after", "reduction"], totals),
    ]
    if summary.spatial and not summary.spatial["skipped"]:
        spatial = summary.spatial
        parts.append(
            f"resolution after {spatial['node']}: {spatial['resolution_before']} -> "
            f"{spatial['resolution_after']} (stride {spatial['stride_before']} -> "
            f"{spatial['stride_after']})"
        )
    return "\n\n".join(parts)
