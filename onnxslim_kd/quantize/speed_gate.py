"""Never slower than FP32 by default: which INT8 scheme is fastest, and whether it is
measurably faster than the FP32 model at all.

The schemes are timed against FP32 interleaved; the fastest one within the budget is
then timed against FP32 alone, in more rounds while its 95% speed-up interval is not
decided (bench.latency.bench_against). INT8 is kept only when the whole interval
is above 1.0 by more than two sessions of one model differ (SESSION_MARGIN): a point
estimate of 1.02x on 30 rounds kept INT8 on one run and returned FP32 on the next for
the same graph (benchmarks/quantize/peers.json of 2026-12-03, detector_trained), and a
user's CI needs the same answer every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxslim_kd.bench import latency
from onnxslim_kd.defaults import SESSION_MARGIN


@dataclass
class SpeedVerdict:
    """The scheme chosen, every scheme's speed-up in the first timing, and the chosen
    one's timing against FP32 with its verdict (faster, slower or tie: at 95%, beyond
    SESSION_MARGIN)."""

    chosen: str
    speedups: dict[str, float]
    timing: dict
    verdict: str


def describe_timing(timing: dict) -> str:
    """'1.02x, per-round speed-up 0.98-1.05x at 95% over 240 interleaved rounds' of a
    pair's timing record (BenchResult.as_dict of FP32 and one INT8 model)."""
    candidate = timing["models"][1]
    interval = tuple(candidate["speedup_interval"])
    return latency.speedup_text(candidate["speedup"], interval, timing["runs"])


def time_schemes(
    model: onnx.ModelProto, schemes: dict[str, onnx.ModelProto], eligible: list[str],
    feeds: dict[str, np.ndarray], *, threads: int | None, runs: int,
) -> SpeedVerdict:  # fmt: skip
    """The fastest of the `eligible` schemes (by ratio of medians when there are several)
    and its verdict against `model`, timed until decided or MAX_ROUNDS_FACTOR * `runs`."""
    if len(schemes) > 1:
        first = latency.bench(
            [("fp32", model, feeds), *((name, q, feeds) for name, q in schemes.items())],
            threads=threads, runs=runs,
        )  # fmt: skip
        speedups = {lat.label: lat.speedup for lat in first.latencies[1:]}
        chosen = max(eligible, key=speedups.__getitem__)
    else:
        chosen, speedups = eligible[0], {}
    pair = latency.bench_against(
        [("fp32", model, feeds), (chosen, schemes[chosen], feeds)],
        threads=threads, runs=runs, bar=1.0,
    )  # fmt: skip
    speedups = speedups or {chosen: pair.latencies[1].speedup}
    verdict = pair.latencies[1].verdict(SESSION_MARGIN)
    return SpeedVerdict(chosen, speedups, pair.as_dict(), verdict)


def gate_warning(verdict: SpeedVerdict, force_int8: bool) -> str | None:
    """What the user is told when INT8 is not measurably faster; None when it is."""
    if verdict.verdict == "faster":
        return None
    how = "slower than" if verdict.verdict == "slower" else "not measurably faster than"
    measured = f"INT8 is {how} FP32 on this CPU ({describe_timing(verdict.timing)})"
    if force_int8:
        return f"{measured}; kept because of --force-int8"
    return f"{measured}: wrote the FP32 model (--force-int8 keeps INT8)"
