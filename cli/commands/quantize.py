"""`onnxslim-kd quantize`: INT8 for the CPU it will run on, verified and timed."""

from __future__ import annotations

import argparse
import os

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    data_from,
    emit_json,
    parse_batch_axes,
    save_output,
    say,
)
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE, max_drop
from cli.exit_codes import BUDGET_MISSED
from onnxslim_kd import progress
from onnxslim_kd.data import Preprocess, load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize import QuantizeOptions, QuantizeSummary, quantize_model
from onnxslim_kd.quantize.calibration import DEFAULT_MEMORY_MB, DEFAULT_SAMPLES, METHODS
from onnxslim_kd.quantize.target import TARGETS
from onnxslim_kd.report.table import markdown_table

#: Exit code when the model was saved but --max-drop could not be met.

EXAMPLES = """examples:
  onnxslim-kd quantize samples/digits/model.onnx -o /tmp/digits.int8.onnx \\
      --data samples/digits/calib.npz --eval-data samples/digits/test.npz
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib/ \\
      --preprocess resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib.npz \\
      --max-drop 0.005 --eval-data test.npz --json=report.json
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib.npz \\
      --exclude op:Gemm --exclude 're:/layer4/.*' --target-cpu arm --method percentile

exit codes: 0 done, 2 bad input, 3 saved but the budget was not met, or INT8 was slower
than FP32 and the FP32 model was written (--force-int8 keeps INT8)
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "quantize",
        "INT8 post-training quantization with CPU-aware data types and an accuracy budget",
        EXAMPLES,
    )
    parser.add_argument("model", help="input FP32 ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the INT8 model")
    add_data_options(parser, required=True)
    parser.set_defaults(samples=DEFAULT_SAMPLES)
    parser.add_argument(
        "--method", choices=sorted(METHODS), default="minmax", help="calibration (minmax)"
    )
    granularity = parser.add_mutually_exclusive_group()
    granularity.add_argument(
        "--per-channel", dest="per_channel", action="store_true", default=True,
        help="one weight scale per output channel (default)",
    )  # fmt: skip
    granularity.add_argument(
        "--per-tensor", dest="per_channel", action="store_false", help="one scale per weight"
    )
    parser.add_argument(
        "--target-cpu", choices=TARGETS, help="data types for this CPU instead of the detected one"
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN",
        help="keep nodes in FP32: node name, op:TYPE or re:REGEX (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--max-drop", type=max_drop, metavar="D",
        help="accuracy budget as a fraction (0.01 = one point); sensitive layers fall back to "
        "FP32. Without it the same search runs when all-INT8 drops more than 0.01",
    )  # fmt: skip
    parser.add_argument(
        "--eval-data", help="held-out data (with labels: accuracy) for the budget and fidelity"
    )
    parser.add_argument(
        "--min-sqnr", type=float, default=30.0, metavar="DB",
        help="budget for outputs that are not class scores: output SQNR floor in dB (30)",
    )  # fmt: skip
    parser.add_argument(
        "--max-calib-memory", type=POSITIVE, default=DEFAULT_MEMORY_MB, metavar="MB",
        help=f"memory for entropy/percentile activation histograms ({DEFAULT_MEMORY_MB})",
    )  # fmt: skip
    parser.add_argument(
        "--force-int8", action="store_true",
        help="write INT8 even when it is measured slower than FP32 here (default: the FP32 "
        "model is written, with a warning and exit code 3)",
    )  # fmt: skip
    parser.add_argument(
        "--bench-runs",
        type=NON_NEGATIVE,
        default=30,
        help="interleaved FP32/INT8 timed runs (0 skips)",
    )
    parser.add_argument(
        "--threads", type=POSITIVE, default=os.cpu_count(), help="intra-op threads for timing"
    )
    add_json_option(parser, "the quantization report")
    parser.set_defaults(
        handler=run,
        paths=PathRoles(inputs=("model", "data", "eval_data"), models=("output",), files=("json",)),
    )


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
        threads=args.threads,
    )
    data = data_from(args, model, args.data)
    eval_data = None
    if args.eval_data:  # all of it: --samples sizes the calibration subset only
        eval_data = load_data(
            args.eval_data,
            model,
            preprocess=Preprocess.parse(args.preprocess),
            axes=parse_batch_axes(args.batch_axis),
        )
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
    return [
        ("target CPU", f"{types['target']} ({origin})"),
        ("data types", f"{types['format']}: activations {types['activations']}, weights {weights}"),
        ("calibration", f"{calibration['method']}, {calibration['samples']} samples"),
        ("kept in FP32", _kept(summary)),
    ]


def _kept(summary: QuantizeSummary) -> str:
    """How many nodes stay in FP32, and each place a join was kept in float (and why)."""
    text = f"{len(summary.excluded)} nodes"
    joins = [f"{name}: {why}" for name, why in summary.joins_kept_float.items()
             if not why.startswith("after ")]  # fmt: skip
    return "; ".join([text, *joins])


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
        rows.append(("latency p50", f"{timing} ({int8['speedup']:.2f}x)"))
    if "accuracy_int8" in fidelity:
        change = f"{fidelity['accuracy_fp32']:.2%} FP32 -> {fidelity['accuracy_int8']:.2%} INT8"
        rows.append(("accuracy", f"{change} ({fidelity['samples']} samples)"))
    for name, fid in fidelity["outputs"].items():
        text = f"SQNR {fid['sqnr_db']:.1f} dB"
        if fid["top1_agreement"] is not None:
            text += f", top-1 agreement {fid['top1_agreement']:.2%}"
        rows.append((f"'{name}' vs FP32", text))
    if summary.budget is not None:
        state = "met" if summary.budget["ok"] else "NOT MET"
        layers = len(summary.fallback_layers)
        worst = summary.budget.get("output")
        on = f" ('{worst}')" if worst else ""
        rows.append(("budget", f"{summary.budget_source}: {summary.budget['metric']}{on} "
                     f"{state}, {layers} layers fell back to FP32"))  # fmt: skip
    rows.append(("measured on", summary.evaluated_on))
    return rows
