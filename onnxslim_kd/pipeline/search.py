"""Search the compression that reaches a speed-up within an accuracy budget, latency first.

Fine-tuning is the expensive step (minutes per candidate) and the speed of a structure does
not depend on its weights, so the search first builds every structure without fine-tuning
(prune to a MACs fraction, optionally at half resolution -> decompose where it measurably
pays -> quantize) and times them all interleaved against the original in one run, as
NetAdapt does with measured latency. Only then does it fine-tune: the gentlest structure
(most MACs kept) whose measured speed-up meets the target first; while a trial misses the
accuracy budget it backs off to gentler structures, and while one keeps the budget but
measures slower than the target it moves to stronger ones. A transformer's residual width
(the channels LayerNorms normalise) is kept until the structures keeping it run out short
of the target: pruning it changes the LayerNorms' statistics, so the structures that do
are only timed then, and fine-tune PRUNE_NORMS_EPOCHS times longer.
Each trial runs the whole default recipe with distillation and is measured like `check`
measures: speed-up as the ratio of interleaved medians, timed until its 95% interval
leaves the target, which it reaches unless measurably below (bench.latency.Latency.
reaches); quality as test accuracy (or top-1 agreement with the original without labels).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data.dataset import EVALUATION_SHARE, Dataset
from onnxslim_kd.defaults import DEFAULT_MIN_SQNR, MAX_TRIALS, PRUNE_NORMS_EPOCHS
from onnxslim_kd.errors import InputError
from onnxslim_kd.pipeline.checkpoint import Checkpoints
from onnxslim_kd.pipeline.runner import VERIFY_SAMPLES, CompressResult, compress
from onnxslim_kd.progress import muted, progress, report
from onnxslim_kd.report.comparison import bench_feeds
from onnxslim_kd.report.gate import accuracy_drop, within_budget

#: MACs fractions kept by channel pruning, gentle to strong; 1.0 (no pruning, so no
#: distillation either: decompose where faster and quantize) is the safe first trial.
STRENGTHS = (1.0, 0.5, 0.3, 0.2, 0.13, 0.08)
#: Resolution factors tried after the stem (2: spatial pruning, see prune/spatial.py).
DOWNSAMPLE = (1, 2)
#: Fine-tuned trials at most, besides the no-pruning baseline.
#: Low-rank factorisation only where onnxruntime measures it faster.
DECOMPOSE = {"name": "decompose", "energy": 0.95, "measure": True}


#: The gentlest recipe: the fallback when the default one misses the budget.
INT8_ONLY = [{"name": "quantize"}]


def held_out(data: Dataset | None, eval_data: Dataset | None) -> tuple:
    """(training data, evaluation data, how it was chosen): with no --eval-data, 20% of
    --data is held out, so no decision or figure rests on the samples trained on."""
    if eval_data is not None or data is None:
        return data, eval_data, "--eval-data" if eval_data is not None else "random inputs"
    train, held = data.evaluation_split()
    if held is None:
        return data, None, f"the {len(data)} --data samples themselves (too few to hold out)"
    return train, held, f"{len(held)} samples held out of --data ({EVALUATION_SHARE:.0%})"


def fall_back_to_int8(
    model: onnx.ModelProto, result: CompressResult, max_drop: float, min_sqnr: float,
    **run_options: Any,
) -> tuple[CompressResult, str | None]:  # fmt: skip
    """The default recipe's result, or INT8 alone when only that holds the budget (and a
    note saying so); a result over budget either way stays (the caller exits 3)."""
    if within_budget(result.comparison, max_drop, min_sqnr):
        return result, None
    fallback = compress(model, INT8_ONLY, **run_options)
    if not within_budget(fallback.comparison, max_drop, min_sqnr):
        return result, None
    drop, how = accuracy_drop(result.comparison)
    missed = f"{how} {drop:.4f}" if drop is not None else "an output under the SQNR floor"
    return (
        fallback,
        f"the default recipe missed the budget ({missed}); kept INT8 alone, which holds it",
    )


#: Fine-tune learning rate when the residual width was pruned (measured above).
PRUNE_NORMS_LR = 2e-3


def default_recipe(
    keep_macs: float | None, distill_epochs: int = 30, downsample: int = 1,
    prune_norms: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """prune -> decompose (only where measured faster) -> distill (if torch) -> quantize.

    `keep_macs` counts the resolution change too. A resolution change is its own stage,
    distilled before any channel is pruned, so every candidate at that resolution reuses
    the first stage from the checkpoints and pays for one distillation. On digits at half
    resolution with half the channels: 99.26% staged (30 + 30 epochs), 98.52% in one step
    with 30 epochs, 99.26% in one step with 60 (teacher 99.44%): the stage costs nothing
    in accuracy and is cheaper across a search. Without torch there is no fine-tune to
    recover what pruning costs, so nothing is pruned. The channels LayerNorms normalise
    (a transformer's residual width) are kept unless `prune_norms`: on the ViT sample at
    0.20 of the MACs, 30 KD epochs recovered to +0.19 points with them kept and -1.30 with
    them pruned; at 0.08 with them pruned, 150 epochs gave 2.98x at -0.19 points with lr
    2e-3 and 3.01x at -1.30 with 1e-3, so those recipes train at PRUNE_NORMS_LR.
    """
    if not _can_distill():
        return [DECOMPOSE, {"name": "quantize"}]
    lr = PRUNE_NORMS_LR if prune_norms else 1e-3
    distill = {"name": "distill", "epochs": distill_epochs, "lr": lr, "augment_shift": 2,
               "patience": distill_epochs}  # fmt: skip
    recipe: list[dict[str, Any]] = []
    channels = 1.0 if keep_macs is None else keep_macs
    if downsample > 1:
        recipe += [{"name": "prune", "ratio": 0.0, "downsample": downsample}, dict(distill)]
        channels *= downsample**2
    if channels < 1:
        step = {"name": "prune", "target_macs": channels, "global_ranking": True}
        recipe.append({**step, "prune_norms": True} if prune_norms else step)
    recipe.append(DECOMPOSE)
    if channels < 1:
        recipe.append(distill)
    return [*recipe, {"name": "quantize"}]


@dataclass
class Structure:
    """A compression strength, and the speed-up its untuned build measured."""

    keep_macs: float
    downsample: int = 1
    predicted: float = 0.0
    macs: int = 0
    prune_norms: bool = False  # the residual width of transformer blocks pruned too
    epochs_factor: int = 1  # times --distill-epochs its fine-tune runs

    @property
    def label(self) -> str:
        channels = "no pruning" if self.keep_macs >= 1 else f"MACs x{self.keep_macs:.2f}"
        if self.prune_norms:
            channels += ", residual width pruned"
        return channels if self.downsample == 1 else f"1/{self.downsample} res, {channels}"

    def recipe(self, distill_epochs: int) -> list[dict[str, Any]]:
        epochs = distill_epochs * self.epochs_factor
        return default_recipe(self.keep_macs, epochs, self.downsample, self.prune_norms)

    def as_dict(self) -> dict:
        return {"label": self.label, "keep_macs": round(self.keep_macs, 4),
                "downsample": self.downsample, "macs": self.macs,
                "prune_norms": self.prune_norms,
                "predicted_speedup": round(self.predicted, 3)}  # fmt: skip


@dataclass
class Candidate:
    """One fine-tuned trial: its measured speed-up and quality."""

    structure: Structure
    speedup: float
    quality: float
    drop: float
    within_budget: bool
    result: CompressResult = field(repr=False)
    reaches_target: bool = False  # not measurably below the target speed-up

    @property
    def interval(self) -> tuple[float, float] | None:
        latency = self.result.comparison.latency
        return latency.latencies[-1].interval if latency else None

    @property
    def label(self) -> str:
        return self.structure.label

    @property
    def keep_macs(self) -> float:
        return self.structure.keep_macs

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "keep_macs": self.keep_macs,
            "downsample": self.structure.downsample,
            "predicted_speedup": round(self.structure.predicted, 3),
            "speedup": round(self.speedup, 3),
            **({"speedup_interval": [round(v, 3) for v in self.interval]} if self.interval else {}),
            "reaches_target": self.reaches_target,
            "quality": round(self.quality, 4),
            "drop": round(self.drop, 4),
            "within_budget": self.within_budget,
        }


@dataclass
class SearchResult:
    structures: list[Structure]
    candidates: list[Candidate]
    chosen: Candidate
    met: bool  # the chosen candidate is within the accuracy budget
    target_speedup: float
    max_drop: float

    def as_dict(self) -> dict:
        return {
            "target_speedup": self.target_speedup,
            "max_drop": self.max_drop,
            "met_budget": self.met,
            "reached_target": self.chosen.reaches_target,
            "chosen": self.chosen.label,
            "structures": [s.as_dict() for s in self.structures],
            "candidates": [c.as_dict() for c in self.candidates],
        }


def search(
    model: onnx.ModelProto,
    data: Dataset,
    eval_data: Dataset | None,
    *,
    target_speedup: float,
    max_drop: float,
    distill_epochs: int = 30,
    bench_runs: int = 50,
    bench_batch: int = 1,
    threads: int | None = None,
    work_dir: Path | None = None,
    strengths: tuple[float, ...] = STRENGTHS,
    downsample: tuple[int, ...] = DOWNSAMPLE,
    max_trials: int = MAX_TRIALS,
    label_output: str | None = None,
    min_sqnr: float = DEFAULT_MIN_SQNR,
    prune_norms: bool | None = None,
) -> SearchResult:
    """Time every structure untuned, then fine-tune the most promising ones; see the module
    docstring for the order. Returns the fastest trial within budget (else the closest).

    `prune_norms` None: a transformer's residual width is kept until no structure keeping
    it is left to try and none met the target within the budget; then structures pruning
    it are timed too, and fine-tuned PRUNE_NORMS_EPOCHS times longer. True or False:
    always, never.
    """
    checkpoints = Checkpoints(work_dir, model, data) if work_dir else None
    tunable = distill_blocker(model) is None
    grid = _grid(strengths, downsample, bool(prune_norms)) if tunable else [Structure(1.0)]
    run_options = {"eval_data": eval_data, "threads": threads, "bench_batch": bench_batch,
                   "checkpoints": checkpoints}  # fmt: skip
    structures = _time_structures(model, data, grid, bench_runs, **run_options)
    widen = prune_norms is None and tunable and _has_layer_norms(model)
    tried: list[Candidate] = []

    def attempt(structure: Structure) -> Candidate:
        result = compress(
            model, structure.recipe(distill_epochs), data=data, bench_runs=bench_runs,
            label_output=label_output, speedup_bar=target_speedup, **run_options,
        )  # fmt: skip
        drop, _ = accuracy_drop(result.comparison)
        drop = 0.0 if drop is None else drop
        base = result.comparison.accuracy_before or 1.0
        timed = result.comparison.latency.latencies[-1]
        ok = within_budget(result.comparison, max_drop, min_sqnr)
        candidate = Candidate(structure, timed.speedup, base - drop, drop, ok, result,
                              timed.reaches(target_speedup))  # fmt: skip
        tried.append(candidate)
        verdict = "within budget" if ok else "misses the budget"
        report("search", f"trial {len(tried)} {structure.label}: {timed.describe()} "
               f"({timed.reading(target_speedup)}), drop {drop:.2%}, {verdict}",
               trial=len(tried), structure=structure.label, speedup=timed.speedup,
               speedup_interval=timed.interval, drop=drop, within_budget=ok)  # fmt: skip
        return candidate

    baseline = next((s for s in structures if s.keep_macs >= 1 and s.downsample == 1), None)
    if baseline is not None:
        attempt(baseline)
    others = [s for s in structures if s is not baseline]
    for _ in range(max_trials):
        if any(c.within_budget and c.reaches_target for c in tried):
            break
        following = _next_trial(others, tried, target_speedup)
        if following is None and widen:
            widen = False
            report("search", "no structure keeping the residual width reaches the target "
                   f"within the budget: timing structures that prune it too (lossy, "
                   f"fine-tuned {PRUNE_NORMS_EPOCHS}x longer)")  # fmt: skip
            timed = {(s.downsample, s.macs) for s in structures}
            wider = [
                s for s in _time_structures(model, data, _wider(strengths, downsample),
                                            bench_runs, **run_options)
                if (s.downsample, s.macs) not in timed
            ]  # fmt: skip
            structures += wider
            others += wider
            following = _next_trial(others, tried, target_speedup)
        if following is None:
            break
        attempt(following)
    within = [c for c in tried if c.within_budget]
    chosen = max(within, key=lambda c: c.speedup) if within else min(tried, key=lambda c: c.drop)
    return SearchResult(structures, tried, chosen, bool(within), target_speedup, max_drop)


def _has_layer_norms(model: onnx.ModelProto) -> bool:
    return any(node.op_type == "LayerNormalization" for node in model.graph.node)


def _wider(strengths: tuple[float, ...], downsample: tuple[int, ...]) -> list[Structure]:
    """The grid's channel-pruning structures with the residual width pruned too, fine-tuned
    PRUNE_NORMS_EPOCHS times longer."""
    grid = _grid(strengths, downsample, True, PRUNE_NORMS_EPOCHS)
    return [s for s in grid if s.keep_macs * s.downsample**2 < 1]


def _can_distill() -> bool:
    """Pruned structures are only worth timing when they can be fine-tuned (torch)."""
    return importlib.util.find_spec("torch") is not None


def distill_blocker(model: onnx.ModelProto) -> str | None:
    """Why `model` cannot be fine-tuned here (no torch, or an op the torch executor has no
    rule for), or None. Without a fine-tune nothing is pruned: the recipe says so."""
    if not _can_distill():
        return "torch is not installed (pip install 'onnxslim-kd[distill]')"
    from onnxslim_kd.distill.executor import check_supported

    try:
        check_supported(model)
    except InputError as exc:
        return str(exc).removeprefix("distill: ")
    return None


def _grid(
    strengths: tuple[float, ...], downsample: tuple[int, ...], prune_norms: bool,
    epochs_factor: int = 1,
) -> list[Structure]:  # fmt: skip
    """Every (MACs fraction, resolution factor); a factor F starts from its own 1/F^2."""
    return [
        Structure(keep / factor**2, factor, prune_norms=prune_norms, epochs_factor=epochs_factor)
        for factor in downsample
        for keep in strengths
    ]


def _time_structures(
    model: onnx.ModelProto,
    data: Dataset,
    structures: list[Structure],
    bench_runs: int,
    *,
    eval_data: Dataset | None,
    threads: int | None,
    bench_batch: int,
    checkpoints: Checkpoints | None,
) -> list[Structure]:
    """Build each structure without fine-tuning and time them all interleaved in one run.

    A resolution factor that does not apply to the model (see prune/spatial.py), and a
    structure no smaller than a gentler one (pruning caps), are dropped.
    """
    verify = (eval_data or data).subset(VERIFY_SAMPLES)
    built: list[tuple[Structure, onnx.ModelProto]] = []
    seen: set[tuple[int, int]] = set()
    for structure in progress(structures, "structures", total=len(structures)):
        recipe = [step for step in structure.recipe(0) if step["name"] != "distill"]
        with muted():
            result = compress(model, recipe, data=data, eval_data=verify, threads=threads,
                              bench_runs=0, checkpoints=checkpoints)  # fmt: skip
        spatial = result.passes[0]["summary"].get("spatial") or {}
        structure.macs = result.passes[-2]["macs_after"]  # before quantize
        if spatial.get("skipped") or (structure.downsample, structure.macs) in seen:
            continue
        seen.add((structure.downsample, structure.macs))
        built.append((structure, result.model))
    feeds = bench_feeds(model, eval_data or data, {}, bench_batch)
    timed = [("original", model, feeds)] + [(s.label, m, feeds) for s, m in built]
    latencies = bench(timed, threads=threads, runs=max(bench_runs, 10)).latencies
    for (structure, _), latency in zip(built, latencies[1:], strict=True):
        structure.predicted = latency.speedup
        report("search", f"structure {structure.label}: untuned {latency.speedup:.2f}x",
               structure=structure.label, predicted_speedup=latency.speedup)  # fmt: skip
    return [structure for structure, _ in built]


def _next_trial(
    structures: list[Structure], tried: list[Candidate], target: float
) -> Structure | None:
    """The gentlest untried structure predicted to meet the target, else the fastest one.

    Only structures between what the trials so far bracket qualify: keeping more MACs than
    every trial that missed the budget, and fewer than every trial that kept the budget
    but measured slower than the target (untuned timings are noisy predictions).
    """
    over = [c.keep_macs for c in tried if not c.within_budget]
    slow = [c.keep_macs for c in tried if c.within_budget and not c.reaches_target]
    done = {id(c.structure) for c in tried}
    eligible = [
        s for s in structures
        if id(s) not in done and all(s.keep_macs > k for k in over)
        and all(s.keep_macs < k for k in slow)
    ]  # fmt: skip
    meeting = [s for s in eligible if s.predicted >= target]
    if meeting:
        return max(meeting, key=lambda s: (s.keep_macs, s.predicted))
    return max(eligible, key=lambda s: s.predicted, default=None)
