"""What every factorisable layer offers rank selection and the rewrite, whatever its op."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxslim_kd.graph.names import NameScope


@dataclass
class Replacement:
    """The nodes and new initializers that stand in for one original node."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def add(
        self,
        names: NameScope,
        node_name: str,
        op_type: str,
        inputs: list[str],
        weight: np.ndarray,
        output: str | None = None,
        extra_inputs: tuple[str, ...] = (),
        **attributes,
    ) -> str:
        """Append `op_type(inputs..., weight, extra_inputs...)` named `node_name`.

        The weight becomes an initializer `<node>.weight`; the output is `output` (the
        original layer's output, for the last node) or a fresh `<node>_output_0`.
        Returns the output name.
        """
        node_name = names.fresh(node_name)
        weight_name = names.fresh(f"{node_name}.weight")
        output = output or names.fresh(f"{node_name}_output_0")
        self.initializers.append(numpy_helper.from_array(weight, weight_name))
        self.nodes.append(
            helper.make_node(
                op_type, [*inputs, weight_name, *extra_inputs], [output], name=node_name,
                **attributes,
            )
        )  # fmt: skip
        return output


class Layer(ABC):
    """A Gemm, MatMul or Conv node with a constant weight and known input/output shapes.

    `ranks` are per mode: one for an SVD layer, (output, input) for Tucker-2.
    """

    #: "svd" or "tucker", for the summary and `--method`.
    kind: ClassVar[str]

    def __init__(
        self, node: onnx.NodeProto, name: str, weight: np.ndarray, in_shape: list[int],
        out_shape: list[int],
    ) -> None:  # fmt: skip
        self.node = node
        self.name = name
        self.weight = weight
        self.in_shape = in_shape
        self.out_shape = out_shape

    @property
    @abstractmethod
    def macs(self) -> int:
        """Multiply-accumulates of the original layer at its real shapes."""

    @abstractmethod
    def factorised_macs(self, ranks: tuple[int, ...]) -> int:
        """Multiply-accumulates of the factorised layers at `ranks`."""

    @property
    @abstractmethod
    def spectra(self) -> tuple[np.ndarray, ...]:
        """Singular values (descending) of each factorised mode."""

    @property
    @abstractmethod
    def mode_shapes(self) -> tuple[tuple[int, int], ...]:
        """The matrix (unfolding) shape behind each spectrum, for VBMF."""

    @abstractmethod
    def build(self, ranks: tuple[int, ...], names: NameScope) -> Replacement:
        """The factorised nodes; the last one writes the original output."""

    @property
    def full_ranks(self) -> tuple[int, ...]:
        """The largest meaningful rank of each mode."""
        return tuple(min(shape) for shape in self.mode_shapes)

    def describe(self) -> str:
        """Weight shape as `256x256x3x3`, for the summary."""
        return "x".join(str(d) for d in self.weight.shape)


def positions(shape: list[int], channel_axis: int) -> int:
    """How many times a layer applies its weight: all elements but one channel vector."""
    return math.prod(shape) // shape[channel_axis]


def bias_of(node: onnx.NodeProto) -> tuple[str, ...]:
    """The third input (Conv bias, Gemm C) as a tuple, empty when absent."""
    return tuple(name for name in node.input[2:3] if name)
