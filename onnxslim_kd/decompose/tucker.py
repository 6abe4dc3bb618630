"""Tucker-2 of a dense kxk Conv: 1x1 (C_in -> R_in), kxk (R_in -> R_out), 1x1 (R_out -> C_out).

The kxk core keeps the original strides, pads and dilations; the first 1x1 has no bias,
so padded zeros stay zeros; the bias goes on the last 1x1.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from onnxslim_kd.decompose.layer import Layer, Replacement, bias_of, positions
from onnxslim_kd.decompose.linalg import TuckerSpectrum
from onnxslim_kd.graph.names import NameScope


class TuckerConvLayer(Layer):
    """A group-1 Conv with a kernel larger than 1x1; ranks are (R_out, R_in)."""

    kind = "tucker"

    @cached_property
    def spectrum(self) -> TuckerSpectrum:
        return TuckerSpectrum(self.weight)

    @property
    def macs(self) -> int:
        return positions(self.out_shape, 1) * math.prod(self.weight.shape)

    def factorised_macs(self, ranks: tuple[int, ...]) -> int:
        rank_out, rank_in = ranks
        c_out, c_in, *kernel = self.weight.shape
        return positions(self.in_shape, 1) * c_in * rank_in + positions(self.out_shape, 1) * (
            rank_in * rank_out * math.prod(kernel) + rank_out * c_out
        )

    @property
    def spectra(self) -> tuple[np.ndarray, ...]:
        return self.spectrum.sigma

    @property
    def mode_shapes(self) -> tuple[tuple[int, int], ...]:
        c_out, c_in, *kernel = self.weight.shape
        k = math.prod(kernel)
        return ((c_out, c_in * k), (c_in, c_out * k))

    def build(self, ranks: tuple[int, ...], names: NameScope) -> Replacement:
        node = self.node
        u_out, core, u_in = self.spectrum.factors(*ranks)
        ones = [1] * (self.weight.ndim - 2)
        out = Replacement()
        hidden = out.add(
            names, f"{self.name}/tucker_in", "Conv", [node.input[0]],
            np.ascontiguousarray(u_in.T).reshape(*u_in.T.shape, *ones),
        )  # fmt: skip
        hidden = out.add(names, f"{self.name}/tucker_core", "Conv", [hidden], core)
        out.nodes[-1].attribute.extend(node.attribute)  # strides, pads, dilations, kernel
        out.add(
            names, f"{self.name}/tucker_out", "Conv", [hidden], u_out.reshape(*u_out.shape, *ones),
            output=node.output[0], extra_inputs=bias_of(node),
        )  # fmt: skip
        return out
