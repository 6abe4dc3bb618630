"""SVD layers: a weight matrix M [K, N] (y = x @ M) split into x @ P [K, R] @ Q [R, N].

Two layers cost R*(K+N) MACs per row instead of K*N, so a rank pays only below
K*N / (K+N) (the break-even point).
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property

import numpy as np

from onnxslim_kd.decompose.layer import Layer, Replacement
from onnxslim_kd.decompose.linalg import MatrixSpectrum
from onnxslim_kd.graph.names import NameScope


class SvdLayer(Layer):
    """Shared by Gemm, MatMul and 1x1 Conv; subclasses say how M is stored and emitted."""

    kind = "svd"

    @property
    @abstractmethod
    def matrix(self) -> np.ndarray:
        """The weight as M [K, N] with y = x @ M."""

    @property
    @abstractmethod
    def rows(self) -> int:
        """How many input vectors the layer multiplies by M (batch x positions)."""

    @abstractmethod
    def emit(self, p: np.ndarray, q: np.ndarray, names: NameScope) -> Replacement:
        """Nodes computing (x @ p) @ q with the layer's own op, bias on the second."""

    @cached_property
    def spectrum(self) -> MatrixSpectrum:
        return MatrixSpectrum(self.matrix)

    @property
    def macs(self) -> int:
        k, n = self.matrix.shape
        return self.rows * k * n

    def factorised_macs(self, ranks: tuple[int, ...]) -> int:
        k, n = self.matrix.shape
        return self.rows * ranks[0] * (k + n)

    @property
    def spectra(self) -> tuple[np.ndarray, ...]:
        return (self.spectrum.sigma,)

    @property
    def mode_shapes(self) -> tuple[tuple[int, int], ...]:
        return (self.matrix.shape,)

    def build(self, ranks: tuple[int, ...], names: NameScope) -> Replacement:
        p, q = self.spectrum.factors(ranks[0])
        return self.emit(p, q, names)
