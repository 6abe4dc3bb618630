"""The interface every op rule implements, and helpers shared by several rules."""

from __future__ import annotations

from typing import ClassVar

import onnx

from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.graph.walk import node_label as label
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import KeepLookup, Layout

__all__ = ["Rule", "attribute_or_input", "block_inputs", "label", "moved", "without_axes"]


class Rule:
    """How channels flow through one ONNX op type.

    `propagate` runs during analysis: it gives output tensors a layout, declares which
    initializers are sliced along which axis, couples spaces, or blocks them with a
    reason. `rewrite` runs only for nodes the rule registered with `Analysis.edit`, to
    change attributes or shape constants once the kept channels are known.
    """

    creates_channels: ClassVar[bool] = False

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        raise NotImplementedError

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        """Attribute edits for nodes registered with `Analysis.edit` (none by default)."""


def moved(layout: Layout, rank_in: int, rank_out: int | None) -> Layout:
    """The same channels in an output aligned to the input from the right (broadcasting)."""
    rank_out = rank_in if rank_out is None else rank_out
    return layout.with_axis(layout.axis + rank_out - rank_in, rank_out)


def attribute_or_input(
    an: Analysis, node: onnx.NodeProto, name: str, position: int
) -> list[int] | None:
    """An int-list setting given as attribute `name` (older opsets) or constant input
    `position` (newer ones); None when absent or computed at run time."""
    value = attribute(node, name)
    if value is None and len(node.input) > position and node.input[position]:
        constant = an.const(node.input[position])
        value = None if constant is None else constant.tolist()
    return None if value is None else list(value)


def without_axes(layout: Layout, axes: list[int]) -> Layout | None:
    """The layout once `axes` are removed (Squeeze, keepdims=0); None if the channel axis goes."""
    axes = [a % layout.rank for a in axes]
    if layout.axis in axes:
        return None
    axis = layout.axis - sum(a < layout.axis for a in axes)
    return layout.with_axis(axis, layout.rank - len(axes))


def block_inputs(an: Analysis, node: onnx.NodeProto, reason: str) -> None:
    for name in node.input:
        if (lay := an.layout(name)) is not None:
            an.block(lay, reason)
