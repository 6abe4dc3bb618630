"""SVD of MatMul with a constant 2-D weight: X [..., K] @ W becomes (X @ P) @ Q.

Covers transformer projections, whose activations are 3-D [batch, tokens, K].
"""

from __future__ import annotations

import numpy as np

from onnxslim_kd.decompose.layer import Replacement, positions
from onnxslim_kd.decompose.svd import SvdLayer
from onnxslim_kd.graph.names import NameScope


class MatMulLayer(SvdLayer):
    """A MatMul whose second input is a constant 2-D initializer."""

    @property
    def matrix(self) -> np.ndarray:
        return self.weight

    @property
    def rows(self) -> int:
        return positions(self.out_shape, -1)

    def emit(self, p: np.ndarray, q: np.ndarray, names: NameScope) -> Replacement:
        out = Replacement()
        hidden = out.add(names, f"{self.name}/svd_in", "MatMul", [self.node.input[0]], p)
        out.add(names, f"{self.name}/svd_out", "MatMul", [hidden], q, output=self.node.output[0])
        return out
