"""The work of `onnxslim-kd inspect`, imported only when the command runs."""

from __future__ import annotations

import argparse

from cli.run.common import (
    data_from,
    emit_json,
    say,
    shapes_for,
)
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    shapes = shapes_for(args, model, data_from(args, model, args.data))
    stats = model_stats(model, shapes, args.batch, shapes_optional=True)
    emit_json(args.json, stats.as_dict(per_node=args.per_node))
    if args.json != "-":
        say(args, render(args.model, stats, per_node=args.per_node))
    return 0


def render(path: str, stats, per_node: bool = False) -> str:
    """Human-readable summary of `inspect`."""
    io_rows = [("input", s["name"], s["dtype"], _dims(s["shape"])) for s in stats.inputs]
    io_rows += [("output", s["name"], s["dtype"], _dims(s["shape"])) for s in stats.outputs]
    summary = [
        ("opset", stats.opset),
        ("params", f"{stats.params:,}"),
        ("MACs", _macs(stats)),
        ("size", f"{stats.size_bytes / 1e6:.2f} MB"),
        ("nodes", stats.nodes),
    ]
    ops = sorted(stats.op_counts.items(), key=lambda kv: -kv[1])
    parts = [
        f"# {path}",
        markdown_table(["", "name", "dtype", "shape"], io_rows),
        markdown_table(["", "value"], summary),
        markdown_table(["op", "count"], ops),
    ]
    if per_node and stats.macs:
        rows = [
            (node, f"{macs:,}", f"{macs / stats.macs:.1%}")
            for node, macs in sorted(stats.macs_per_node.items(), key=lambda kv: -kv[1])
        ]
        parts.append(markdown_table(["node", "MACs", "share"], rows))
    return "\n\n".join(parts)


def _macs(stats) -> str:
    if stats.macs is None:
        return "unknown: give --shape NAME=DIMS or --data for the dynamic dims"
    return f"{stats.macs:,} at " + ", ".join(f"{k}={_dims(v)}" for k, v in stats.shapes.items())


def _dims(dims: list) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
