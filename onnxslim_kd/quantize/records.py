"""Numbers the quantize helpers (bias correction, SmoothQuant, equalization) record the
same way, so their JSON and table lines read alike."""

from __future__ import annotations

import numpy as np


def range_ratio(ranges: np.ndarray) -> float:
    """Largest over median per-channel range: how far a few outlier channels stretch one
    per-tensor scale (1.0: even)."""
    return float(ranges.max() / max(np.median(ranges), 1e-12))


def rounded(value: float | None, digits: int = 3) -> float | None:
    """`value` rounded for the report, None kept (nothing was measured)."""
    return None if value is None else round(float(value), digits)


def significant(value: float | None, digits: int = 3) -> float | None:
    """`value` to `digits` significant figures, for errors that span decades; None kept."""
    return None if value is None else float(f"{float(value):.{digits}g}")
