"""onnxruntime latency, several models measured interleaved (A B A B ...) in one run.

Interleaving spreads the noise of a shared machine evenly over the models, so the
ratio of medians is trustworthy even when absolute numbers drift. Sessions run with
intra-op spinning off so one session's idle threads do not slow the next one down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import onnx

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
            "runs": len(self.times_ms),
        }


@dataclass
class BenchResult:
    """Latencies of all models plus the environment they were measured in."""

    latencies: list[Latency]
    environment: dict
    runs: int
    warmup: int

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
) -> BenchResult:
    """Time each (label, model, feeds) `runs` times, interleaved, after `warmup` rounds."""
    sessions = [make_session(model, threads=threads, spinning=False) for _, model, _ in models]
    feeds = [f for _, _, f in models]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(warmup):
        for session, feed in zip(sessions, feeds, strict=True):
            session.run(None, feed)
    for _ in progress(range(runs), "bench", total=runs):
        for index, (session, feed) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter()
            session.run(None, feed)
            times[index].append((time.perf_counter() - start) * 1000.0)
    latencies = [
        Latency(label, len(next(iter(feed.values()))), t)
        for (label, _, feed), t in zip(models, times, strict=True)
    ]
    for lat in latencies:
        lat.speedup = latencies[0].median_ms / lat.median_ms
    env = {**environment(threads), "intra_op_spinning": False}
    return BenchResult(latencies, env, runs, warmup)
