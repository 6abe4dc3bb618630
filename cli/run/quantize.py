"""The work of `onnxslim-kd quantize`, imported only when the command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli.exit_codes import BUDGET_MISSED
from cli.run.common import (
    data_from,
    emit_json,
    save_output,
    say,
)
from onnxslim_kd import progress
from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize import QuantizeOptions, QuantizeSummary, quantize_model
from onnxslim_kd.quantize.bias import describe_correction
from onnxslim_kd.quantize.equalize import describe_equalization
from onnxslim_kd.quantize.method_choice import describe_choice
from onnxslim_kd.quantize.rounding import describe_rounding
from onnxslim_kd.quantize.smooth import describe_smoothing
from onnxslim_kd.quantize.speed_gate import describe_timing
from onnxslim_kd.quantize.stem import STEM_REASON
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    options = QuantizeOptions(
        method=args.method,
        samples=args.samples,
        per_channel=args.per_channel,
        target_cpu=args.target_cpu,
        exclude=args.exclude,
        max_drop=args.max_drop,
        min_sqnr=args.min_sqnr,
        max_calib_memory_mb=args.max_calib_memory,
        force_int8=args.force_int8,
        bench_runs=args.bench_runs,
        bench_batch=args.bench_batch,
        threads=args.threads,
        mode=args.mode,
        bias_correction=args.bias_correction,
        smooth_quant=args.smooth_quant,
        equalize=args.equalize,
        rounding=args.rounding,
    )
    data = data_from(args, model, args.data)
    # all of it: --samples sizes the calibration subset only
    eval_data = data_from(args, model, args.eval_data, whole=True)
    quantized, summary = quantize_model(model, data, options, eval_data=eval_data)
    save_output(quantized, args.output, args.model)
    emit_json(args.json, {"input": args.model, "output": args.output, **summary.as_dict()})
    say(args, render(summary, args.output))
    progress.warn("quantize", summary.warnings)
    slower = summary.result != "int8"
    return BUDGET_MISSED if summary.budget_met is False or slower else 0


def render(summary: QuantizeSummary, output: str) -> str:
    """The choices and results in one table (the warnings go to stderr)."""
    rows = [*_choices(summary), *_results(summary), ("result", f"{summary.result} -> {output}")]
    return markdown_table(["quantize", "value"], rows)


def _choices(summary: QuantizeSummary) -> list[tuple[str, str]]:
    types, calibration = summary.data_types, summary.calibration
    granularity = "per-channel" if types["per_channel"] else "per-tensor"
    weights = f"{types['weights']} {granularity}" + (" 7-bit" if types["reduce_range"] else "")
    origin = "detected" if types["detected"] else "given"
    formats = {
        "static": f"{types['format']}: activations {types['activations']}, weights {weights}",
        "dynamic": f"dynamic MatMul: weights int8 {granularity}, activations per batch at run time",
    }
    return [
        ("target CPU", f"{types['target']} ({origin})"),
        ("data types", formats[summary.scheme]),
        ("calibration", _calibrated(calibration)),
        ("kept in FP32", _kept(summary)),
        ("weight rounding", _rounding(summary)),
        ("bias correction", _correction(summary)),
        ("SmoothQuant", _described(summary.smoothing, describe_smoothing)),
        ("equalization", _described(summary.equalization, describe_equalization)),
    ]


def _described(record: dict | None, describe: Callable[[dict], str]) -> str:
    """An optional step's table line: its description, or off when it did not run."""
    return "off" if record is None else describe(record)


def _calibrated(calibration: dict | None) -> str:
    if calibration is None:
        return "none (dynamic INT8 needs no ranges)"
    ranges = f"{calibration['method']}, {calibration['samples']} samples"
    if "auto" not in calibration:
        return ranges
    return f"{ranges}; auto: {describe_choice(calibration['auto'])}"


def _rounding(summary: QuantizeSummary) -> str:
    if summary.rounding is None:
        return "not used (dynamic INT8)" if summary.scheme == "dynamic" else "nearest"
    return describe_rounding(summary.rounding)


def _correction(summary: QuantizeSummary) -> str:
    if summary.bias_correction is None:
        return "not used (dynamic INT8)" if summary.scheme == "dynamic" else "off"
    return describe_correction(summary.bias_correction)


def _kept(summary: QuantizeSummary) -> str:
    """How many nodes stay in FP32, the stem when it was timed faster there, and each place
    a join was kept in float (and why)."""
    text = f"{len(summary.excluded)} nodes"
    stem = [name for name, why in summary.excluded.items() if why == STEM_REASON]
    faster = [f"stem {' + '.join(stem)} (faster in FP32)"] if stem else []
    joins = [f"{name}: {why}" for name, why in summary.joins_kept_float.items()
             if not why.startswith("after ")]  # fmt: skip
    return "; ".join([text, *faster, *joins])


def _results(summary: QuantizeSummary) -> list[tuple[str, str]]:
    coverage, fidelity = summary.coverage, summary.fidelity
    compute = coverage["integer"] + coverage["dq_float"] + coverage["float"]
    rows = [
        (
            "integer kernels",
            f"{coverage['integer']} of {compute} compute ops ({coverage['ratio']:.0%}), "
            f"{coverage['dq_float']} left as DQ -> float -> Q",
        )
    ]
    if summary.latency:
        fp32, int8 = summary.latency["models"]
        timing = f"{fp32['p50_ms']:.3f} ms FP32 -> {int8['p50_ms']:.3f} ms INT8"
        speed = f"{describe_timing(summary.latency)}: {summary.latency['verdict']}"
        rows.append(("latency p50", f"{timing} ({speed})"))
    written = summary.fidelity_of == "int8"
    int8 = "INT8" if written else "INT8 candidate (not written)"
    if "accuracy_int8" in fidelity:
        change = f"{fidelity['accuracy_fp32']:.2%} FP32 -> {fidelity['accuracy_int8']:.2%} {int8}"
        rows.append(("accuracy", f"{change} ({fidelity['samples']} samples)"))
    for name, fid in fidelity["outputs"].items():
        text = f"SQNR {fid['sqnr_db']:.1f} dB"
        if fid["top1_agreement"] is not None:
            text += f", top-1 agreement {fid['top1_agreement']:.2%}"
        rows.append((f"'{name}' vs FP32" if written else f"INT8 candidate '{name}' vs FP32", text))
    if summary.budget is not None:
        state = "met" if summary.budget["ok"] else "NOT MET"
        layers = len(summary.fallback_layers)
        worst = summary.budget.get("output")
        on = f" ('{worst}')" if worst else ""
        metric = summary.budget["metric"]
        allowed = f" drop <= {summary.max_drop:.3g}" if metric != "sqnr" else ""
        rows.append(("budget", f"{summary.budget_source}: {metric}{on}{allowed} {state}, "
                     f"{layers} layers fell back to FP32"))  # fmt: skip
    rows.append(("measured on", summary.evaluated_on))
    return rows
