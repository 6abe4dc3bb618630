"""Check a dataset against the model before anything runs, with one clear message."""

from __future__ import annotations

import numpy as np

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import TensorSpec


def validate_dataset(data: Dataset, inputs: list[TensorSpec]) -> None:
    """Raise InputError naming the input, what was expected and what was found."""
    where = data.source
    for spec in inputs:  # rank first: a sample axis only exists in an array of the right rank
        _check_rank(where, spec, data.inputs[spec.name], data.axis(spec.name))
    counts = {
        name: array.shape[data.axis(name)]
        for name, array in data.inputs.items()
        if data.axis(name) is not None
    }
    if not counts or min(counts.values()) == 0:
        raise InputError(f"{where}: the data set is empty")
    if len(set(counts.values())) > 1:
        raise InputError(f"{where}: inputs have different sample counts {counts}")
    for spec in inputs:
        _check_input(where, spec, data.inputs[spec.name], data.axis(spec.name))
    if data.labels is not None:
        _check_labels(where, data.labels, len(data))


def _check_rank(where: str, spec: TensorSpec, array: np.ndarray, batch_axis: int | None) -> None:
    if array.ndim != len(spec.dims):
        samples = "not per sample" if batch_axis is None else f"samples on axis {batch_axis}"
        raise InputError(
            f"{where}: input '{spec.name}' has rank {array.ndim}, expected {spec.dtype} "
            f"{spec.dims_text()} (rank {len(spec.dims)}, {samples}); "
            f"found {array.dtype} {list(array.shape)}"
        )


def _check_input(where: str, spec: TensorSpec, array: np.ndarray, batch_axis: int | None) -> None:
    found = f"found {array.dtype} {list(array.shape)}"
    expected = f"expected {spec.dtype} {spec.dims_text()}"
    for axis, dim in enumerate(spec.dims):
        if axis == batch_axis:
            continue
        if isinstance(dim, int) and array.shape[axis] != dim:
            raise InputError(
                f"{where}: input '{spec.name}' axis {axis} is {array.shape[axis]}, "
                f"{expected}; {found}"
            )
    if array.dtype != spec.dtype:
        raise InputError(
            f"{where}: input '{spec.name}' has dtype {array.dtype}, {expected} "
            f"(convert with .astype(np.{spec.dtype}))"
        )
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            raise InputError(
                f"{where}: input '{spec.name}' has {int(bad.sum())} NaN/Inf values "
                f"(first in sample {sample})"
            )


def _check_labels(where: str, labels: np.ndarray, count: int) -> None:
    if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"{where}: 'labels' must be integer class ids [N], or label sequences [N, L] "
            f"padded with -1, found {labels.dtype} {list(labels.shape)}"
        )
    if len(labels) != count:
        raise InputError(f"{where}: {len(labels)} labels for {count} samples")
