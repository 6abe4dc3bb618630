"""An in-memory set of model inputs (and optional labels) with batching and subsetting."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Seed of the deterministic subset, so `--samples N` picks the same samples on every run.
SUBSET_SEED = 0


@dataclass
class Dataset:
    """Arrays named after graph inputs, sample axis first; `labels` are integer class ids."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def subset(self, count: int | None) -> Dataset:
        """A deterministic, order-preserving random subset of `count` samples."""
        if count is None or count >= len(self):
            return self
        rng = np.random.default_rng(SUBSET_SEED)
        keep = np.sort(rng.choice(len(self), size=count, replace=False))
        labels = None if self.labels is None else self.labels[keep]
        return Dataset({k: v[keep] for k, v in self.inputs.items()}, labels, self.source)

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds for onnxruntime, `batch_size` samples at a time (the last may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.inputs.items()}

    def first(self, count: int) -> dict[str, np.ndarray]:
        """Feeds holding the first `count` samples, repeated when the set is smaller."""
        index = np.arange(count) % len(self)
        return {k: v[index] for k, v in self.inputs.items()}
