"""`onnxslim-kd compress`: the pipeline, with a speed-up target and an accuracy budget."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

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
from onnxslim_kd.bench.latency import bench
from onnxslim_kd.bench.profile import op_type_profile
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.pipeline.checkpoint import Checkpoints
from onnxslim_kd.pipeline.recipe import DEFAULT_RECIPE, read_recipe
from onnxslim_kd.pipeline.runner import CompressResult, compress
from onnxslim_kd.pipeline.search import (
    DOWNSAMPLE,
    MAX_TRIALS,
    SearchResult,
    default_recipe,
    search,
)
from onnxslim_kd.report.comparison import bench_feeds
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.gate import accuracy_drop
from onnxslim_kd.report.html import render_html
from onnxslim_kd.report.table import markdown_table

#: Exit code when no result stays within --max-drop (the best one is still saved).
BUDGET_MISSED = 3
#: MACs fraction the pruning stage keeps when there is data but no target.
DEFAULT_KEEP_MACS = 0.5

EXAMPLES = """examples:
  onnxslim-kd compress samples/digits/model.onnx -o out/digits.slim.onnx \\
      --data samples/digits/train.npz --eval-data samples/digits/test.npz
  onnxslim-kd compress model.onnx -o fast.onnx --data train.npz --eval-data test.npz \\
      --target-speedup 8 --max-drop 0.01 --bench-batch 32 --html report.html
  onnxslim-kd compress model.onnx -o model.slim.onnx --recipe recipe.yaml --json -

without --recipe: with --data, prune (to half the MACs) -> decompose where measured
faster -> distill (needs the [distill] extra) -> quantize; without data, only the
lossless canonicalize pass.

--target-speedup/--target-latency: every strength (MACs kept, optionally at half
resolution after the stem) is built untuned and timed interleaved first; then the
gentlest one fast enough is fine-tuned and checked against --max-drop, backing off to
gentler ones while the budget is missed (--max-trials fine-tunes at most).

recipe.yaml:
  passes:
    - prune: {target_macs: 0.5, global_ranking: true}
    - distill: {epochs: 10}
    - quantize

