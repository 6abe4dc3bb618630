"""onnxruntime latency, several models measured interleaved (A B A B ...) in one run.

Interleaving spreads the noise of a shared machine evenly over the models, so the
ratio of medians is trustworthy even when absolute numbers drift. Sessions run with
intra-op spinning off so one session's idle threads do not slow the next one down.

Each model after the first also gets a 95% interval of its speed-up: the per-round ratio
(first model's time over its own, in the same round) has a median, and the order
statistics around it bound that median without assuming a distribution (the sign test's
interval). A decision such as "INT8 is faster" is taken on the interval, not on the point:
at 1.02x on 30 rounds the same two models land on either side of 1.0 from run to run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from onnxslim_kd.defaults import MAX_ROUNDS_FACTOR, SESSION_MARGIN
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.progress import progress
from onnxslim_kd.report.environment import environment


@dataclass
class Latency:
    """Timings of one model; `speedup` is the first model's median over this one's."""

    label: str
    batch: int
    times_ms: list[float] = field(repr=False)
    speedup: float = 1.0
    #: 95% interval of the median per-round speed-up against the first model (None for it)
    interval: tuple[float, float] | None = None

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q))

    @property
    def median_ms(self) -> float:
        return self.percentile(50)

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch * 1000.0 / self.median_ms

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "batch": self.batch,
            "p50_ms": round(self.median_ms, 4),
            "p90_ms": round(self.percentile(90), 4),
            "p99_ms": round(self.percentile(99), 4),
            "mean_ms": round(float(np.mean(self.times_ms)), 4),
            "throughput_per_s": round(self.throughput, 2),
            "speedup": round(self.speedup, 3),
            **({"speedup_interval": [round(v, 3) for v in self.interval]} if self.interval else {}),
            "runs": len(self.times_ms),
        }

    def verdict(self, margin: float = 0.0, bar: float = 1.0) -> str:
        """faster, slower or tie against `bar` times the first model's speed: faster when
        the whole 95% interval is above bar * (1 + `margin`), slower when it is below
        bar * (1 - `margin`) (tie also for the first model)."""
        if self.interval is None:
            return "tie"
        if self.interval[0] > bar * (1.0 + margin):
            return "faster"
        return "slower" if self.interval[1] < bar * (1.0 - margin) else "tie"

    def reaches(self, bar: float) -> bool:
        """Not measurably below `bar`: the interval is not under it by more than two
        sessions of one model differ (SESSION_MARGIN). The rule of check --min-speedup and
        of compress's target, so a pair at the bar gets the same answer every run."""
        return self.verdict(SESSION_MARGIN, bar) != "slower"

    def reading(self, bar: float) -> str:
        """'above 2x', 'below 2x' or 'not measurably below 2x', by the same rule."""
        where = {"faster": "above", "slower": "below"}.get(self.verdict(SESSION_MARGIN, bar))
        return f"{where or 'not measurably below'} {bar:g}x"

    def describe(self) -> str:
        """'1.02x, per-round speed-up 0.98-1.05x at 95% over 240 interleaved rounds'."""
        return speedup_text(self.speedup, self.interval, len(self.times_ms))


def speedup_text(speedup: float, interval: tuple[float, float] | None, rounds: int) -> str:
    """The ratio of medians, then the interval of the per-round ratios' median, which need
    not center on it."""
    low, high = interval if interval else (speedup, speedup)
    return (
        f"{speedup:.2f}x, per-round speed-up {low:.2f}-{high:.2f}x at 95% over "
        f"{rounds} interleaved rounds"
    )


@dataclass
class BenchResult:
    """Latencies of all models plus the environment they were measured in."""

    latencies: list[Latency]
    environment: dict
    runs: int
    warmup: int

    def extended(self, more: BenchResult) -> BenchResult:
        """These rounds and `more`'s (the same models, in the same order) as one result."""
        times = [
            a.times_ms + b.times_ms for a, b in zip(self.latencies, more.latencies, strict=True)
        ]
        latencies = compare_to_first(
            [replace(lat, times_ms=t) for lat, t in zip(self.latencies, times, strict=True)]
        )
        return replace(self, latencies=latencies, runs=self.runs + more.runs)

    def as_dict(self) -> dict:
        return {
            "environment": self.environment,
            "runs": self.runs,
            "warmup": self.warmup,
            "interleaved": len(self.latencies) > 1,
            "models": [lat.as_dict() for lat in self.latencies],
        }


