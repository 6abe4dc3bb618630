"""`quantize_model`: prepare, calibrate, quantize, hold the accuracy budget, verify, time."""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from onnxslim_kd.bench.cpu import cpu_info
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.defaults import (
    CALIBRATION_METHODS,
    DEFAULT_MAX_DROP,
    DEFAULT_WEIGHT_ROUNDING,
    QUANTIZE_MODES,
    WEIGHT_ROUNDINGS,
    max_drop_error,
)
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import fixed_batch, restore_interface
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.graph.walk import clone
from onnxslim_kd.progress import report
from onnxslim_kd.quantize.bias import apply_shifts, bias_shifts, describe_correction
from onnxslim_kd.quantize.build import build
from onnxslim_kd.quantize.calibration import DEFAULT_MEMORY_MB, DEFAULT_SAMPLES, calibrate
from onnxslim_kd.quantize.coverage import coverage_of
from onnxslim_kd.quantize.dynamic import MATMUL_SHARE, build_dynamic, matmul_share, weighted_matmuls
from onnxslim_kd.quantize.equalize import describe_equalization, equalize
from onnxslim_kd.quantize.exclusions import resolve_exclusions
from onnxslim_kd.quantize.joins import COMPUTE_OPS, calibrated_spans, mismatched_joins
from onnxslim_kd.quantize.method_choice import AUTO_METHODS, choose_method, describe_choice
from onnxslim_kd.quantize.prepare import prepare
from onnxslim_kd.quantize.rounding import apply_rounding, describe_rounding, learned_rounding
from onnxslim_kd.quantize.smooth import describe_smoothing, smooth
from onnxslim_kd.quantize.speed_gate import gate_warning, time_schemes
from onnxslim_kd.quantize.stem import STEM_REASON, stem_region
from onnxslim_kd.quantize.target import DataTypes, choose_data_types, detect_target
from onnxslim_kd.report.budget import Builder, hold_budget
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.outputs import output_roles

#: Calibration samples used to rank layer sensitivity: enough to rank, cheap per layer.
SENSITIVITY_SAMPLES = 64

#: The static scheme with its stem kept in FP32 (quantize.stem), timed beside the others.
STEM_SCHEME = "static+stem-fp32"


@dataclass
class QuantizeOptions:
    """Every choice of the quantize pass; recipe keys and CLI options use these names."""

    method: str = "minmax"
    samples: int | None = DEFAULT_SAMPLES
    per_channel: bool = True
    target_cpu: str | None = None
    exclude: list[str] = field(default_factory=list)
    max_drop: float | None = None  # None: the default floor DEFAULT_MAX_DROP guards fidelity
    min_sqnr: float = 30.0
    max_calib_memory_mb: int = DEFAULT_MEMORY_MB
    force_int8: bool = False  # keep INT8 even where it is measured slower than FP32
    bench_runs: int = 30
    bench_batch: int | None = None  # samples per timed run (None: 1; compress: its own)
    threads: int | None = None
    mode: str = "auto"  # static (QDQ), dynamic (MatMul), or auto: both where MatMuls weigh
    bias_correction: bool = True  # shift static INT8 biases by the measured mean error
    smooth_quant: float | None = None  # SmoothQuant's alpha after LayerNorms (None: off)
    equalize: bool = False  # cross-layer equalization of Conv -> (Relu) -> Conv pairs
    rounding: str = DEFAULT_WEIGHT_ROUNDING  # static INT8 weights: learned per layer or nearest

    def __post_init__(self) -> None:
        if self.mode not in QUANTIZE_MODES:
            choices = ", ".join(QUANTIZE_MODES)
            raise InputError(f"--mode must be one of {choices}, got '{self.mode}'")
        if self.max_drop is not None and max_drop_error(self.max_drop):
            raise InputError(f"--max-drop {max_drop_error(self.max_drop)}")
        if self.bench_runs < 0:
            raise InputError(f"--bench-runs must be >= 0, got {self.bench_runs}")
        if self.smooth_quant is not None and not 0 < self.smooth_quant < 1:
            raise InputError(f"--smooth-quant must be in (0, 1), got {self.smooth_quant}")
        if self.method not in CALIBRATION_METHODS:
            choices = ", ".join(CALIBRATION_METHODS)
            raise InputError(f"--method must be one of {choices}, got '{self.method}'")
        if self.rounding not in WEIGHT_ROUNDINGS:
            choices = ", ".join(WEIGHT_ROUNDINGS)
            raise InputError(f"--rounding must be one of {choices}, got '{self.rounding}'")
        if self.bench_batch is not None and self.bench_batch < 1:
            raise InputError(f"--bench-batch must be >= 1, got {self.bench_batch}")

    @property
    def budget(self) -> float:
        return DEFAULT_MAX_DROP if self.max_drop is None else self.max_drop

    def budget_on(self, samples: int) -> float:
        """The drop allowed when measured on `samples`: --max-drop exactly as given; the
        default floor no finer than one changed prediction, since a floor the data cannot
        resolve sends layers back to FP32 on a single flip (resnet18 in
        benchmarks/quantize: two layers, 2.36x -> 1.65x, on 1 of 26 held-out samples)."""
        if self.max_drop is not None or not samples:
            return self.budget
        return max(DEFAULT_MAX_DROP, 1 / samples)


