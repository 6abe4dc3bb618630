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
    parts_sqnr_db: list[float] | None = None  # per concatenated part, see report.outputs

    def as_dict(self) -> dict:
        return asdict(self)


def concat_parts(array: np.ndarray, axis: int, sizes: list[int]) -> list[np.ndarray]:
    """The consecutive slices of `sizes` along `axis`: the parts a Concat joined."""
    return np.split(array, np.cumsum(sizes)[:-1], axis)


def parts_sqnr(
    reference: np.ndarray, candidate: np.ndarray, axis: int, sizes: list[int]
) -> list[float]:
    """SQNR (dB) of each part of a concatenated output, each judged on its own scale."""
    values = []
    parts = zip(concat_parts(reference, axis, sizes), concat_parts(candidate, axis, sizes),
                strict=True)  # fmt: skip
    for ref, cand in parts:
        ref = ref.astype(np.float64)
        noise = float(np.sum((ref - cand) ** 2))
        signal = float(np.sum(ref**2))
        values.append(float(10 * np.log10(signal / noise)) if noise else float("inf"))
    return values


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


def accuracy(scores: np.ndarray, labels: np.ndarray, axis: int | None = None) -> float | None:
    """Top-1 accuracy of [N, C] scores against integer class ids; against label sequences
    [N, L] (a text recogniser's), the character accuracy of its per-step scores (see
    text_accuracy). None when the scores do not fit the labels."""
    if labels.ndim == 2:
        return text_accuracy(scores, labels, axis)
    if scores.ndim != 2 or len(scores) != len(labels):
        return None
    return float(np.mean(scores.argmax(1) == labels))


#: The class a CTC recogniser emits between characters (torch's, PaddleOCR's convention).
CTC_BLANK = 0


def ctc_decode(scores: np.ndarray, samples: int, axis: int | None = None) -> list[list[int]] | None:
    """Greedy CTC decoding of per-step scores for `samples` samples: the best class per
    step, repeats merged, blanks dropped; one id list per sample. The class axis is `axis`
    (default last); the sample axis is the first other one of size `samples`, so [N, T, C]
    and [T, N, C] read alike. None for other ranks or when no axis holds the samples."""
    if scores.ndim != 3:
        return None
    axis = scores.ndim - 1 if axis is None else axis % scores.ndim
    others = [a for a in range(3) if a != axis]
    sample_axis = next((a for a in others if scores.shape[a] == samples), None)
    if sample_axis is None:
        return None
    time_axis = next(a for a in others if a != sample_axis)
    paths = scores.argmax(axis)  # the two remaining axes keep their order
    if sample_axis > time_axis:
        paths = paths.T
    decoded = []
    for path in paths:
        keep = (path != CTC_BLANK) & np.r_[True, path[1:] != path[:-1]]
        decoded.append(path[keep].tolist())
    return decoded


def text_accuracy(scores: np.ndarray, labels: np.ndarray, axis: int | None = None) -> float | None:
    """Mean of 1 - normalized edit distance between the greedy CTC reading of each sample
    and its label row (class ids, padded with negative values): 1.0 reads every line
    exactly; the OCR metric that degrades smoothly where exact match jumps."""
    decoded = ctc_decode(scores, len(labels), axis)
    if decoded is None:
        return None
    similarity = []
    for read, row in zip(decoded, labels, strict=True):
        truth = [int(c) for c in row if c >= 0]
        longest = max(len(read), len(truth), 1)
        similarity.append(1.0 - edit_distance(read, truth) / longest)
    return float(np.mean(similarity))


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]