def bench(
    models: list[tuple[str, onnx.ModelProto, dict[str, np.ndarray]]],
    *,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    rotate: bool = True,
) -> BenchResult:
    """Time each (label, model, feeds) `runs` times, interleaved, after `warmup` rounds.

    With `rotate`, each round starts one model later than the one before (A B C, B C A,
    C A B, ...), so every model runs in every position equally often. In a fixed order a
    model's position biased its time: an identical copy of the FP32 model read 1.03-1.10x
    against itself from a later position of an 8-model round (benchmarks/quantize/
    peers.json of 2026-12-03); benchmarks/bench/position.py measures both orders."""
    sessions = [make_session(model, threads=threads, spinning=False) for _, model, _ in models]
    feeds = [f for _, _, f in models]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(warmup):
        for session, feed in zip(sessions, feeds, strict=True):
            session.run(None, feed)
    for round_ in progress(range(runs), "bench", total=runs):
        for index in _rotated(len(models), round_ if rotate else 0):
            start = time.perf_counter()
            sessions[index].run(None, feeds[index])
            times[index].append((time.perf_counter() - start) * 1000.0)
    latencies = [
        Latency(label, len(next(iter(feed.values()))), t)
        for (label, _, feed), t in zip(models, times, strict=True)
    ]
    env = {**environment(threads), "intra_op_spinning": False}
    env["order"] = "rotated" if rotate else "fixed"
    return BenchResult(compare_to_first(latencies), env, runs, warmup)


def _rotated(count: int, round_: int) -> list[int]:
    """Model indices in round `round_`'s order: 0..count-1 started at round_ % count."""
    start = round_ % count
    return [*range(start, count), *range(start)]


def bench_until_decided(
    models: list[tuple[str, onnx.ModelProto, dict[str, np.ndarray]]],
    *,
    threads: int | None = None,
    runs: int = 30,
    max_runs: int = 240,
    margin: float = 0.0,
    bar: float = 1.0,
) -> BenchResult:
    """Time a reference, then models up to a candidate (the last), interleaved, `runs`
    rounds at a time, until the candidate's speed-up interval leaves `bar` * (1 +- `margin`)
    or `max_runs` rounds are in: a tie that more rounds cannot split is reported as a tie,
    not as the side the noise fell on."""
    result = bench(models, threads=threads, runs=runs)
    while result.latencies[-1].verdict(margin, bar) == "tie" and result.runs < max_runs:
        more = min(runs, max_runs - result.runs)
        result = result.extended(bench(models, threads=threads, runs=more))
    return result


def bench_against(
    models: list[tuple[str, onnx.ModelProto, dict[str, np.ndarray]]],
    *,
    threads: int | None = None,
    runs: int = 100,
    bar: float | None = None,
) -> BenchResult:
    """`bench`; with a `bar` (the speed-up asked of the last model), `runs` more rounds at
    a time while its interval holds the bar within SESSION_MARGIN, up to
    MAX_ROUNDS_FACTOR * `runs` rounds."""
    if bar is None:
        return bench(models, threads=threads, runs=runs)
    return bench_until_decided(
        models, threads=threads, runs=runs, max_runs=runs * MAX_ROUNDS_FACTOR,
        margin=SESSION_MARGIN, bar=bar,
    )  # fmt: skip


def median_interval(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free interval of the median of `values` (order statistics of the sign
    test; z = 1.96 for 95%)."""
    ordered, count = sorted(values), len(values)
    spread = z * math.sqrt(count) / 2
    low = max(0, math.floor(count / 2 - spread) - 1)  # 1-based order statistic to index
    high = min(count - 1, math.ceil(count / 2 + spread) - 1)
    return ordered[low], ordered[high]


def compare_to_first(latencies: list[Latency]) -> list[Latency]:
    """`latencies` with each one's speed-up against the first: the ratio of medians, and
    the interval of the per-round ratios' median."""
    first = latencies[0]
    for index, lat in enumerate(latencies):
        lat.speedup = first.median_ms / lat.median_ms
        if index:
            ratios = [a / b for a, b in zip(first.times_ms, lat.times_ms, strict=True)]
            lat.interval = median_interval(ratios)
    return latencies