@dataclass
class QuantizeSummary:
    """The JSON report: what was chosen, what it achieved, and every warning."""

    cpu: dict
    data_types: dict
    prepare: dict
    calibration: dict | None  # None for dynamic INT8: no ranges are calibrated
    excluded: dict[str, str]
    coverage: dict
    sensitivity_sqnr_db: dict[str, float] = field(default_factory=dict)
    fallback: list[dict] = field(default_factory=list)
    fallback_layers: list[str] = field(default_factory=list)
    budget: dict | None = None
    latency: dict | None = None
    fidelity: dict = field(default_factory=dict)
    result: str = "int8"
    evaluated_on: str = ""
    budget_source: str = ""  # "--max-drop" or "default floor"
    max_drop: float | None = None  # the drop allowed, as measured (QuantizeOptions.budget_on)
    joins_kept_float: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scheme: str = "static"  # static QDQ, or dynamic MatMul (see quantize/dynamic.py)
    schemes: dict[str, dict] = field(default_factory=dict)  # every scheme tried, measured
    bias_correction: dict | None = None  # quantize/bias.py's record (static scheme)
    smoothing: dict | None = None  # quantize/smooth.py's record, with --smooth-quant
    equalization: dict | None = None  # quantize/equalize.py's record, with --equalize
    rounding: dict | None = None  # quantize/rounding.py's record, with --rounding gptq

    @property
    def budget_met(self) -> bool | None:
        return None if self.budget is None else self.budget["ok"]

    @property
    def fidelity_of(self) -> str:
        """Whose fidelity `fidelity` is: the INT8 model written, or the candidate the speed
        gate refused when it wrote the FP32 model instead."""
        return "int8" if self.result == "int8" else "int8 candidate (not written)"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budget_met": self.budget_met, "fidelity_of": self.fidelity_of}


