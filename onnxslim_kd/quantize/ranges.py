"""Activation ranges by least quantization error: per tensor, the [low, high] whose uint8
grid reproduces the calibrated values with the smallest mean squared error.

MinMax spends the grid on rare outliers (a LayerNorm output with a few large channels
leaves most values on a handful of levels); percentile clips a fixed share whatever the
tensor; entropy matches distributions, not values. Here each tensor's histogram decides:
candidate bounds at quantiles of its values, the error of each pair estimated from the
histogram (rounding noise step²/12 inside, the clipping distance outside), the least
kept. onnxruntime collects the histograms (its percentile calibrator, asymmetric).
"""

from __future__ import annotations

import numpy as np

#: Levels of the 8-bit activation grid.
LEVELS = 255
#: Share of values each candidate bound may clip, from each end (0 keeps the extreme).
CLIP_SHARES = (0.0, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def mse_range(hist: np.ndarray, edges: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The candidate (low, high) with the least estimated squared error, 0 included (a
    quantized activation has an exact zero); `low`/`high` are the tensor's extremes."""
    counts = hist.astype(np.float64)
    total = counts.sum()
    if total <= 0 or high <= low:
        return float(min(low, 0.0)), float(max(high, 0.0))
    centers = np.clip((edges[:-1] + edges[1:]) / 2, low, high)
    cumulative = np.cumsum(counts) / total
    lows = sorted(
        {min(_quantile(edges, cumulative, share, low, high), 0.0) for share in CLIP_SHARES}
    )
    highs = sorted({max(_quantile(edges, cumulative, 1 - share, low, high), 0.0)
                    for share in CLIP_SHARES})  # fmt: skip
    best, best_error = (min(low, 0.0), max(high, 0.0)), np.inf
    for lo in sorted(lows):
        for hi in sorted(highs):
            if hi <= lo:
                continue
            step = (hi - lo) / LEVELS
            clipped = np.clip(centers, lo, hi)
            inside = (centers >= lo) & (centers <= hi)
            error = counts @ np.where(inside, step**2 / 12, (centers - clipped) ** 2)
            if error < best_error:
                best, best_error = (lo, hi), error
    return float(best[0]), float(best[1])


def _quantile(
    edges: np.ndarray, cumulative: np.ndarray, share: float, low: float, high: float
) -> float:
    """The value below which `share` of the histogram lies (bin edges), within the extremes."""
    if share <= 0.0:
        return low
    if share >= 1.0:
        return high
    index = int(np.searchsorted(cumulative, share))
    value = edges[index + 1] if share > 0.5 else edges[index]
    return float(np.clip(value, low, high))


def mse_ranges(histograms: dict[str, tuple]) -> dict[str, tuple[np.float32, np.float32]]:
    """Tensor name -> range, from onnxruntime's histogram collector
    ((hist, edges, min, max, threshold) per tensor)."""
    ranges = {}
    for name, (hist, edges, low, high, *_) in histograms.items():
        lo, hi = mse_range(np.asarray(hist), np.asarray(edges), float(low), float(high))
        ranges[name] = (np.float32(lo), np.float32(hi))
    return ranges