exit codes: 0 success, 2 bad input, 3 the accuracy budget (--max-drop) was not met
(the best result and its report are still written)
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
    target.add_argument("--target-speedup", type=float, help="search for this speed-up")
    target.add_argument("--target-latency", type=float, metavar="MS", help="or this p50 latency")
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="accuracy budget as a fraction (0.01 = one point)")  # fmt: skip
    parser.add_argument("--distill-epochs", type=int, default=30, help="KD epochs (30)")
    parser.add_argument("--max-trials", type=int, default=MAX_TRIALS,
                        help="fine-tuned search candidates at most (%(default)s)")  # fmt: skip
    parser.add_argument("--no-downsample", action="store_true",
                        help="search channel pruning only, at full resolution")  # fmt: skip
    add_shape_option(parser)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads")
    parser.add_argument("--bench-runs", type=int, default=50, help="timed runs (0: no timing)")
    parser.add_argument("--bench-batch", type=int, default=1, help="batch size for timing (1)")
    parser.add_argument("--work-dir", help="keep stage checkpoints here (default: OUT.work, "
                        "removed after success)")  # fmt: skip
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--markdown", metavar="FILE", help="write the summary as Markdown")
    add_json_option(parser, "the full report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    model = load(args.model)
    if output.exists() and os.path.samefile(output, args.model):
        raise InputError(f"{output}: refusing to overwrite the input model; choose another output")
    if not 0 <= args.max_drop <= 1:
        raise InputError(f"--max-drop is a fraction in [0, 1], got {args.max_drop}")
    if args.max_trials < 0:
        raise InputError(f"--max-trials must be >= 0, got {args.max_trials}")
    searching = args.target_speedup is not None or args.target_latency is not None
    if searching and (args.recipe or not args.data):
        raise InputError("--target-speedup/--target-latency need --data and no --recipe")
    recipe = read_recipe(args.recipe) if args.recipe else None
    data = data_from(args, model, args.data)
    eval_data = data_from(args, model, args.eval_data)
    work_dir = Path(args.work_dir or f"{output}.work")
    found: SearchResult | None = None
    if searching:
        found = search(
            model, data, eval_data, target_speedup=_target(args, model, eval_data or data),
            max_drop=args.max_drop, distill_epochs=args.distill_epochs,
            bench_runs=max(args.bench_runs, 10), bench_batch=args.bench_batch,
            threads=args.threads, work_dir=work_dir, max_trials=args.max_trials,
            downsample=(1,) if args.no_downsample else DOWNSAMPLE,
        )  # fmt: skip
        result = found.chosen.result
    else:
        if recipe is None:
            recipe = (
                default_recipe(DEFAULT_KEEP_MACS, args.distill_epochs) if data else DEFAULT_RECIPE
            )
        result = compress(
            model, recipe, data=data, eval_data=eval_data, shapes=shapes_from(args),
            threads=args.threads, bench_runs=args.bench_runs, bench_batch=args.bench_batch,
            checkpoints=Checkpoints(work_dir, model, data),
        )  # fmt: skip
    save_output(result.model, output, args.model)
    record = {
        "input": str(args.model),
        "output": str(output),
        "environment": environment(args.threads),
        **result.as_dict(),
        "search": found.as_dict() if found else None,
    }
    if args.html:
        feeds = bench_feeds(model, eval_data or data, shapes_from(args), args.bench_batch)
        record["profile"] = {
            label: op_type_profile(m, feeds, threads=args.threads)
            for label, m in (("before", model), ("after", result.model))
        }
        Path(args.html).write_text(render_html(record, result.comparison.rows()))
    report_path = output.with_name(output.name + ".report.json")
    report_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    summary = render(result, found, output, report_path)
    if args.markdown:
        Path(args.markdown).write_text(summary + "\n")
    emit_json(args.json, record)
    say(args, summary)
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return _budget_verdict(result, found, args.max_drop)


def _target(args: argparse.Namespace, model, data) -> float:
    """The speed-up to search for; a latency target is divided into the measured original."""
    if args.target_speedup is not None:
        if args.target_speedup <= 1:
            raise InputError(f"--target-speedup must be > 1, got {args.target_speedup}")
        return args.target_speedup
    feeds = bench_feeds(model, data, shapes_from(args), args.bench_batch)
    original = bench([("original", model, feeds)], threads=args.threads, runs=30).latencies[0]
    return original.median_ms / args.target_latency


def _budget_verdict(result: CompressResult, found: SearchResult | None, max_drop: float) -> int:
    """Say when the speed-up target was missed; exit 3, saying how close we got, when the
    result is over the accuracy budget."""
    if found and found.met and found.chosen.speedup < found.target_speedup:
        best = found.chosen
        sys.stderr.write(
            f"onnxslim-kd: target {found.target_speedup:g}x not reached within the budget: "
            f"the fastest candidate in budget is {best.speedup:.2f}x ({best.label})\n"
        )
    drop, how = accuracy_drop(result.comparison)
    if drop is None or drop <= max_drop + 1e-12:
        return 0
    tried = f" after {len(found.candidates)} candidates" if found else ""
    sys.stderr.write(
        f"onnxslim-kd: accuracy budget not met{tried}: {how} {drop:.4f} > --max-drop "
        f"{max_drop} (the closest result was saved)\n"
    )
    return BUDGET_MISSED


def render(
    result: CompressResult, found: SearchResult | None, output: Path, report_path: Path
) -> str:
    """Passes, the search (if any), and the before/after table."""
    steps = [
        (r["pass"], f"{r['seconds']:.2f} s" + (" (resumed)" if r.get("resumed") else ""),
         r["headline"])
        for r in result.passes
    ]  # fmt: skip
    parts = [markdown_table(["pass", "time", "what it did"], steps)]
    if found:
        rows = [(s.label, f"{s.macs / 1e6:.1f} M", f"{s.predicted:.2f}x") for s in found.structures]
        parts.append(markdown_table(["structure", "MACs", "speed-up untuned"], rows))
        rows = [
            (c.label, f"{c.speedup:.2f}x", f"{c.quality:.2%}", "yes" if c.within_budget else "no",
             "<- chosen" if c is found.chosen else "")
            for c in found.candidates
        ]  # fmt: skip
        parts.append(markdown_table(["fine-tuned", "speed-up", "quality", "in budget", ""], rows))
    parts.append(markdown_table(["", "before", "after", "change"], result.comparison.rows()))
    parts.append(f"wrote {output} and {report_path}")
    return "\n\n".join(parts)