def quantize_model(
    model: onnx.ModelProto,
    data: Dataset,
    options: QuantizeOptions | None = None,
    *,
    eval_data: Dataset | None = None,
) -> tuple[onnx.ModelProto, QuantizeSummary]:
    """INT8 copy of `model` calibrated on `data`; `eval_data` measures the budget and fidelity.

    Without `eval_data`, a fifth of `data` is held out to measure them
    (Dataset.evaluation_split; the report says on what). Fidelity is always guarded (see
    DEFAULT_MAX_DROP), and INT8 that is measured slower than FP32 is not returned unless
    `options.force_int8`. `model` is never modified.
    """
    options = options or QuantizeOptions()
    data, eval_data, evaluated_on = _held_out(data, eval_data)
    prepared, prepare_report = prepare(model)
    equalization = None
    if options.equalize:
        prepared, equalization = equalize(prepared)
        report("quantize", f"equalized {describe_equalization(equalization.as_dict())}")
    smoothing = None
    if options.smooth_quant is not None:
        prepared, smoothing = smooth(prepared, data.subset(options.samples), options.smooth_quant)
        report("quantize", f"SmoothQuant {describe_smoothing(smoothing.as_dict())}")
    types = choose_data_types(options.target_cpu, options.per_channel)
    excluded = resolve_exclusions(prepared, options.exclude)
    evaluation = eval_data if eval_data is not None else data
    warnings = list(types.warnings)
    if types.target != detect_target():
        warnings.append(
            f"coverage and latency are measured on this {detect_target()} CPU, "
            f"not on the {types.target} target"
        )
    if eval_data is None:
        warnings.append(f"fidelity and the budget are measured on {evaluated_on}")
    warnings += _resolution(options, len(evaluation))
    budget_source = "default floor" if options.max_drop is None else "--max-drop"
    options = replace(options, max_drop=options.budget_on(len(evaluation)))  # as measured
    schemes = _schemes(options.mode, prepared, evaluation)
    with tempfile.TemporaryDirectory(prefix="onnxslim-kd-quantize-") as tmp:
        workdir = Path(tmp)
        prepared_path = save(prepared, workdir / "prepared.onnx")
        base = QuantizeSummary(
            cpu=cpu_info(),
            data_types=types.as_dict(),
            prepare=prepare_report.as_dict(),
            calibration=None,  # static INT8's fields come from _static_builder
            excluded=excluded,
            coverage={},
            evaluated_on=evaluated_on,
            smoothing=None if smoothing is None else smoothing.as_dict(),
            equalization=None if equalization is None else equalization.as_dict(),
            budget_source=budget_source,
            max_drop=options.max_drop,
            warnings=warnings,
        )
        builders: dict[str, tuple[Builder, frozenset[str] | set[str]]] = {}
        fields: dict[str, dict[str, Any]] = {"dynamic": {}}  # dynamic: no ranges to calibrate
        if "static" in schemes:
            static, fields["static"] = _static_builder(
                prepared, data, evaluation, workdir, types, options, excluded
            )
            builders["static"] = (static, COMPUTE_OPS)

        def dynamic(
            *, exclude: Sequence[str] = (), only: list[str] | None = None
        ) -> onnx.ModelProto:
            return build_dynamic(
                prepared_path, types, workdir, exclude=[*excluded, *exclude], only=only
            )

        builders["dynamic"] = (dynamic, {"MatMul"})
        built = {}
        for scheme in schemes:
            own = {"excluded": dict(excluded), **fields[scheme]}
            summary = replace(base, warnings=list(warnings), scheme=scheme, **own)
            builder, ops = builders[scheme]
            quantized = _hold_budget(
                prepared, builder(), builder, ops, data.subset(options.samples), evaluation,
                options, summary,
            )  # fmt: skip
            built[scheme] = (_verified(model, quantized, evaluation, summary), summary)
        stem = stem_region(prepared) if options.bench_runs and "static" in built else []
        if stem and not set(stem) & set(built["static"][1].excluded):
            built[STEM_SCHEME] = _stem_in_float(
                model, prepared, builders["static"][0], built["static"][1], stem, evaluation,
                options, base.warnings,
            )  # fmt: skip
    if options.bench_runs:
        return _latency_gate(model, built, evaluation, options)
    return _untimed_choice(built)


