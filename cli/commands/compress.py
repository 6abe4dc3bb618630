"""`onnxslim-kd compress`: run a recipe of passes and print the before/after table."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cli.commands.common import (
    add_data_options,
    add_json_option,
    add_shape_option,
    data_from,
    emit_json,
    say,
    shapes_from,
)
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import file_uses_external_data, load
from onnxslim_kd.graph.save import save
from onnxslim_kd.pipeline.recipe import read_recipe
from onnxslim_kd.pipeline.runner import CompressResult, compress
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.table import markdown_table

EXAMPLES = """examples:
  onnxslim-kd compress samples/digits/model.onnx -o /tmp/digits.slim.onnx \\
      --data samples/digits/calib.npz --eval-data samples/digits/test.npz
  onnxslim-kd compress model.onnx -o model.slim.onnx --recipe recipe.yaml --json -

recipe.yaml:
  passes:
    - canonicalize
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "compress",
        parents=[common],
        help="run the compression pipeline (a recipe of passes) and report before/after",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="input ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--recipe", help="YAML or TOML recipe; default: the built-in recipe")
    add_data_options(parser)
    parser.add_argument("--eval-data", help="held-out data for the before/after accuracy")
    add_shape_option(parser)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="intra-op threads for timing"
    )
    parser.add_argument(
        "--bench-runs", type=int, default=50, help="interleaved timed runs (0 skips timing)"
    )
    add_json_option(parser, "the full report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    model = load(args.model)
    if output.exists() and os.path.samefile(output, args.model):
        raise InputError(f"{output}: refusing to overwrite the input model; choose another output")
    recipe = read_recipe(args.recipe) if args.recipe else None
    data = data_from(args, model, args.data)
    eval_data = data_from(args, model, args.eval_data)
    result = compress(
        model,
        recipe,
        data=data,
        eval_data=eval_data,
        shapes=shapes_from(args),
        threads=args.threads,
        bench_runs=args.bench_runs,
    )
    save(
        result.model,
        output,
        external_data=True if file_uses_external_data(args.model) else None,
        protect=(args.model,),
    )
    record = {
        "input": str(args.model),
        "output": str(output),
        "environment": environment(args.threads),
        **result.as_dict(),
    }
    report_path = output.with_name(output.name + ".report.json")
    report_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    emit_json(args.json, record)
    say(args, render(result, output, report_path))
    return 0


def render(result: CompressResult, output: Path, report_path: Path) -> str:
    """The before/after table and one line per pass."""
    steps = [(r["pass"], f"{r['seconds']:.2f} s", _changes(r["summary"])) for r in result.passes]
    return "\n\n".join(
        [
            markdown_table(["pass", "time", "what it did"], steps),
            markdown_table(["", "before", "after", "change"], result.comparison.rows()),
            f"wrote {output} and {report_path}",
        ]
    )


def _changes(summary: dict) -> str:
    changed = [f"{k.replace('_', ' ')}: {v}" for k, v in summary.items() if v]
    return "; ".join(changed) or "nothing to change"
