"""Rank selection: rounding, energy and ratio edge cases, guarded VBMF, global MACs target."""

from __future__ import annotations

import numpy as np
import pytest

from onnxslim_kd.decompose import decompose, make_selector
from onnxslim_kd.decompose.ranks import (
    EnergySelector,
    RatioSelector,
    TargetMacsSelector,
    VbmfSelector,
    energy_rank,
    round_rank,
)
from onnxslim_kd.decompose.vbmf import vbmf_rank
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load


@pytest.fixture(scope="module")
def digits_model(digits):
    return load(digits / "model.onnx")


@pytest.mark.parametrize(
    ("rank", "full", "expected"),
    [(0, 64, 8), (1, 64, 8), (9, 64, 16), (16, 64, 16), (70, 64, 64), (5, 4, 4)],
)
def test_ranks_round_up_to_multiples_of_8_within_full_rank(rank, full, expected):
    assert round_rank(rank, full) == expected


def test_energy_rank_edges():
    sigma = np.array([3.0, 2.0, 1.0, 0.0])
    assert energy_rank(sigma, 0.0) == 1  # rank 0 requested: at least 1
    assert energy_rank(sigma, 9 / 14) == 1
    assert energy_rank(sigma, 0.65) == 2
    assert energy_rank(sigma, 1.0) == 3  # zero tail is not needed for all the energy
    assert energy_rank(np.zeros(5), 0.9) == 1


def test_vbmf_recovers_the_rank_of_signal_plus_noise():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((96, 5)) @ rng.standard_normal((5, 160)) * 3
    matrix = signal + 0.1 * rng.standard_normal((96, 160))
    sigma = np.linalg.svd(matrix, compute_uv=False)
    assert vbmf_rank(sigma, matrix.shape) == 5
    assert vbmf_rank(sigma, matrix.T.shape) == 5


@pytest.mark.parametrize(
    ("sigma", "shape"),
    [
        (np.zeros(32), (32, 64)),  # zero weight
        (np.array([4.0]), (1, 64)),  # one row
        (np.ones(64), (64, 64)),  # perfectly flat spectrum: public code returns 0
        (np.array([1.0] + [0.0] * 31), (32, 32)),  # exact rank 1
    ],
)
def test_vbmf_degenerate_spectra_give_rank_at_least_one(sigma, shape):
    rank = vbmf_rank(sigma, shape)
    assert 1 <= rank <= min(shape)


def test_random_weights_under_vbmf_never_give_an_empty_rank(digits_model):
    _, summary = decompose(digits_model, VbmfSelector())
    ranks = [r for d in summary.layers if d.ranks for r in d.ranks]
    assert ranks and min(ranks) >= 8 and all(r % 8 == 0 for r in ranks)


def test_full_rank_requested_is_skipped_at_break_even_and_leaves_the_model_alone(digits_model):
    out, summary = decompose(digits_model, RatioSelector(1.0))
    assert summary.decomposed == 0 and summary.macs_after == summary.macs_before
    assert out.graph.SerializeToString() == digits_model.graph.SerializeToString()
    reasons = {d.name: d.reason for d in summary.layers}
    assert reasons["/stages/stages.0/conv1/Conv"] == (
        "rank 32x32 at or beyond break-even (11.53M >= 9.44M MACs)"
    )
    assert reasons["/stem/stem.0/Conv"] == "tiny layer (32x1x3x3 weight)"
    assert reasons["/fc/Gemm"] == "tiny layer (10x128 weight)"


def test_rank_zero_requested_gives_the_smallest_rank(digits_model):
    _, summary = decompose(digits_model, EnergySelector(0.0))
    decided = [d for d in summary.layers if d.ranks]
    assert decided and all(d.ranks == [8] * len(d.ranks) for d in decided)
    assert all(d.decomposed for d in decided)


@pytest.mark.parametrize("fraction", [0.7, 0.5])
def test_target_macs_is_met(digits_model, fraction):
    _, summary = decompose(digits_model, TargetMacsSelector(fraction))
    assert summary.macs_after <= fraction * summary.macs_before
    assert summary.macs_after > 0.3 * summary.macs_before  # not far beyond the target


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"energy": 1.5}, "energy must be in [0, 1], got 1.5"),
        ({"rank_ratio": 0.0}, "rank ratio must be in (0, 1], got 0.0"),
        ({"target_macs": float("nan")}, "target MACs must be in (0, 1], got nan"),
        ({"energy": 0.9, "vbmf": True}, "choose one rank strategy, got energy and vbmf"),
    ],
)
def test_bad_selector_options(options, message):
    with pytest.raises(InputError) as error:
        make_selector(**options)
    assert str(error.value) == message


def test_default_strategy_is_energy():
    assert make_selector().describe() == "--energy 0.95"