def _stem_in_float(
    model: onnx.ModelProto, prepared: onnx.ModelProto, static: Builder,
    static_summary: QuantizeSummary, stem: list[str], evaluation: Dataset,
    options: QuantizeOptions, warnings: list[str],
) -> tuple[onnx.ModelProto, QuantizeSummary]:  # fmt: skip
    """The static model with its stem (quantize.stem) in FP32 as well, for the speed gate
    to time beside it: the same layers kept for the budget, which is scored again but not
    searched (the stem in FP32 only removes error)."""
    summary = replace(
        static_summary, excluded={**static_summary.excluded, **dict.fromkeys(stem, STEM_REASON)},
        warnings=list(warnings), coverage={}, fidelity={},
    )  # fmt: skip
    changed = static(exclude=[*static_summary.fallback_layers, *stem])
    held = hold_budget(
        prepared, changed, static, [], evaluation, evaluation, options.budget, options.min_sqnr
    )
    summary.budget = held.score
    if not summary.budget["ok"]:
        summary.warnings.append(_missed_budget(held.trail))
    return _verified(model, held.model, evaluation, summary), summary


def _resolution(options: QuantizeOptions, samples: int) -> list[str]:
    """A warning when one sample of the evaluation weighs more than the budget."""
    if options.budget <= 0 or samples * options.budget >= 1:
        return []
    share, enough = f"{1 / samples:.1%}", round(1 / options.budget)
    if options.max_drop is None:
        return [
            f"the default floor is measured on {samples} samples, where one changed "
            f"prediction is {share}: it allows that one; --eval-data with at least {enough} "
            "samples measures one point, --max-drop sets the budget exactly"
        ]
    return [
        f"one sample of the {samples} the budget is measured on is {share}, more than the "
        f"{options.budget:g} budget: any changed prediction misses it and sends layers back "
        f"to FP32; --eval-data with at least {enough} samples measures it finely"
    ]


def _static_builder(
    prepared: onnx.ModelProto, data: Dataset, evaluation: Dataset, workdir: Path,
    types: DataTypes, options: QuantizeOptions, excluded: dict[str, str],
) -> tuple[Builder, dict[str, Any]]:  # fmt: skip
    """Calibrate (each method of `auto`, keeping the best on `evaluation`), keep
    mismatched joins float, learn the weight rounding, measure the bias correction: the
    builder of static QDQ models from those, and the summary fields that record them."""
    if options.method != "auto":
        uncorrected, fields = _calibrated(prepared, data, workdir, types, options, excluded)
        all_int8 = uncorrected()
    else:
        calibrated = {
            method: _calibrated(prepared, data, workdir, types, options, excluded, method)
            for method in AUTO_METHODS
        }
        candidates = {method: builder() for method, (builder, _) in calibrated.items()}
        choice = choose_method(
            prepared, candidates, evaluation, options.budget, options.min_sqnr
        ).as_dict()
        report("quantize", f"calibration method: {describe_choice(choice)}")
        uncorrected, fields = calibrated[choice["chosen"]]
        fields["calibration"]["auto"] = choice
        all_int8 = candidates[choice["chosen"]]
    edits: list[Callable[[onnx.ModelProto], onnx.ModelProto]] = []  # of every build, in order
    if options.rounding == "gptq":
        learned, rounding = learned_rounding(prepared, all_int8, data.subset(options.samples))
        fields["rounding"] = rounding.as_dict()
        report("quantize", f"weight rounding: {describe_rounding(fields['rounding'])}")
        edits.append(functools.partial(apply_rounding, learned=learned))
        all_int8 = edits[-1](all_int8)
    if options.bias_correction:  # measured on the weights as rounded
        shifts, correction = bias_shifts(prepared, all_int8, data.subset(options.samples))
        fields["bias_correction"] = correction.as_dict()
        report("quantize", f"bias correction: {describe_correction(fields['bias_correction'])}")
        edits.append(functools.partial(apply_shifts, shifts=shifts))
        all_int8 = edits[-1](all_int8)

    def edited(**kwargs: Any) -> onnx.ModelProto:
        """The all-INT8 model is built and edited once; other builds take the same edits."""
        if not kwargs:
            return clone(all_int8)
        return functools.reduce(lambda model, edit: edit(model), edits, uncorrected(**kwargs))

    return edited, fields


