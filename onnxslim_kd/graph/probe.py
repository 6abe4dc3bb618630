"""Per-channel statistics of intermediate tensors, streamed batch by batch with onnxruntime.

The tensors become extra graph outputs of a copy of the model and each batch is folded
into running sums, so no activation is kept beyond one batch. Pruning reads activity and
magnitudes (APoZ, mean compensation), quantization means and ranges (bias correction,
SmoothQuant).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import clone


@dataclass
class ChannelStats:
    """Running per-position statistics along one tensor's channel axis."""

    count: int = 0
    total: np.ndarray | float = 0.0
    total_abs: np.ndarray | float = 0.0
    total_squares: np.ndarray | float = 0.0
    nonzero: np.ndarray | float = 0.0
    low: np.ndarray | float = np.inf
    high: np.ndarray | float = -np.inf

    def add(self, rows: np.ndarray) -> None:
        """Fold in a [channels, values] block."""
        self.count += rows.shape[1]
        self.total = self.total + rows.sum(axis=1, dtype=np.float64)
        self.total_abs = self.total_abs + np.abs(rows).sum(axis=1, dtype=np.float64)
        self.total_squares = self.total_squares + np.square(rows).sum(axis=1, dtype=np.float64)
        self.nonzero = self.nonzero + (rows != 0).sum(axis=1)
        self.low = np.minimum(self.low, rows.min(axis=1))
        self.high = np.maximum(self.high, rows.max(axis=1))

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.total_squares / self.count - self.mean**2, 0))

    @property
    def absmax(self) -> np.ndarray:
        return np.maximum(np.abs(self.low), np.abs(self.high)).astype(np.float64)


def probe_channels(
    model: onnx.ModelProto, axes: dict[str, int], batches: Iterable[dict[str, np.ndarray]]
) -> dict[str, ChannelStats]:
    """Run `model` with tensors `axes` (name -> channel axis) as outputs and stream their
    per-channel statistics."""
    stats = {name: ChannelStats() for name in axes}
    for values in probe_tensors(model, list(axes), batches):
        for name, value in values.items():
            axis = axes[name]
            stats[name].add(np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1))
    return stats


def probe_tensors(
    model: onnx.ModelProto, names: list[str], batches: Iterable[dict[str, np.ndarray]]
) -> Iterator[dict[str, np.ndarray]]:
    """The values of tensors `names` of `model`, one batch at a time (name -> value), so a
    caller folds each batch in and keeps none."""
    probe = clone(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = make_session(probe)
    for feeds in batches:
        yield dict(zip(names, session.run(names, feeds), strict=True))


def probe_dataset(
    model: onnx.ModelProto, axes: dict[str, int], data: Dataset, batch_size: int = 16
) -> dict[str, ChannelStats]:
    """probe_channels over `data`, `batch_size` samples a run (a fixed batch: its own)."""
    return probe_channels(model, axes, data.batches(fixed_batch(model) or batch_size))


def whole_batches(data: Dataset, fixed: int | None) -> Dataset:
    """`data` cut to a multiple of a fixed batch size (the model takes no other)."""
    if not fixed or len(data) % fixed == 0:
        return data
    return data.subset(max(fixed, len(data) - len(data) % fixed))
