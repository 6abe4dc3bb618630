"""The numpy linear algebra behind every factorisation: principal bases from Gram matrices.

An eigendecomposition of the smaller Gram matrix gives the singular values and a complete
orthonormal basis in one call. Projecting onto the leading basis vectors is the optimal
low-rank approximation, and at full rank the basis is complete, so the factors rebuild the
weight exactly however ill-conditioned it is. It is also far cheaper than a full SVD of the
large side (a 25088x4096 VGG classifier weight: one 4096x4096 eigendecomposition).
"""

from __future__ import annotations

import numpy as np


def principal_basis(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and left singular vectors of a 2-D `matrix`.

    Returns `(sigma, basis)`: `basis` is square (rows x rows) and orthonormal; `sigma`
    has one value per basis column (zeros past the matrix rank). float32 throughout: the
    basis stays orthonormal to ~1e-6, and float64 eigh is up to 10x slower on a busy CPU.
    """
    work = matrix.astype(np.float32, copy=False)
    eigenvalues, basis = np.linalg.eigh(work @ work.T)
    order = np.argsort(eigenvalues)[::-1]
    sigma = np.sqrt(np.clip(eigenvalues[order].astype(np.float64), 0.0, None))
    return sigma, basis[:, order]


class MatrixSpectrum:
    """SVD of a weight matrix [K, N], computed once and shared by rank selection and factors.

    The basis is taken on the smaller side, so the Gram matrix is min(K, N) square.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix
        self.left = matrix.shape[0] <= matrix.shape[1]
        self.sigma, self.basis = principal_basis(matrix if self.left else matrix.T)

    def factors(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """`(p [K, rank], q [rank, N])` with `p @ q` the best rank-`rank` approximation."""
        vectors = self.basis[:, :rank].astype(self.matrix.dtype)
        if self.left:
            return vectors, vectors.T @ self.matrix
        return self.matrix @ vectors, vectors.T


def unfold(tensor: np.ndarray, mode: int) -> np.ndarray:
    """Mode-`mode` unfolding: that axis becomes the rows, all others the columns."""
    return np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def project(tensor: np.ndarray, basis: np.ndarray, mode: int) -> np.ndarray:
    """Mode product with basisᵀ: axis `mode` of size C becomes basis.shape[1] (BLAS-backed)."""
    return np.moveaxis(np.tensordot(tensor, basis, axes=([mode], [0])), -1, mode)


def refine(matrix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """One subspace-iteration step from `basis` towards the leading left singular vectors
    of `matrix`: two products and a QR instead of a full eigendecomposition per HOOI step.
    """
    q, _ = np.linalg.qr(matrix @ (matrix.T @ basis))
    return q


class TuckerSpectrum:
    """HOSVD of a conv kernel [C_out, C_in, *k] over its two channel modes.

    `sigma[0]` and `sigma[1]` are the singular values of the output- and input-channel
    unfoldings, used to choose ranks; `factors` refines the HOSVD bases by HOOI.
    """

    def __init__(self, kernel: np.ndarray) -> None:
        self.kernel = kernel
        self.work = kernel.astype(np.float32)
        out_mode, in_mode = (principal_basis(unfold(self.work, mode)) for mode in (0, 1))
        self.sigma = (out_mode[0], in_mode[0])
        self.bases = (out_mode[1], in_mode[1])

    def factors(
        self, rank_out: int, rank_in: int, steps: int = 2
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(u_out [C_out, R_out], core [R_out, R_in, *k], u_in [C_in, R_in])`.

        kernel ≈ core ×₀ u_out ×₁ u_in; `steps` HOOI sweeps refine each factor against
        the other (Kim et al. 2016), warm-started at the HOSVD bases so one subspace
        iteration per sweep suffices. At full ranks the bases are complete and exact.
        """
        work = self.work
        u_out, u_in = self.bases[0][:, :rank_out], self.bases[1][:, :rank_in]
        if (rank_out, rank_in) != work.shape[:2]:
            for _ in range(steps):
                u_out = refine(unfold(project(work, u_in, 1), 0), u_out)
                u_in = refine(unfold(project(work, u_out, 0), 1), u_in)
        core = project(project(work, u_out, 0), u_in, 1)
        dtype = self.kernel.dtype
        return u_out.astype(dtype), core.astype(dtype), u_in.astype(dtype)
