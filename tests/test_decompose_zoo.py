"""Decomposition of real exported architectures (torchvision, random weights)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from onnxslim_kd.decompose import RatioSelector, decompose
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import check

pytestmark = pytest.mark.zoo


def test_resnet18_at_rank_ratio_half_is_valid_and_cheaper(zoo):
    model = load(zoo("resnet18", "legacy"))
    out, summary = decompose(model, RatioSelector(0.5))
    check(out)
    before, after = model_stats(model), model_stats(out)
    assert after.macs == summary.macs_after < 0.6 * before.macs
    assert after.params < before.params
    assert summary.decomposed == 20  # 16 3x3 convs, 3 1x1 shortcuts and the fc
    skipped = {d.name: d.reason for d in summary.layers if not d.decomposed}
    assert skipped == {"/conv1/Conv": "tiny layer (64x3x7x7 weight)"}
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (logits,) = make_session(out).run(None, {"input": x})
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()


def test_all_resnet50_layers_decompose_in_under_10_seconds(zoo):
    model = load(zoo("resnet50", "legacy"))
    start = time.perf_counter()
    _, summary = decompose(model, RatioSelector(0.5))
    assert time.perf_counter() - start < 10.0  # generous guard; benchmarks/decompose has the number
    assert summary.decomposed >= 50
