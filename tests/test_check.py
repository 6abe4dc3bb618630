"""`onnxslim-kd check`: the CI gate's verdicts and exit codes."""

from __future__ import annotations

import json

import pytest

import onnxslim_kd as sk
from onnxslim_kd.bench import latency
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.comparison import compare_before_after
from onnxslim_kd.report.gate import speedup_limit
from tests.timings import fake_bench


def _pruned(tmp_path, digits):
    model = sk.load(digits / "model.onnx")
    return sk.save(prune(model, PruneOptions(ratio=0.5))[0], tmp_path / "pruned.onnx")


def test_passes_when_every_limit_holds(cli, tmp_path, digits):
    candidate = sk.save(sk.canonicalize(sk.load(digits / "model.onnx"))[0], tmp_path / "c.onnx")
    markdown = tmp_path / "gate.md"
    result = cli("check", candidate, "--baseline", digits / "model.onnx",
                 "--data", digits / "test.npz", "--max-drop", "0", "--min-speedup", "0.5",
                 "--max-size-mb", "10", "--runs", "10", "--markdown", markdown,
                 f"--json={tmp_path / 'gate.json'}")  # fmt: skip
    assert result.code == 0, result.stderr
    assert markdown.read_text().startswith("### onnxslim-kd check: PASSED")
    record = json.loads((tmp_path / "gate.json").read_text())
    assert record["passed"] is True
    assert [limit["name"] for limit in record["limits"]] == ["max-drop", "min-speedup",
                                                            "max-size-mb"]  # fmt: skip
    assert record["limits"][0]["measured"] == 0.0
    assert record["limits"][1]["detail"].endswith("interleaved rounds: above 0.5x")


@pytest.mark.parametrize(
    ("speedup", "passed", "rounds", "reading"),
    [(2.6, True, 10, "above 2x"), (1.5, False, 10, "below 2x"),
     (2.01, True, 80, "not measurably below 2x")],
)  # fmt: skip
def test_min_speedup_is_decided_on_the_interval_timed_until_decided(
    monkeypatch, digits, speedup, passed, rounds, reading
):
    """Rounds of 2.01x +- 1% straddle the bar of 2: timed to the cap (8 x 10 rounds) and
    passed as not measurably below; 1.5x fails and 2.6x passes on the first 10 rounds."""
    monkeypatch.setattr(latency, "bench", fake_bench({"after": speedup}))
    model = sk.load(digits / "model.onnx")
    comparison = compare_before_after(model, model, None, runs=10, speedup_bar=2.0)
    limit = speedup_limit(comparison, 2.0)
    assert (limit.passed, comparison.latency.runs) == (passed, rounds)
    assert limit.measured == pytest.approx(speedup, rel=1e-6)
    assert limit.detail.endswith(f"over {rounds} interleaved rounds: {reading}")


def test_fails_naming_the_limit(cli, tmp_path, digits):
    candidate = _pruned(tmp_path, digits)
    result = cli("check", candidate, "--baseline", digits / "model.onnx",
                 "--data", digits / "test.npz", "--max-drop", "0.01", "--max-size-mb", "100",
                 "--runs", "5")  # fmt: skip
    assert result.code == 3  # a budget missed
    assert "check failed: max-drop" in result.stderr and "max-size-mb" not in result.stderr
    assert "### onnxslim-kd check: FAILED" in result.stdout


def test_without_labels_the_drop_is_top1_disagreement(cli, tmp_path, digits):
    import numpy as np

    unlabeled = tmp_path / "unlabeled.npz"
    np.savez(unlabeled, input=np.load(digits / "test.npz")["input"][:100])
    candidate = _pruned(tmp_path, digits)
    result = cli("check", candidate, "--baseline", digits / "model.onnx", "--data", unlabeled,
                 "--max-drop", "0.01", "--runs", "5", "--json", "-")  # fmt: skip
    limit = json.loads(result.stdout)["limits"][0]
    assert result.code == 3 and limit["detail"] == "1 - top-1 agreement"


def test_bad_input_exits_2(cli, tmp_path, digits):
    result = cli("check", digits / "model.onnx", "--baseline", digits / "model.onnx",
                 "--data", digits / "test.npz", "--max-drop", "2")  # fmt: skip
    assert result.code == 2 and "--max-drop: must be a fraction in [0, 1]" in result.stderr
    result = cli("check", tmp_path / "nope.onnx", "--baseline", digits / "model.onnx",
                 "--data", digits / "test.npz", "--max-drop", "0.01")  # fmt: skip
    assert result.code == 2 and "no such file" in result.stderr
