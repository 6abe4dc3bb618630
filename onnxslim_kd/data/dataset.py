"""An in-memory set of model inputs (and optional labels) with batching and subsetting."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from onnxslim_kd.errors import InputError

#: Seed of the deterministic subset, so `--samples N` picks the same samples on every run.
SUBSET_SEED = 0


#: Share of the data held out to measure results when no evaluation data is given, and
#: the fewest samples for which anything is held out.
EVALUATION_SHARE = 0.2
MIN_EVALUATION_SAMPLES = 10


@dataclass
class Dataset:
    """Arrays named after graph inputs; `labels` are integer class ids, one per sample, or
    label sequences [N, L] padded with -1 (a text recogniser's, read by CTC decoding).

    Samples lie on axis 0 unless `axes` says otherwise: a recurrent state [layers, N, H]
    has them on axis 1, and an input mapped to None (a scalar sample rate) is not per
    sample at all and goes unchanged with every batch. `take` is the one slicing primitive.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "<memory>"
    axes: dict[str, int | None] = field(default_factory=dict)

    def axis(self, name: str) -> int | None:
        return self.axes.get(name, 0)

    def __len__(self) -> int:
        batched = [(n, a) for n, a in self.inputs.items() if self.axis(n) is not None]
        if not batched:
            return 0
        name, array = batched[0]
        return array.shape[self.axis(name)] if array.ndim else 0

    def take(self, index: np.ndarray) -> Dataset:
        """The samples at `index` (in that order), each input sliced on its own axis."""
        inputs = {
            name: array if self.axis(name) is None else np.take(array, index, self.axis(name))
            for name, array in self.inputs.items()
        }
        labels = None if self.labels is None else self.labels[index]
        return Dataset(inputs, labels, self.source, self.axes)

    def without_labels(self) -> Dataset:
        return Dataset(self.inputs, None, self.source, self.axes)

    def subset(self, count: int | None) -> Dataset:
        """A deterministic, order-preserving random subset of `count` samples."""
        if count is None or count >= len(self):
            return self
        rng = np.random.default_rng(SUBSET_SEED)
        return self.take(np.sort(rng.choice(len(self), size=count, replace=False)))

    def hold_out(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A seeded split into (the rest, `fraction` of the samples held out)."""
        order = np.random.default_rng(seed).permutation(len(self))
        count = max(1, round(len(self) * fraction))
        if count >= len(self):
            raise InputError(
                f"{self.source}: too few samples ({len(self)}) to hold out {fraction:g}"
            )
        return self.take(np.sort(order[count:])), self.take(np.sort(order[:count]))

    def evaluation_split(self) -> tuple[Dataset, Dataset | None]:
        """(the rest, EVALUATION_SHARE held out to measure results on), or (all, None) with
        fewer than MIN_EVALUATION_SAMPLES: the split compress and quantize make when no
        evaluation data is given."""
        if len(self) < MIN_EVALUATION_SAMPLES:
            return self, None
        return self.hold_out(EVALUATION_SHARE)

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds for onnxruntime, `batch_size` samples at a time (the last may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield self.take(np.arange(start, min(start + batch_size, len(self)))).inputs

    def first(self, count: int) -> dict[str, np.ndarray]:
        """Feeds holding the first `count` samples, repeated when the set is smaller."""
        return self.take(np.arange(count) % len(self)).inputs
