"""How closely a candidate model's outputs follow a reference's."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class OutputFidelity:
    """Per-output agreement; `top1_agreement` only for [N, classes] outputs."""

    max_abs_diff: float
    max_rel_diff: float
    cosine: float
    sqnr_db: float
    top1_agreement: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def class_axis(rank: int) -> int | None:
    """Class axis by layout: [N, C] -> 1, [N, T, C] sequences -> 2, [N, C, H, W] maps -> 1."""
    return {2: 1, 3: 2, 4: 1}.get(rank)


def output_fidelity(
    reference: np.ndarray,
    candidate: np.ndarray,
    class_like: bool | None = None,
    axis: int | None = None,
) -> OutputFidelity:
    """Compare two arrays of the same shape; relative diff is against max |reference|.

    `class_like` (see report.outputs) adds arg-max agreement along the class `axis` (by
    default the layout's, see class_axis); None keeps the plain rule: only [N, C>1]
    outputs get it.
    """
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    diff = np.abs(ref - cand)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    noise = float(np.sum((ref - cand) ** 2))
    signal = float(np.sum(ref**2))
    norms = float(np.linalg.norm(ref) * np.linalg.norm(cand))
    if class_like is None:
        class_like = reference.ndim == 2 and reference.shape[1] > 1
    return OutputFidelity(
        max_abs_diff=max_abs,
        max_rel_diff=max_abs / scale if scale else max_abs,
        cosine=float(ref @ cand / norms) if norms else float(max_abs == 0.0),
        sqnr_db=float(10 * np.log10(signal / noise)) if noise else float("inf"),
        top1_agreement=top1_agreement(reference, candidate, axis) if class_like else None,
    )


def top1_agreement(
    reference: np.ndarray, candidate: np.ndarray, axis: int | None = None
) -> float | None:
    """Fraction of positions whose arg-max class (along `axis`, by default the layout's)
    matches: per sample for [N, C], per time step for [N, T, C], per pixel for
    [N, C, H, W]; None for other layouts."""
    axis = class_axis(reference.ndim) if axis is None else axis
    if axis is None or reference.shape[axis] < 2:
        return None
    agreement = float(np.mean(reference.argmax(axis) == candidate.argmax(axis)))
    if not 0.0 <= agreement <= 1.0:  # a fraction by construction: anything else is a bug
        raise AssertionError(f"top-1 agreement {agreement} outside [0, 1]")
    return agreement


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """Top-1 accuracy of [N, C] scores against integer labels."""
    if logits.ndim != 2 or len(logits) != len(labels):
        return None
    return float(np.mean(logits.argmax(1) == labels))
