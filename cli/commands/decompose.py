"""`onnxslim-kd decompose`: low-rank factorisation (SVD, Tucker-2) where it makes layers faster."""

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
    shapes_for,
)
from cli.commands.paths import PathRoles
from cli.commands.values import FRACTION_KEEP
from onnxslim_kd.decompose import decompose, make_selector
from onnxslim_kd.decompose.candidates import METHODS
from onnxslim_kd.decompose.summary import ROW_HEADER, DecomposeSummary
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check
from onnxslim_kd.report.table import markdown_table

EXAMPLES = """examples:
  onnxslim-kd decompose model.onnx -o model.lr.onnx                  # keep 95 % energy per layer
  onnxslim-kd decompose model.onnx -o model.lr.onnx --energy 0.9 --measure
  onnxslim-kd decompose model.onnx -o model.lr.onnx --rank-ratio 0.25 --exclude '*classifier*'
  onnxslim-kd decompose model.onnx -o model.lr.onnx --target-macs 0.5 --json=report.json
  onnxslim-kd decompose model.onnx -o model.lr.onnx --vbmf --method tucker

A layer is factorised only when its ranks (rounded up to multiples of 8) cut its MACs and,
with --measure, when onnxruntime runs the factorised layer faster at its real input shape.
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
        choices=METHODS,
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
    add_shape_option(parser)
    add_data_options(parser)
    add_json_option(parser, "the summary")
    parser.set_defaults(
        handler=run,
        paths=PathRoles(inputs=("model", "data"), models=("output",), files=("json",)),
    )


def run(args: argparse.Namespace) -> int:
    selector = make_selector(args.energy, args.rank_ratio, args.vbmf, args.target_macs)
    model = load(args.model)
    shapes = shapes_for(args, model, data_from(args, model, args.data))
    out, summary = decompose(
        model,
        selector,
        method=args.method,
        measure=args.measure,
        exclude=args.exclude,
        shapes=shapes,
    )
    check(out)
    save_output(out, args.output, args.model)
    emit_json(
        args.json, {"input": str(args.model), "output": str(args.output), **summary.as_dict()}
    )
    say(args, render(summary, args.output))
    return 0


def render(summary: DecomposeSummary, output: str) -> str:
    """Every candidate layer with its decision, then the totals."""
    ratio = summary.macs_after / summary.macs_before if summary.macs_before else 1.0
    return "\n\n".join(
        [
            markdown_table(ROW_HEADER, summary.rows()),
            f"{summary.strategy}: {summary.decomposed} of {len(summary.layers)} layers factorised; "
            f"MACs {summary.macs_before / 1e6:,.1f}M -> {summary.macs_after / 1e6:,.1f}M "
            f"({ratio:.2f}x) in {summary.seconds:.1f} s",
            f"wrote {output}",
        ]
    )