def _calibrated(
    prepared: onnx.ModelProto, data: Dataset, workdir: Path, types: DataTypes,
    options: QuantizeOptions, excluded: dict[str, str], method: str | None = None,
) -> tuple[Builder, dict[str, Any]]:  # fmt: skip
    """Ranges by `method` (default: the options'), the joins they mismatch kept float: the
    builder of uncorrected static QDQ models, and the summary fields that record them."""
    method = method or options.method
    started = time.perf_counter()
    ranges, calibration = calibrate(
        prepared, data, workdir, method=method, samples=options.samples,
        memory_mb=options.max_calib_memory_mb,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    report("quantize", f"calibrated ({calibration.method}, {calibration.samples} "
           f"samples) in {seconds:.1f} s", samples=calibration.samples)  # fmt: skip
    joins = mismatched_joins(prepared, calibrated_spans(ranges))
    fields: dict[str, Any] = {
        "calibration": calibration.as_dict(),
        "joins_kept_float": joins,
        "excluded": {**excluded, **{n: why for n, why in joins.items() if n not in excluded}},
    }
    prepared_path, kept_float = workdir / "prepared.onnx", list(fields["excluded"])

    def uncorrected(
        *, exclude: Sequence[str] = (), only: list[str] | None = None
    ) -> onnx.ModelProto:
        return build(
            prepared_path, ranges, method, types, workdir,
            exclude=[*kept_float, *exclude], only=only,
        )  # fmt: skip

    return uncorrected, fields


def _schemes(mode: str, prepared: onnx.ModelProto, data: Dataset) -> list[str]:
    """The schemes to build: `mode`'s, or for auto static and, where MatMuls with constant
    weights hold MATMUL_SHARE of the MACs, dynamic too."""
    if mode != "auto":
        return [mode]
    heavy = weighted_matmuls(prepared) and matmul_share(prepared, data) >= MATMUL_SHARE
    return ["static", "dynamic"] if heavy else ["static"]


def _verified(
    model: onnx.ModelProto, quantized: onnx.ModelProto, evaluation: Dataset,
    summary: QuantizeSummary,
) -> onnx.ModelProto:  # fmt: skip
    """The quantized model with `model`'s interface, checked, its coverage and fidelity in
    `summary`."""
    restore_interface(quantized, model)
    check(quantized)
    summary.coverage = coverage_of(quantized).as_dict()
    if summary.coverage["dq_float"]:
        summary.warnings.append(
            f"{summary.coverage['dq_float']} compute ops did not fuse into integer kernels "
            "and run as DequantizeLinear -> float op -> QuantizeLinear"
        )
    summary.fidelity = _fidelity(model, quantized, evaluation)
    return quantized


def _untimed_choice(built: dict) -> tuple[onnx.ModelProto, QuantizeSummary]:
    """Without timing: the first scheme (static before dynamic) that meets the budget."""
    quantized, summary = built[_eligible(built)[0]]
    summary.schemes = _scheme_records(built)
    return quantized, summary


def _eligible(built: dict) -> list[str]:
    """The schemes that met the budget (or were not measured against one); all of them
    when none did, to return the closest."""
    within = [name for name, (_, summary) in built.items() if summary.budget_met is not False]
    return within or list(built)


def _scheme_records(built: dict, speedups: dict[str, float] | None = None) -> dict:
    return {
        name: {
            "budget_met": summary.budget_met,
            "fallback_layers": len(summary.fallback_layers),
            "integer_kernels": summary.coverage["integer"],
            **({"speedup": round(speedups[name], 4)} if speedups else {}),
        }
        for name, (_, summary) in built.items()
    }


def _hold_budget(
    prepared: onnx.ModelProto,
    quantized: onnx.ModelProto,
    builder: Builder,
    ops: frozenset[str] | set[str],
    calibration: Dataset,
    evaluation: Dataset,
    options: QuantizeOptions,
    summary: QuantizeSummary,
) -> onnx.ModelProto:
    """Meet the budget (--max-drop, else the default floor) by sending the fewest most
    sensitive layers back to FP32 (report.budget); nothing is searched when all-INT8 meets
    it."""
    candidates = [
        node.name
        for node in prepared.graph.node
        if node.op_type in ops and node.name not in summary.excluded
    ]
    held = hold_budget(
        prepared, quantized, builder, candidates, evaluation,
        calibration.subset(SENSITIVITY_SAMPLES), options.budget, options.min_sqnr,
    )  # fmt: skip
    summary.budget, summary.fallback = held.score, held.trail
    summary.fallback_layers, summary.sensitivity_sqnr_db = held.reverted, held.sensitivity_sqnr_db
    for name in summary.fallback_layers:
        summary.excluded[name] = "accuracy budget: sensitive layer kept in FP32"
    if not summary.budget["ok"]:
        summary.warnings.append(_missed_budget(held.trail))
    return held.model


def _missed_budget(trail: list[dict]) -> str:
    """Why all-INT8 was saved over budget: even the attempt with the most layers in FP32
    missed, so the loss is in what stays quantized (activations), not in those layers."""
    most = trail[-1]
    if most["reverted"] == 0:
        return f"{most['metric']} budget not met ({most['output']}: {most['candidate']:.4g})"
    return (
        f"{most['metric']} budget not met even with all {most['reverted']} layers in FP32 "
        f"({most['output']}: {most['candidate']:.4g}): the activations' quantization loses it; "
        "saved all-INT8, which keeping layers in FP32 would only slow down"
    )


def _fidelity(model: onnx.ModelProto, quantized: onnx.ModelProto, data: Dataset) -> dict:
    """Per-output fidelity against the original FP32 model, plus accuracy on the labels'
    output."""
    reference, candidate = run(model, data), run(quantized, data)
    roles = output_roles(model, reference, data.labels)
    record: dict[str, Any] = {
        "samples": len(data),
        "outputs": {k: roles.fidelity(k, reference[k], candidate[k]).as_dict() for k in reference},
    }
    if roles.label_output is not None:
        name, axis = roles.label_output, roles.class_axes.get(roles.label_output)
        record["accuracy_fp32"] = accuracy(reference[name], data.labels, axis)
        record["accuracy_int8"] = accuracy(candidate[name], data.labels, axis)
    return record


def _latency_gate(
    model: onnx.ModelProto, built: dict, data: Dataset, options: QuantizeOptions
) -> tuple[onnx.ModelProto, QuantizeSummary]:
    """Keep the fastest scheme within the budget (any, when none is), and only when it is
    measurably faster than FP32 unless --force-int8 (quantize.speed_gate)."""
    feeds = data.first(fixed_batch(model) or options.bench_batch or 1)
    verdict = time_schemes(
        model, {name: q for name, (q, _) in built.items()}, _eligible(built), feeds,
        threads=options.threads, runs=options.bench_runs,
    )  # fmt: skip
    quantized, summary = built[verdict.chosen]
    summary.latency = {**verdict.timing, "verdict": verdict.verdict}
    summary.schemes = _scheme_records(built, verdict.speedups)
    if len(built) > 1:  # a choice, not a warning: the JSON has it in `schemes`
        speedups = ", ".join(f"{n} {s:.2f}x" for n, s in verdict.speedups.items())
        report("quantize", f"{verdict.chosen} chosen: {speedups} vs FP32 (interleaved medians)")
    warning = gate_warning(verdict, options.force_int8)
    if warning:
        summary.warnings.append(warning)
    if verdict.verdict == "faster" or options.force_int8:
        return quantized, summary
    summary.result = "fp32 (int8 not faster)"
    return clone(model), summary


def _held_out(data: Dataset, eval_data: Dataset | None) -> tuple[Dataset, Dataset | None, str]:
    """(calibration data, evaluation data or None, what the evaluation is measured on)."""
    if eval_data is not None:
        return data, eval_data, "the evaluation data"
    rest, held = data.evaluation_split()
    if held is None:
        return data, None, f"the {len(data)} calibration samples (too few to hold any out)"
    return rest, held, f"{len(held)} calibration samples held out from calibration"
