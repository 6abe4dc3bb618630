"""SVD of a 1x1 Conv: W [C_out, C_in, 1, 1] becomes two 1x1 convs through R channels.

The first conv keeps the original strides, pads and dilations (zero padding maps to
zero, so the bias on the second conv sees exactly what the original saw).
"""

from __future__ import annotations

import numpy as np

from onnxslim_kd.decompose.layer import Replacement, bias_of, positions
from onnxslim_kd.decompose.svd import SvdLayer
from onnxslim_kd.graph.names import NameScope


class PointwiseConvLayer(SvdLayer):
    """A group-1 Conv whose kernel is 1 in every spatial dim."""

    @property
    def matrix(self) -> np.ndarray:
        return self.weight.reshape(self.weight.shape[:2]).T

    @property
    def rows(self) -> int:
        return positions(self.out_shape, 1)

    def emit(self, p: np.ndarray, q: np.ndarray, names: NameScope) -> Replacement:
        node = self.node
        ones = [1] * (self.weight.ndim - 2)
        out = Replacement()
        hidden = out.add(
            names, f"{self.name}/svd_in", "Conv", [node.input[0]],
            np.ascontiguousarray(p.T).reshape(p.shape[1], p.shape[0], *ones),
        )  # fmt: skip
        out.nodes[-1].attribute.extend(node.attribute)  # strides, pads, dilations
        out.add(
            names, f"{self.name}/svd_out", "Conv", [hidden],
            np.ascontiguousarray(q.T).reshape(q.shape[1], q.shape[0], *ones),
            output=node.output[0], extra_inputs=bias_of(node),
        )  # fmt: skip
        return out
