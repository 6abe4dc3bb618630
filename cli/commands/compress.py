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
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, max_drop, number
from cli.exit_codes import BUDGET_MISSED, TARGET_MISSED
from onnxslim_kd import progress
from onnxslim_kd.bench.latency import bench
from onnxslim_kd.bench.profile import op_type_profile
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import write_text_atomic
from onnxslim_kd.pipeline.checkpoint import Checkpoints
from onnxslim_kd.pipeline.recipe import DEFAULT_RECIPE, read_recipe
from onnxslim_kd.pipeline.runner import CompressResult, compress
from onnxslim_kd.pipeline.search import (
    DOWNSAMPLE,
    MAX_TRIALS,
    SearchResult,
    default_recipe,
    distill_blocker,
    fall_back_to_int8,
    held_out,
    search,
)
from onnxslim_kd.report.comparison import bench_feeds
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.gate import DEFAULT_MIN_SQNR, accuracy_drop, weak_outputs, within_budget
from onnxslim_kd.report.html import render_html
from onnxslim_kd.report.table import markdown_table

#: Exit code when no result stays within --max-drop (the best one is still saved).
#: A speed-up target is a factor over the original: above 1.
SPEEDUP_TARGET = number(1, low_open=True)
#: MACs fraction the pruning stage keeps when there is data but no target.
DEFAULT_KEEP_MACS = 0.5

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
    parser.add_argument("--max-drop", type=max_drop, default=0.01,
                        help="accuracy budget as a fraction (0.01 = one point; default "
                        "%(default)s)")  # fmt: skip
    parser.add_argument("--min-sqnr", type=float, default=DEFAULT_MIN_SQNR, metavar="DB",
                        help="budget of outputs that are not class scores (boxes, landmarks): "
                        "SQNR floor in dB against the original (%(default)s)")  # fmt: skip
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
        handler=run,
        paths=PathRoles(
            inputs=("model", "recipe", "data", "eval_data"),
            models=("output",),
            files=("json", "html", "markdown"),
            derived=_derived_outputs,
        ),
        resumable=lambda args: _has_stages(work_dir_for(args)),
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


def run(args: argparse.Namespace) -> int:
    searching = args.target_speedup is not None or args.target_latency is not None
    if searching and (args.recipe or not args.data):
        raise InputError("--target-speedup/--target-latency need --data and no --recipe")
    work_dir = work_dir_for(args)
    existed = work_dir.exists()
    try:
        return _run(args, work_dir, searching)
    except BaseException:
        _leave_resumable(work_dir, keep=existed or bool(args.work_dir))
        raise


def _has_stages(work_dir: Path) -> bool:
    """Whether the work directory holds a finished stage (or a distill checkpoint)."""
    return work_dir.is_dir() and (any(work_dir.glob("*.onnx")) or any(work_dir.glob("*.d/*")))


def _leave_resumable(work_dir: Path, keep: bool) -> None:
    """After a failure: drop a work directory we made that holds no finished stage, or
    say how to resume from the one that does."""
    if not work_dir.is_dir():
        return
    if _has_stages(work_dir):
        sys.stderr.write(
            f"onnxslim-kd: finished stages are kept in {work_dir}; rerun the same command "
            "to resume from them\n"
        )
    elif not keep:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run(args: argparse.Namespace, work_dir: Path, searching: bool) -> int:
    output = Path(args.output)
    model = load(args.model)
    recipe = read_recipe(args.recipe) if args.recipe else None
    data, eval_data, evaluation = held_out(
        data_from(args, model, args.data), data_from(args, model, args.eval_data)
    )
    found: SearchResult | None = None
    note = None
    if searching:
        found = search(
            model, data, eval_data, target_speedup=_target(args, model, eval_data or data),
            max_drop=args.max_drop, distill_epochs=args.distill_epochs,
            bench_runs=max(args.bench_runs, 10), bench_batch=args.bench_batch,
            threads=args.threads, work_dir=work_dir, max_trials=args.max_trials,
            downsample=(1,) if args.no_downsample else DOWNSAMPLE,
            label_output=args.label_output, min_sqnr=args.min_sqnr,
        )  # fmt: skip
        result = found.chosen.result
    else:
        default = recipe is None and data is not None
        blocker = distill_blocker(model) if default else None
        if blocker:
            sys.stderr.write(
                f"onnxslim-kd: no distillation, so no pruning, in the default recipe: {blocker}\n"
            )
        if recipe is None:
            keep = None if blocker else DEFAULT_KEEP_MACS
            recipe = default_recipe(keep, args.distill_epochs) if data else DEFAULT_RECIPE
        run_options = dict(
            data=data, eval_data=eval_data, shapes=shapes_from(args), threads=args.threads,
            bench_runs=args.bench_runs, bench_batch=args.bench_batch,
            checkpoints=Checkpoints(work_dir, model, data), label_output=args.label_output,
        )  # fmt: skip
        result = compress(model, recipe, **run_options)
        if default:
            result, note = fall_back_to_int8(
                model, result, args.max_drop, args.min_sqnr, **run_options
            )
    save_output(result.model, output, args.model)
    record = {
        "input": str(args.model),
        "output": str(output),
        "environment": environment(args.threads),
        **result.as_dict(),
        "search": found.as_dict() if found else None,
        "evaluated_on": evaluation,
        "fallback": note,
    }
    record["verdict"] = verdict(result, found, args)
    if args.html:
        feeds = bench_feeds(model, eval_data or data, shapes_from(args), args.bench_batch)
        record["profile"] = {
            label: op_type_profile(m, feeds, threads=args.threads)
            for label, m in (("before", model), ("after", result.model))
        }
        write_text_atomic(args.html, render_html(record, result.comparison.rows()))
    report_path = report_path_for(output)
    write_text_atomic(report_path, json.dumps(record, indent=2, default=str) + "\n")
    summary = render(result, found, output, report_path, evaluation)
    if note:
        sys.stderr.write(f"onnxslim-kd: {note}\n")
    if args.markdown:
        write_text_atomic(args.markdown, summary + "\n")
    emit_json(args.json, record)
    say(args, summary)
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return _budget_verdict(record["verdict"], result.comparison.roles)


