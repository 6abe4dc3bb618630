"""Reading small integer tensors (shapes, axes, sizes) that rules take as inputs."""

from __future__ import annotations

from torch import Tensor


def ints(value: Tensor | None) -> list[int] | None:
    """The integers of a shape-like tensor, flattened; None when the input is absent."""
    return None if value is None else [int(v) for v in value.reshape(-1).tolist()]
