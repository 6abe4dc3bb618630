"""The work of `onnxslim-kd check`, imported only when the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.exit_codes import BUDGET_MISSED, TARGET_MISSED
from cli.run.common import (
    data_from,
    emit_json,
    say,
)
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import external_files, load
from onnxslim_kd.graph.save import write_text_atomic
from onnxslim_kd.report.comparison import compare_before_after
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.gate import Limit, evaluate_limits
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    if args.max_drop is None and args.min_speedup is None and args.max_size_mb is None:
        raise InputError(
            "check needs at least one limit: --max-drop, --min-speedup or --max-size-mb"
        )
    baseline, candidate = load(args.baseline), load(args.candidate)
    data = data_from(args, baseline, args.data)
    comparison = compare_before_after(baseline, candidate, data, threads=args.threads,
                                      runs=args.runs, speedup_bar=args.min_speedup)  # fmt: skip
    limits = evaluate_limits(
        comparison,
        size_on_disk(Path(args.candidate)),
        max_drop=args.max_drop,
        min_speedup=args.min_speedup,
        max_size_mb=args.max_size_mb,
    )
    record = {
        "candidate": args.candidate,
        "baseline": args.baseline,
        "passed": all(limit.passed for limit in limits),
        "limits": [limit.as_dict() for limit in limits],
        "environment": environment(args.threads),
        **comparison.as_dict(),
    }
    emit_json(args.json, record)
    summary = render(comparison.rows(), limits)
    if args.markdown:
        write_text_atomic(args.markdown, summary + "\n")
    say(args, summary)
    failed = [limit for limit in limits if not limit.passed]
    for limit in failed:
        message = f"{limit.name} {_fmt(limit.measured)} (allowed {limit.allowed})"
        print(f"onnxslim-kd: check failed: {message}", file=sys.stderr)
    if any(limit.name != "min-speedup" for limit in failed):
        return BUDGET_MISSED
    return TARGET_MISSED if failed else 0


def size_on_disk(path: Path) -> int:
    """The model file plus the external-data files beside it that it references."""
    return path.stat().st_size + sum(f.stat().st_size for f in external_files(path))


def render(rows: list[tuple[str, str, str, str]], limits: list[Limit]) -> str:
    """Markdown for a pull-request comment: verdict, limits, then the comparison."""
    verdict = "PASSED" if all(limit.passed for limit in limits) else "FAILED"
    gate = [
        (limit.name, _fmt(limit.measured), limit.allowed, "pass" if limit.passed else "FAIL",
         limit.detail)
        for limit in limits
    ]  # fmt: skip
    parts = [f"### onnxslim-kd check: {verdict}"]
    if gate:
        parts.append(markdown_table(["limit", "measured", "allowed", "result", "how"], gate))
    parts.append(markdown_table(["", "baseline", "candidate", "change"], rows))
    return "\n\n".join(parts)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
