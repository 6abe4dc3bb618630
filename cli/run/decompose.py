"""The work of `onnxslim-kd decompose`, imported only when the command runs."""

from __future__ import annotations

import argparse

from cli.exit_codes import BUDGET_MISSED, OK
from cli.run.common import (
    data_from,
    emit_json,
    save_output,
    say,
    shapes_for,
)
from onnxslim_kd import progress
from onnxslim_kd.decompose import Budget, decompose, make_selector
from onnxslim_kd.decompose.summary import ROW_HEADER, DecomposeSummary
from onnxslim_kd.defaults import DEFAULT_MAX_DROP, DEFAULT_MIN_SQNR
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check, run_pair
from onnxslim_kd.report.outputs import output_roles
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    if args.max_drop is not None and args.data is None:
        raise InputError("--max-drop needs --data to measure the outputs on")
    selector = make_selector(args.energy, args.rank_ratio, args.vbmf, args.target_macs)
    model = load(args.model)
    data = data_from(args, model, args.data)
    shapes = shapes_for(args, model, data)
    budget = None if args.max_drop is None else Budget(data, args.max_drop, args.min_sqnr)
    out, summary = decompose(
        model,
        selector,
        method=args.method,
        measure=args.measure,
        exclude=args.exclude,
        shapes=shapes,
        budget=budget,
    )
    check(out)
    save_output(out, args.output, args.model)
    fidelity = output_fidelity(model, out, data) if data is not None else None
    record = {"input": str(args.model), "output": str(args.output), **summary.as_dict()}
    emit_json(args.json, {**record, "fidelity": fidelity})
    say(args, render(summary, args.output, fidelity))
    progress.warn("decompose", _losses(fidelity or {}, args))
    return BUDGET_MISSED if summary.budget is not None and not summary.budget["ok"] else OK


#: Samples the factorised model is compared on, output by output, with --data.
FIDELITY_SAMPLES = 64


def output_fidelity(model, factorised, data) -> dict[str, dict]:
    """Every output against the original on the data: top-1 agreement along the class axis
    for class-like outputs, SQNR for all."""
    sample = data.subset(FIDELITY_SAMPLES)
    reference, candidate = run_pair(model, factorised, sample)
    roles = output_roles(model, reference, sample.labels)
    return {
        name: roles.fidelity(name, ref, candidate[name]).as_dict()
        for name, ref in reference.items()
    }


def _losses(fidelity: dict[str, dict], args: argparse.Namespace) -> list[str]:
    """A warning per output the factorisation damaged past the floors, with the remedy."""
    budgeted = args.max_drop is not None
    floor_drop = args.max_drop if budgeted else DEFAULT_MAX_DROP
    floor_sqnr = args.min_sqnr if budgeted else DEFAULT_MIN_SQNR
    command = (
        f"onnxslim-kd distill {args.output} -o {args.output}.kd.onnx --teacher {args.model} "
        f"--data {args.data}"
    )
    remedy = ("distillation recovers it" if budgeted else
              "--max-drop keeps the layers that cost it at full rank, or distillation "
              "recovers it")  # fmt: skip
    found = []
    for name, entry in fidelity.items():
        agreement, sqnr = entry.get("top1_agreement"), entry["sqnr_db"]
        if agreement is not None and agreement < 1 - floor_drop - 1e-9:
            loss = f"top-1 agreement {agreement:.1%}"
        elif agreement is None and sqnr < floor_sqnr:
            loss = f"SQNR {sqnr:.1f} dB"
        else:
            continue
        found.append(f"'{name}' {loss} against the original without fine-tuning; "
                     f"{remedy}: {command}")  # fmt: skip
    return found


def render(summary: DecomposeSummary, output: str, fidelity: dict | None = None) -> str:
    """Every candidate layer with its decision, the totals, then each output's fidelity."""
    ratio = summary.macs_after / summary.macs_before if summary.macs_before else 1.0
    return "\n\n".join(
        [
            markdown_table(ROW_HEADER, summary.rows()),
            f"{summary.strategy}: {summary.decomposed} of {len(summary.layers)} layers factorised; "
            f"MACs {summary.macs_before / 1e6:,.1f}M -> {summary.macs_after / 1e6:,.1f}M "
            f"({ratio:.2f}x) in {summary.seconds:.1f} s",
            *[_fidelity_line(name, entry) for name, entry in (fidelity or {}).items()],
            *([_budget_line(summary)] if summary.budget is not None else []),
            f"wrote {output}",
        ]
    )


def _budget_line(summary: DecomposeSummary) -> str:
    """Whether the budget held and what holding it cost."""
    budget = summary.budget
    state = "met" if budget["ok"] else "NOT MET"
    return (f"budget {state} on '{budget['output']}' ({budget['metric']}); "
            f"{len(summary.kept_full_rank)} layers kept full rank for it")  # fmt: skip


def _fidelity_line(name: str, entry: dict) -> str:
    text = f"'{name}' vs the original: SQNR {entry['sqnr_db']:.1f} dB"
    if entry.get("top1_agreement") is not None:
        text += f", top-1 agreement {entry['top1_agreement']:.2%}"
    return text
