"""Ops that act on every element independently: channels pass straight through."""

from __future__ import annotations

import onnx

from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import Layout
from onnxslim_kd.prune.rules.base import Rule, block_inputs, label, moved


class Unary(Rule):
    """Activations and other one-input elementwise ops (extra inputs must be scalars)."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        for name in node.input[1:]:
            value = an.const(name) if name else None
            if name and (value is None or value.size != 1):
                block_inputs(
                    an, node, f"{node.op_type} '{label(node, index)}' has a tensor operand"
                )
                return
        if source is not None:
            an.set_layout(node.output[0], moved(source, source.rank, an.rank(node.output[0])))


class Binary(Rule):
    """Add/Sub/Mul/Div/...: two activations couple their channels (residuals, SE gates);
    a constant operand is sliced when it is per-channel and left alone when it broadcasts.
    """

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        out_rank = an.rank(node.output[0])
        where = f"{node.op_type} '{label(node, index)}'"
        tracked: list[Layout] = []
        for name in node.input:
            lay = an.layout(name)
            if lay is not None:
                tracked.append(moved(lay, lay.rank, out_rank))
        if not tracked:
            return
        first = tracked[0]
        for other in tracked[1:]:
            an.couple(first, other, f"{where} adds channels that do not line up")
        for position, name in enumerate(node.input):
            if an.layout(name) is None and not self._broadcasts(an, index, position, name, first):
                an.block(first, f"{where} combines channels with an untracked tensor")
        an.set_layout(node.output[0], first)

    @staticmethod
    def _broadcasts(an: Analysis, index: int, position: int, name: str, lay: Layout) -> bool:
        """True when operand `name` is uniform over the channels or sliced with them."""
        shape = an.shape(name)
        value = an.const(name)
        if value is not None:
            shape = list(value.shape)
        if shape is None:
            return False
        from_right = lay.rank - lay.axis
        if len(shape) < from_right or shape[len(shape) - from_right] == 1:
            return True
        if value is not None and shape[len(shape) - from_right] == lay.size:
            axis = len(shape) - from_right
            an.slice_param(index, position, axis, lay.with_axis(axis, len(shape)))
            return True
        return False
