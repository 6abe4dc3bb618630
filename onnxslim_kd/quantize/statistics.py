"""Per-channel statistics of intermediate tensors over calibration data, in one run.

Bias correction needs each layer's output mean per channel, SmoothQuant each LayerNorm
output's largest magnitude per channel; both expose the tensors as extra graph outputs
and reduce batch by batch, so memory does not grow with the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import clone

_BATCH = 16


@dataclass
class ChannelStats:
    """Mean, standard deviation and largest magnitude of each channel."""

    mean: np.ndarray
    std: np.ndarray
    absmax: np.ndarray


def channel_statistics(
    model: onnx.ModelProto, tensors: dict[str, str], data: Dataset, axis: int = 1
) -> dict[str, ChannelStats]:
    """Statistics over `data` of each tensor in `tensors` (key -> tensor name) along its
    channel `axis`, by key."""
    names = list(dict.fromkeys(tensors.values()))
    exposed = clone(model)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    session = make_session(exposed)
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    peaks: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(names, 0)
    for feeds in data.batches(fixed_batch(model) or _BATCH):
        for name, value in zip(names, session.run(names, feeds), strict=True):
            channel = axis % value.ndim
            others = tuple(a for a in range(value.ndim) if a != channel)
            sums[name] = sums.get(name, 0) + value.sum(axis=others, dtype=np.float64)
            squares[name] = squares.get(name, 0) + np.square(value).sum(
                axis=others, dtype=np.float64
            )
            peak = np.abs(value).max(axis=others)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
            counts[name] += value.size // value.shape[channel]
    stats = {}
    for key, name in tensors.items():
        mean = sums[name] / counts[name]
        std = np.sqrt(np.maximum(squares[name] / counts[name] - mean**2, 0))
        stats[key] = ChannelStats(mean, std, peaks[name].astype(np.float64))
    return stats


def whole_batches(data: Dataset, fixed: int | None) -> Dataset:
    """`data` cut to a multiple of a fixed batch size (the model takes no other)."""
    if not fixed or len(data) % fixed == 0:
        return data
    return data.subset(max(fixed, len(data) - len(data) % fixed))
