"""The work of `onnxslim-kd prune`, imported only when the command runs."""

from __future__ import annotations

import argparse

from cli.run.common import (
    data_from,
    emit_json,
    save_output,
    say,
    shapes_from,
)
from onnxslim_kd import progress
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check
from onnxslim_kd.prune.plan import write_plan
from onnxslim_kd.prune.prune import PruneOptions, PruneSummary, prune
from onnxslim_kd.report.table import markdown_table


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
        prune_norms=args.prune_norms,
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
        (g.id, g.status if g.exact or g.status != "pruned" else "pruned (not exact)",
         f"{g.size} -> {g.kept}" + (f" heads of {g.unit}" if g.unit > 1 else ""),
         "; ".join(g.reasons[:2]))
        for g in summary.groups
    ]  # fmt: skip
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
