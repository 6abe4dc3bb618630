"""Ops over spatial axes only (pooling, reductions, padding, resizing): channels pass."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.rules.base import Rule, attribute_or_input, label, without_axes


class Pool(Rule):
    """Max/Average/Global/Lp pooling; MaxPool's optional Indices output is not supported."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        if len(node.output) > 1 and node.output[1]:
            an.block(source, f"{node.op_type} '{label(node, index)}' returns indices")
            return
        an.set_layout(node.output[0], source)


class Reduce(Rule):
    """Reductions over axes that exclude the channel axis; keepdims=0 shifts the axis."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        axes = attribute_or_input(an, node, "axes", 1)
        if not axes:
            an.block(source, f"{node.op_type} '{label(node, index)}' reduces every axis")
            return
        reduced = without_axes(source, axes)
        if reduced is None:
            an.block(source, f"{node.op_type} '{label(node, index)}' reduces the channel axis")
            return
        an.set_layout(node.output[0], source if attribute(node, "keepdims", 1) else reduced)


class Pad(Rule):
    """Padding that leaves the channel axis alone."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        pads = attribute_or_input(an, node, "pads", 1)
        axes_given = len(node.input) > 3 and node.input[3]
        if pads is None or axes_given or pads[source.axis] or pads[source.axis + source.rank]:
            an.block(source, f"Pad '{label(node, index)}' may pad the channel axis")
            return
        an.set_layout(node.output[0], source)


class Resize(Rule):
    """Resize/Upsample by scales (an explicit `sizes` would pin the channel count)."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        if len(node.input) > 3 and node.input[3]:
            an.block(source, f"{node.op_type} '{label(node, index)}' resizes to explicit sizes")
            return
        an.set_layout(node.output[0], source)
