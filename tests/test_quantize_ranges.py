"""Activation ranges by least quantization error (quantize.ranges, `--method mse`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxslim_kd.quantize.ranges import mse_range


def histogram(values: np.ndarray, bins: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """As onnxruntime's collector makes it: symmetric around 0 over the largest |value|."""
    threshold = float(np.abs(values).max())
    return np.histogram(values, bins, range=(-threshold, threshold))


def quantization_mse(values: np.ndarray, low: float, high: float) -> float:
    """The real error of uint8 asymmetric quantization of `values` to [low, high]."""
    scale = (high - low) / 255
    zero = np.round(-low / scale)
    q = np.clip(np.round(values / scale) + zero, 0, 255)
    return float(np.mean(((q - zero) * scale - values) ** 2))


def test_a_heavy_tail_is_clipped_where_that_lowers_the_error():
    """A Laplace tail: MinMax spends the grid on a few extremes, a 0.1 % percentile clips
    too much; the chosen range beats both on the real error."""
    values = np.random.default_rng(0).laplace(0.0, 1.0, 200_000)
    low, high = mse_range(*histogram(values), values.min(), values.max())
    assert values.min() < low < 0 < high < values.max()
    chosen = quantization_mse(values, low, high)
    assert chosen < 0.85 * quantization_mse(values, values.min(), values.max())  # 0.80 measured
    assert chosen < quantization_mse(values, *np.quantile(values, [0.001, 0.999]))


def test_a_few_huge_outliers_are_kept_when_clipping_them_costs_more():
    """Squared error counts magnitude: clipping two values at 60 and 80 among 200k costs
    more than the coarser grid, so the least-error range keeps them."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 200_000), [60.0, 80.0]])
    low, high = mse_range(*histogram(values), values.min(), values.max())
    assert high == pytest.approx(80.0, rel=1e-3)
    assert quantization_mse(values, low, high) <= quantization_mse(values, low, 4.5)


def test_values_without_outliers_keep_about_their_extremes():
    values = np.random.default_rng(1).uniform(-2.0, 6.0, 100_000)
    low, high = mse_range(*histogram(values), values.min(), values.max())
    assert low == pytest.approx(-2.0, abs=0.05) and high == pytest.approx(6.0, abs=0.05)


def test_the_range_always_holds_zero():
    values = np.random.default_rng(2).uniform(3.0, 5.0, 10_000)  # e.g. after a ReLU + offset
    low, high = mse_range(*histogram(values), values.min(), values.max())
    assert low == 0.0 and high == pytest.approx(5.0, abs=0.05)


def test_an_empty_or_constant_tensor_gets_a_range_holding_zero():
    assert mse_range(np.zeros(8), np.linspace(-1, 1, 9), 0.0, 0.0) == (0.0, 0.0)
    assert mse_range(np.zeros(8), np.linspace(-1, 1, 9), -1.0, 2.0) == (-1.0, 2.0)


def test_quantize_with_method_mse(cli, tmp_path, digits):
    out = tmp_path / "q.onnx"
    result = cli("quantize", digits / "model.onnx", "-o", out, "--data", digits / "calib.npz",
                 "--method", "mse", "--eval-data", digits / "test.npz", "--bench-runs", "0",
                 "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["calibration"]["method"] == "mse"
    assert record["budget"]["ok"] and record["fidelity"]["accuracy_int8"] >= 0.99
