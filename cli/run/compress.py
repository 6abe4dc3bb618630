"""The work of `onnxslim-kd compress`, imported only when the command runs."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from cli.commands.compress import (
    has_stages,
    report_path_for,
    work_dir_for,
)
from cli.exit_codes import BUDGET_MISSED, TARGET_MISSED
from cli.run.common import (
    data_from,
    emit_json,
    save_output,
    say,
    shapes_from,
)
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
    SearchResult,
    default_recipe,
    distill_blocker,
    fall_back_to_int8,
    held_out,
    search,
)
from onnxslim_kd.report.comparison import bench_feeds
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.gate import accuracy_drop, weak_outputs, within_budget
from onnxslim_kd.report.html import render_html
from onnxslim_kd.report.table import markdown_table

#: MACs fraction the pruning stage keeps when there is data but no target.
DEFAULT_KEEP_MACS = 0.5


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


def _leave_resumable(work_dir: Path, keep: bool) -> None:
    """After a failure: drop a work directory we made that holds no finished stage, or
    say how to resume from the one that does."""
    if not work_dir.is_dir():
        return
    if has_stages(work_dir):
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
            prune_norms=args.prune_norms,
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
            recipe = (
                default_recipe(keep, args.distill_epochs, prune_norms=bool(args.prune_norms))
                if data else DEFAULT_RECIPE
            )  # fmt: skip
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
    elif found and not found.chosen.reaches_target:
        best = found.chosen
        timed = result.comparison.latency.latencies[-1]
        record["reasons"].append(
            f"target {found.target_speedup:g}x not reached within the budget: the fastest "
            f"candidate in budget is {timed.describe()} ({best.label})"
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
