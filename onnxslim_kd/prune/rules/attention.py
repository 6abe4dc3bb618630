"""Attention blocks: projections whose outputs a Reshape splits into heads, and the
Softmax over the keys. With these, the Q/K/V projections, both activation MatMuls and
the output projection's input features form one space of whole heads.

A projection's channels become heads before the walk starts (like a Split's cut of a
conv, see `structure.split_cuts`): its space has one element per head, each standing for
`head size` consecutive channels (a segment repeat), so every rule and the rewrite slice
whole heads with the shared layout arithmetic and nothing head-specific downstream.
"""

from __future__ import annotations

import math

import onnx

from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.rules.base import Rule, label

#: Ops a head split looks through on its way back to the projection (bias, scaling).
_PASSING = ops_where(keeps_channels=True) | {"Add", "Mul", "Div"}
_PROJECTIONS = ("MatMul", "Gemm")


def head_split(an: Analysis, node: onnx.NodeProto) -> tuple[int, int] | None:
    """(heads, head size) when Reshape `node` splits its input's last axis in two:
    [..., H * D] -> [..., H, D] with H > 1."""
    before, after = an.shape(node.input[0]), an.shape(node.output[0])
    if node.op_type != "Reshape" or before is None or after is None:
        return None
    if not before or len(after) != len(before) + 1 or after[:-2] != before[:-1]:
        return None
    heads, size = after[-2], after[-1]
    return (heads, size) if heads > 1 and size > 1 and heads * size == before[-1] else None


def head_splits(an: Analysis) -> dict[str, tuple[int, int]]:
    """Projection outputs that reach a head split through bias Adds and scalings only,
    where the split heads reach a product of two activations (Q K^T or P V; this tells
    heads from nn.MultiheadAttention's [..., 3, C] unflatten of a fused projection)."""
    found: dict[str, tuple[int, int]] = {}
    for node in an.graph.node:
        split = head_split(an, node)
        tensor = node.input[0] if split and _reaches_product(an, node.output[0]) else None
        while tensor is not None and (writer := an.writers.get(tensor)) is not None:
            if writer.op_type in _PROJECTIONS and an.const(writer.input[1]) is not None:
                found[tensor] = split
                break
            tensor = _passed_input(an, writer)
    return found


def _reaches_product(an: Analysis, tensor: str) -> bool:
    """Whether `tensor` feeds a MatMul of two activations through Transposes and scalings."""
    for reader in an.readers[tensor]:
        if reader.op_type == "MatMul" and all(an.const(n) is None for n in reader.input):
            return True
        passes = reader.op_type == "Transpose" or (
            reader.op_type in ("Mul", "Div") and _scaled(an, reader, tensor)
        )
        if passes and _reaches_product(an, reader.output[0]):
            return True
    return False


def _scaled(an: Analysis, node: onnx.NodeProto, tensor: str) -> bool:
    """`node` multiplies or divides `tensor` by one number (SDPA's computed scale too)."""
    others = [name for name in node.input if name != tensor]
    shapes = [an.shape(name) for name in others]
    return len(others) == 1 and shapes[0] is not None and math.prod(shapes[0]) == 1


def _passed_input(an: Analysis, node: onnx.NodeProto) -> str | None:
    """The activation input of a channel-wise op or of an op with one constant operand."""
    if node.op_type not in _PASSING:
        return None
    activations = [name for name in node.input if name and an.const(name) is None]
    return activations[0] if len(activations) == 1 else None


class Softmax(Rule):
    """Softmax, LogSoftmax and Hardmax normalise along `axis`: any other axis carries its
    channels through (heads, in attention). Before opset 13 they flatten every axis from
    `axis` on, so the channel axis must lie before it."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        legacy = an.graph_opset < 13
        axis = attribute(node, "axis", 1 if legacy else -1) % source.rank
        if source.axis == axis or (legacy and source.axis > axis):
            an.block(source, f"{node.op_type} '{label(node, index)}' normalises the channel axis")
            return
        an.set_layout(node.output[0], source)
