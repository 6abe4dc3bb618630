"""Rank selection: one base class, interchangeable strategies.

Every strategy proposes a rank per mode; the base class rounds it up to a multiple of 8
(what onnxruntime's GEMM kernels tile by) and keeps it within [1, full rank].
Whether the rounded rank pays is decided later, against the layer's MACs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from onnxslim_kd.decompose.layer import Layer
from onnxslim_kd.decompose.vbmf import vbmf_rank
from onnxslim_kd.errors import InputError

#: Ranks are rounded up to a multiple of this.
RANK_MULTIPLE = 8

#: Without a strategy: keep this much of each layer's energy (see docs/decompose.md).
DEFAULT_ENERGY = 0.95

Ranks = tuple[int, ...]


def round_rank(rank: int, full: int) -> int:
    """Round up to a multiple of RANK_MULTIPLE, at least 1 and at most `full`."""
    return min(max(RANK_MULTIPLE * math.ceil(rank / RANK_MULTIPLE), RANK_MULTIPLE), full)


class RankSelector(ABC):
    """Chooses the rounded ranks of every layer at once, so global strategies fit too."""

    @abstractmethod
    def choose(self, layers: list[Layer], model_macs: int) -> list[Ranks]:
        """Ranks per layer (per mode), rounded; `model_macs` is the whole model's."""

    @abstractmethod
    def describe(self) -> str:
        """The strategy as its command-line option, for summaries."""


class LayerwiseSelector(RankSelector):
    """A strategy that looks at one layer at a time."""

    def choose(self, layers: list[Layer], model_macs: int) -> list[Ranks]:
        return [self.rounded(layer) for layer in layers]

    def rounded(self, layer: Layer) -> Ranks:
        proposed = self.propose(layer)
        return tuple(
            round_rank(r, full) for r, full in zip(proposed, layer.full_ranks, strict=True)
        )

    @abstractmethod
    def propose(self, layer: Layer) -> Ranks:
        """Unrounded rank per mode of `layer`."""


class EnergySelector(LayerwiseSelector):
    """The smallest rank keeping `energy` of the squared singular values of each mode."""

    def __init__(self, energy: float) -> None:
        _check_fraction("energy", energy, allow_zero=True)
        self.energy = energy

    def propose(self, layer: Layer) -> Ranks:
        return tuple(energy_rank(sigma, self.energy) for sigma in layer.spectra)

    def describe(self) -> str:
        return f"--energy {self.energy}"


class RatioSelector(LayerwiseSelector):
    """A fixed fraction of each mode's full rank (random weights have flat spectra)."""

    def __init__(self, ratio: float) -> None:
        _check_fraction("rank ratio", ratio)
        self.ratio = ratio

    def propose(self, layer: Layer) -> Ranks:
        return tuple(math.ceil(self.ratio * full) for full in layer.full_ranks)

    def describe(self) -> str:
        return f"--rank-ratio {self.ratio}"


class VbmfSelector(LayerwiseSelector):
    """The rank EVBMF attributes to signal rather than noise, per mode (Kim et al. 2016)."""

    def propose(self, layer: Layer) -> Ranks:
        return tuple(
            vbmf_rank(sigma, shape)
            for sigma, shape in zip(layer.spectra, layer.mode_shapes, strict=True)
        )

    def describe(self) -> str:
        return "--vbmf"


class TargetMacsSelector(RankSelector):
    """Meet a global MACs budget: the highest common energy whose model fits `fraction`.

    Layers with redundant spectra lose more rank than layers without; layers that would
    not pay keep their MACs, as they will be skipped.
    """

    #: Bisection steps on the energy threshold (2^-30: far below any rank change).
    STEPS = 30

    def __init__(self, fraction: float) -> None:
        _check_fraction("target MACs", fraction)
        self.fraction = fraction

    def choose(self, layers: list[Layer], model_macs: int) -> list[Ranks]:
        budget = self.fraction * model_macs
        low, high = 0.0, 1.0
        best = EnergySelector(low).choose(layers, model_macs)
        for _ in range(self.STEPS):
            middle = (low + high) / 2
            ranks = EnergySelector(middle).choose(layers, model_macs)
            if _macs_after(layers, ranks, model_macs) <= budget:
                low, best = middle, ranks
            else:
                high = middle
        return best

    def describe(self) -> str:
        return f"--target-macs {self.fraction}"


def energy_rank(sigma: np.ndarray, energy: float) -> int:
    """Smallest r with sum(sigma[:r]²) >= energy * sum(sigma²); 1 for a zero spectrum."""
    power = np.cumsum(np.asarray(sigma, dtype=np.float64) ** 2)
    if power[-1] <= 0.0:
        return 1
    needed = energy * power[-1] * (1 - 1e-12)  # energy 1.0 must not miss by rounding
    return max(int(np.searchsorted(power, needed)) + 1, 1)


def _macs_after(layers: list[Layer], ranks: list[Ranks], model_macs: int) -> int:
    """Model MACs once every layer that pays at `ranks` is factorised."""
    saved = sum(
        max(layer.macs - layer.factorised_macs(r), 0)
        for layer, r in zip(layers, ranks, strict=True)
    )
    return model_macs - saved


def _check_fraction(what: str, value: float, allow_zero: bool = False) -> None:
    if not (0.0 <= value <= 1.0 if allow_zero else 0.0 < value <= 1.0):  # NaN fails too
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise InputError(f"{what} must be in {bounds}, got {value}")


def make_selector(
    energy: float | None = None,
    rank_ratio: float | None = None,
    vbmf: bool = False,
    target_macs: float | None = None,
) -> RankSelector:
    """The selector for exactly one strategy; none given means `--energy DEFAULT_ENERGY`."""
    given = [
        name
        for name, value in (
            ("energy", energy), ("rank_ratio", rank_ratio), ("target_macs", target_macs),
            ("vbmf", vbmf or None),
        )
        if value is not None
    ]  # fmt: skip
    if len(given) > 1:
        raise InputError(f"choose one rank strategy, got {' and '.join(given)}")
    if rank_ratio is not None:
        return RatioSelector(rank_ratio)
    if target_macs is not None:
        return TargetMacsSelector(target_macs)
    if vbmf:
        return VbmfSelector()
    return EnergySelector(DEFAULT_ENERGY if energy is None else energy)
