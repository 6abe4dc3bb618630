"""Run a recipe: each pass, then verification of its output, then the before/after record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxslim_kd.bench.latency import bench_against
from onnxslim_kd.data import random_data, with_data_shapes
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import check, output_differences, run
from onnxslim_kd.pipeline.checkpoint import Checkpoints
from onnxslim_kd.pipeline.interface import check_interface
from onnxslim_kd.pipeline.recipe import DEFAULT_RECIPE, build_passes
from onnxslim_kd.pipeline.registry import Pass, PassContext
from onnxslim_kd.progress import progress, report
from onnxslim_kd.report.comparison import Comparison, bench_feeds, compare_before_after
from onnxslim_kd.report.outputs import probe_roles

Outputs = dict[str, np.ndarray]

#: Samples each pass is verified on: enough to catch a broken rewrite, cheap to run.
VERIFY_SAMPLES = 64


@dataclass
class CompressResult:
    """The final model, the per-pass records and the before/after comparison.

    `comparison.latency` times the original and every stage's output interleaved in one
    run, so the per-stage speed-ups share one noise floor.
    """

    model: onnx.ModelProto
    passes: list[dict[str, Any]]
    comparison: Comparison

    def as_dict(self) -> dict:
        latency = self.comparison.latency
        stages = (
            [lat.as_dict() | {"stage": lat.label} for lat in latency.latencies] if latency else []
        )
        return {"passes": self.passes, "stages": stages, **self.comparison.as_dict()}


def compress(
    model: onnx.ModelProto,
    recipe: list[dict[str, Any]] | None = None,
    *,
    data: Dataset | None = None,
    eval_data: Dataset | None = None,
    shapes: dict[str, list[int]] | None = None,
    threads: int | None = None,
    bench_runs: int = 50,
    bench_batch: int = 1,
    checkpoints: Checkpoints | None = None,
    label_output: str | None = None,
    speedup_bar: float | None = None,
) -> CompressResult:
    """Run `recipe` (default: DEFAULT_RECIPE) on `model`, verifying every pass.

    Each pass's output must pass onnx.checker, load in onnxruntime and keep the model's
    interface; its output fidelity against the pass's input and against the original is
    recorded (an untuned prune is far from both; the distillation after it is close to the
    original, not to its input). With
    `checkpoints`, finished stages are stored and reused by a rerun. With a `speedup_bar`
    (a target), the stages are timed until the result's speed-up interval leaves it
    (bench.latency.bench_against).
    """
    shapes = with_data_shapes(model, data, shapes)
    data = labels_for_training(model, data, label_output)
    entries = recipe if recipe is not None else DEFAULT_RECIPE
    passes = build_passes(entries)
    verify = data.subset(VERIFY_SAMPLES) if data is not None else random_data(model, shapes)
    context = PassContext(data=data, shapes=shapes, original=model, bench_batch=bench_batch)
    records = []
    stages = [("original", model)]
    current = model
    original_out = run(model, verify)
    current_out: Outputs | None = original_out  # the outputs of `current`; None: not run yet
    for position, step in enumerate(progress(passes, "compress", total=len(passes))):
        stored = checkpoints.load(entries[: position + 1]) if checkpoints else None
        if stored is not None:
            current, record = stored
            record["resumed"] = True
            current_out = None
        else:
            report("compress", f"[{position + 1}/{len(passes)}] {step.name} ...")
            if checkpoints:
                context.work_dir = checkpoints.stage_dir(entries[: position + 1])
            before = run(current, verify) if current_out is None else current_out
            current, record, current_out = _run_pass(
                step, current, context, verify, before, original_out
            )
            if checkpoints:
                checkpoints.store(entries[: position + 1], current, record)
        resumed = " (resumed)" if record.get("resumed") else ""
        report(
            "compress",
            f"[{position + 1}/{len(passes)}] {step.name} done in {record['seconds']:.1f} s"
            f"{resumed}: {record['headline']}",
            step=position + 1, steps=len(passes), pass_name=step.name, seconds=record["seconds"],
            resumed=bool(resumed),
        )  # fmt: skip
        records.append(record)
        stages.append((step.name, current))
    comparison = compare_before_after(
        model, current, eval_data or data, shapes=shapes, runs=0, label_output=label_output
    )
    if bench_runs:
        feeds = bench_feeds(model, eval_data or data, shapes, bench_batch)
        timed = [(label, stage, feeds) for label, stage in stages]
        comparison.latency = bench_against(timed, threads=threads, runs=bench_runs, bar=speedup_bar)
    return CompressResult(current, records, comparison)


def labels_for_training(
    model: onnx.ModelProto, data: Dataset | None, label_output: str | None
) -> Dataset | None:
    """The data the passes see: its labels only when they belong to the first output.

    Passes (distill's cross-entropy, quantize's accuracy) put labels on the first output;
    when they describe another one (a detector's class head after its boxes) they are kept
    for the final, per-output comparison only.
    """
    if data is None or data.labels is None:
        return data
    outputs, roles = probe_roles(model, data, label_output)
    if roles.label_output == next(iter(outputs)):
        return data
    return data.without_labels()


def _run_pass(
    step: Pass, model: onnx.ModelProto, context: PassContext, verify: Dataset,
    before: Outputs, original: Outputs,
) -> tuple[onnx.ModelProto, dict[str, Any], Outputs]:  # fmt: skip
    """Run one pass and verify its output: checker, onnxruntime, interface, fidelity
    against its input's outputs `before` and the original's on `verify`; returns the new
    model, its record and its outputs (the next pass's `before`)."""
    start = time.perf_counter()
    result = step.run(model, context)
    seconds = time.perf_counter() - start
    check(result.model)
    check_interface(model, result.model, step.name)
    after_out = run(result.model, verify)
    fidelity = output_differences(before, after_out)
    cumulative = output_differences(original, after_out)
    after = model_stats(result.model, context.shapes)
    record = {
        "pass": step.name,
        "options": vars(step.options),
        "seconds": round(seconds, 3),
        "summary": result.summary,
        "headline": step.describe(result.summary),
        "params_after": after.params,
        "macs_after": after.macs,
        "fidelity_vs_previous": {k: v.as_dict() for k, v in fidelity.items()},
        "fidelity_vs_original": {k: v.as_dict() for k, v in cumulative.items()},
    }
    return result.model, record, after_out
