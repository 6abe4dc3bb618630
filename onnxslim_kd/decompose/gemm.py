"""SVD of Gemm: Y = alpha * A' @ B' + beta * C becomes Gemm(A, alpha * P) then Gemm(H, Q, C).

transA stays on the first Gemm, alpha is folded into P, the bias C and beta go on the
second; B' (B or Bᵀ for transB) is the matrix that is factorised.
"""

from __future__ import annotations

import numpy as np

from onnxslim_kd.decompose.layer import Replacement, bias_of
from onnxslim_kd.decompose.svd import SvdLayer
from onnxslim_kd.graph.names import NameScope
from onnxslim_kd.graph.walk import attribute


class GemmLayer(SvdLayer):
    """A Gemm whose B is a constant initializer."""

    @property
    def matrix(self) -> np.ndarray:
        return self.weight.T if attribute(self.node, "transB", 0) else self.weight

    @property
    def rows(self) -> int:
        return self.out_shape[0]

    def emit(self, p: np.ndarray, q: np.ndarray, names: NameScope) -> Replacement:
        node = self.node
        alpha = attribute(node, "alpha", 1.0)
        first = {"transA": 1} if attribute(node, "transA", 0) else {}
        bias = bias_of(node)
        second = {"beta": attribute(node, "beta", 1.0)} if bias else {}
        out = Replacement()
        hidden = out.add(
            names, f"{self.name}/svd_in", "Gemm", [node.input[0]], p * p.dtype.type(alpha), **first
        )
        out.add(
            names, f"{self.name}/svd_out", "Gemm", [hidden], q, output=node.output[0],
            extra_inputs=bias, **second,
        )  # fmt: skip
        return out
