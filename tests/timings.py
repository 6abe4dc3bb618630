"""Fake onnxruntime timings for the speed gate: every round of a label at a set speed-up
over FP32, with a +-jitter that gives the paired ratios a spread (so an interval)."""

from __future__ import annotations

from collections.abc import Callable

from onnxslim_kd.bench.latency import BenchResult, Latency, compare_to_first


def fake_bench(
    speedups: dict[str, float], jitter: float = 0.01, others: float = 1.0
) -> Callable[..., BenchResult]:
    """A `bench` where each label of `speedups` runs that much faster than FP32 (`others`
    for labels not in it); rounds alternate at 1 + jitter and 1 - jitter of that (an odd
    last round at exactly that), so the median is the speed-up asked for."""

    def fake(models, *, threads=None, runs=30, warmup=10) -> BenchResult:
        swing = [1 + jitter * (-1) ** i for i in range(runs - runs % 2)] + [1.0] * (runs % 2)
        latencies = [Latency("fp32", 1, [1.0] * runs)] + [
            Latency(label, 1, [s / speedups.get(label, others) for s in swing])
            for label, _, _ in models[1:]
        ]
        return BenchResult(compare_to_first(latencies), {}, runs, warmup)

    return fake