def _target(args: argparse.Namespace, model, data) -> float:
    """The speed-up to search for; a latency target is divided into the measured original."""
    if args.target_speedup is not None:
        return args.target_speedup
    feeds = bench_feeds(model, data, shapes_from(args), args.bench_batch)
    original = bench([("original", model, feeds)], threads=args.threads, runs=30).latencies[0]
    return original.median_ms / args.target_latency


def verdict(result: CompressResult, found: SearchResult | None, args) -> dict:
    """Did the run pass, and why: the budget and target asked for, what was measured, the
    exit code (3 budget missed, 4 target missed within the budget) and the reasons."""
    max_drop, min_sqnr = args.max_drop, args.min_sqnr
    drop, how = accuracy_drop(result.comparison)
    weak = weak_outputs(result.comparison, min_sqnr)
    latency = result.comparison.latency
    record = {
        "budget": {"max_drop": max_drop, "min_sqnr": min_sqnr},
        "target": {"speedup": found.target_speedup} if found else None,
        "measured": {
            "drop": drop, "drop_metric": how, "outputs_under_sqnr_floor": dict(weak),
            "speedup": latency.latencies[-1].speedup if latency else None,
        },
        "exit_code": 0, "reasons": [],
    }  # fmt: skip
    if not within_budget(result.comparison, max_drop, min_sqnr):
        tried = f" after {len(found.candidates)} candidates" if found else ""
        if drop is not None and drop > max_drop + 1e-12:
            failed = f"{how} {drop:.4f} > --max-drop {max_drop}"
        else:
            name, sqnr = weak[0]
            failed = f"output '{name}' SQNR {sqnr:.1f} dB < --min-sqnr {min_sqnr:g}"
        record["reasons"].append(f"budget not met{tried}: {failed} (the closest result was saved)")
        record["exit_code"] = BUDGET_MISSED
    elif found and found.chosen.speedup < found.target_speedup:
        best = found.chosen
        record["reasons"].append(
            f"target {found.target_speedup:g}x not reached within the budget: the fastest "
            f"candidate in budget is {best.speedup:.2f}x ({best.label})"
            f"{'' if args.best_effort else '; exit 4 (--best-effort: exit 0)'}"
        )
        record["exit_code"] = 0 if args.best_effort else TARGET_MISSED
    record["passed"] = not record["reasons"]
    return record


def _budget_verdict(record: dict, roles) -> int:
    """Print the warnings and the verdict's reasons; return its exit code."""
    progress.warn("compress", roles.warnings if roles else [])
    for reason in record["reasons"]:
        sys.stderr.write(f"onnxslim-kd: {reason}\n")
    return record["exit_code"]


def render(
    result: CompressResult,
    found: SearchResult | None,
    output: Path,
    report_path: Path,
    evaluation: str,
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
    parts.append(f"fidelity measured on {evaluation}")
    parts.append(f"wrote {output} and {report_path}")
    return "\n\n".join(parts)
