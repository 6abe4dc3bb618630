"""Empirical variational Bayes matrix factorisation (Nakajima et al. 2013), rank only.

Kim et al. 2016 choose Tucker-2 ranks with it. Public ports are fragile: the noise
variance search can land on the bounds and return rank 0 (flat spectra, random weights)
or every component; here the noise estimate is floored, degenerate inputs (zero, one
row) are handled and the rank is at least 1. Only singular values are needed.
"""

from __future__ import annotations

import math

import numpy as np

#: The noise variance is never below this fraction of the mean squared entry.
NOISE_FLOOR = 1e-4
#: Log-spaced candidates for the noise variance between its analytic bounds.
GRID_POINTS = 256


def vbmf_rank(sigma: np.ndarray, shape: tuple[int, int]) -> int:
    """The EVBMF rank of an `shape` matrix with singular values `sigma` (descending)."""
    small, large = sorted(shape)
    s = np.asarray(sigma, dtype=np.float64)[:small]
    mean_square = float(np.sum(s**2)) / (small * large)
    if small < 2 or mean_square <= 0.0:
        return 1
    alpha = small / large
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    tail = min(max(math.ceil(small / (1 + alpha)) - 1, 1), small - 1)
    lower = max(s[tail] ** 2 / (large * x_bar), float(np.mean(s[tail:] ** 2)) / large)
    upper = mean_square
    floor = NOISE_FLOOR * mean_square
    lower = max(lower, floor)
    if lower >= upper:
        noise = upper
    else:
        grid = np.geomspace(lower, upper, GRID_POINTS)
        noise = float(grid[np.argmin([_objective(v, small, large, s, x_bar) for v in grid])])
    threshold = math.sqrt(large * noise * x_bar)
    return max(int(np.sum(s > threshold)), 1)


def _objective(noise: float, small: int, large: int, s: np.ndarray, x_bar: float) -> float:
    """The EVB free energy as a function of the noise variance (all components kept)."""
    alpha = small / large
    x = s**2 / (large * noise)
    above, below = x[x > x_bar], x[x <= x_bar]
    tau = 0.5 * (above - (1 + alpha) + np.sqrt((above - (1 + alpha)) ** 2 - 4 * alpha))
    return float(
        np.sum(below - np.log(np.maximum(below, 1e-300)))  # zero values: a constant
        + np.sum(above - tau)
        + np.sum(np.log((tau + 1) / above))
        + alpha * np.sum(np.log(tau / alpha + 1))
    )
