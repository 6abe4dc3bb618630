"""The speed gate decides on a 95% interval of the paired speed-up, timed until decided."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxslim_kd.bench import latency
from onnxslim_kd.bench.latency import BenchResult, Latency, bench_until_decided, median_interval
from onnxslim_kd.data import load_data
from onnxslim_kd.defaults import MAX_ROUNDS_FACTOR, SESSION_MARGIN
from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from tests.timings import fake_bench


@pytest.fixture(scope="module")
def digits_model(digits):
    return load(digits / "model.onnx")


@pytest.fixture(scope="module")
def calib(digits, digits_model):
    return load_data(digits / "calib.npz", digits_model, samples=32)


def test_the_median_interval_is_the_sign_tests_order_statistics():
    assert median_interval([float(v) for v in range(1, 31)]) == (9.0, 21.0)  # n=30: 9th, 21st
    assert median_interval([float(v) for v in range(1, 241)]) == (104.0, 136.0)
    assert median_interval([2.0, 1.0, 3.0]) == (1.0, 3.0)  # too few: the whole range


def test_the_interval_covers_the_median_of_noisy_ratios_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [
        low <= 1.0 <= high
        for low, high in (median_interval(list(rng.lognormal(0.0, 0.1, 30))) for _ in range(2000))
    ]
    assert 0.93 <= np.mean(covered) <= 0.99


def _result(fp32: list[float], int8: list[float]) -> BenchResult:
    latencies = latency.compare_to_first([Latency("fp32", 1, fp32), Latency("int8", 1, int8)])
    return BenchResult(latencies, {}, len(fp32), 0)


def test_a_verdict_is_faster_slower_or_tie_by_the_interval_not_the_point():
    faster = _result([1.0] * 30, [0.8, 0.82] * 15).latencies[1]
    slower = _result([1.0] * 30, [1.2, 1.25] * 15).latencies[1]
    even = _result([1.0] * 30, [0.9, 1.08] * 15).latencies[1]  # median ratio above 1
    assert (faster.verdict(), slower.verdict(), even.verdict()) == ("faster", "slower", "tie")
    assert even.speedup > 1.0 and even.interval[0] < 1.0 < even.interval[1]
    assert even.as_dict()["speedup_interval"] == [round(v, 3) for v in even.interval]
    assert "speedup_interval" not in _result([1.0] * 4, [1.0] * 4).latencies[0].as_dict()


def test_a_margin_makes_a_small_but_certain_gain_a_tie():
    slight = _result([1.0] * 30, [0.99, 0.985] * 15).latencies[1]  # 1.010-1.015x every round
    assert slight.verdict() == "faster"
    assert slight.verdict(SESSION_MARGIN) == "tie"
    assert _result([1.0] * 30, [1.01] * 30).latencies[1].verdict(SESSION_MARGIN) == "tie"


def test_quantize_does_not_keep_int8_within_the_session_margin(digits_model, calib, monkeypatch):
    monkeypatch.setattr(latency, "bench", fake_bench({"static": 1.01}, jitter=0.001))
    _, summary = quantize_model(digits_model, calib, QuantizeOptions(samples=16, bench_runs=10))
    assert summary.result == "fp32 (int8 not faster)" and summary.latency["verdict"] == "tie"
    low, high = summary.latency["models"][1]["speedup_interval"]
    assert 1.0 < low <= high < 1.0 + SESSION_MARGIN


class _Clock:
    """A fake perf_counter and sessions: each run takes 1 ms, the first of a round 2 ms."""

    def __init__(self, count: int) -> None:
        self.now, self.calls, self.count, self.order = 0.0, 0, count, []

    def perf_counter(self) -> float:
        return self.now

    def session(self, label):
        clock = self

        class Session:
            def run(self, outputs, feeds):
                first = clock.calls % clock.count == 0
                clock.calls += 1
                clock.order.append(label)
                clock.now += 0.002 if first else 0.001

        return Session()


@pytest.mark.parametrize("rotate", [True, False])
def test_rotation_spreads_a_position_cost_over_every_model(monkeypatch, rotate):
    clock = _Clock(3)
    labels = iter("abc")
    monkeypatch.setattr(latency, "make_session", lambda model, **_: clock.session(next(labels)))
    monkeypatch.setattr(latency.time, "perf_counter", clock.perf_counter)
    models = [(label, None, {"x": np.zeros((1, 1))}) for label in "abc"]
    result = latency.bench(models, runs=6, warmup=0, rotate=rotate)
    rounds = [clock.order[i : i + 3] for i in range(0, 18, 3)]
    if rotate:
        assert rounds[:3] == [list("abc"), list("bca"), list("cab")]
        assert [sum(lat.times_ms) for lat in result.latencies] == pytest.approx([8.0] * 3)
        assert result.environment["order"] == "rotated"
    else:
        assert rounds == [list("abc")] * 6
        assert [lat.speedup for lat in result.latencies] == pytest.approx([1.0, 2.0, 2.0])


def test_rounds_are_added_while_it_is_a_tie_up_to_the_cap(monkeypatch):
    calls = []

    def counted(speedup):
        def fake(models, **kwargs):
            calls.append(kwargs["runs"])
            return fake_bench({"int8": speedup}, jitter=0.05)(models, **kwargs)

        return fake

    models = [("fp32", None, {}), ("int8", None, {})]
    monkeypatch.setattr(latency, "bench", counted(1.0))
    tie = bench_until_decided(models, runs=30, max_runs=100)
    assert calls == [30, 30, 30, 10] and tie.runs == 100 == len(tie.latencies[1].times_ms)
    assert tie.latencies[1].verdict() == "tie"
    calls.clear()
    monkeypatch.setattr(latency, "bench", counted(1.5))
    assert bench_until_decided(models, runs=30, max_runs=100).latencies[1].verdict() == "faster"
    assert calls == [30]


def test_quantize_keeps_int8_only_when_measurably_faster(digits_model, calib, monkeypatch):
    options = QuantizeOptions(samples=16, bench_runs=10)
    monkeypatch.setattr(latency, "bench", fake_bench({"static": 1.5}))
    _, summary = quantize_model(digits_model, calib, options)
    assert summary.result == "int8" and summary.latency["verdict"] == "faster"
    assert summary.latency["runs"] == 10 and summary.schemes["static"]["speedup"] == 1.5
    assert not any("FP32 on this CPU" in w for w in summary.warnings)

    monkeypatch.setattr(latency, "bench", fake_bench({"static": 1.0}, jitter=0.05))
    model, summary = quantize_model(digits_model, calib, options)
    assert summary.result == "fp32 (int8 not faster)" and summary.latency["verdict"] == "tie"
    assert summary.latency["runs"] == 10 * MAX_ROUNDS_FACTOR
    warning = next(w for w in summary.warnings if "FP32 on this CPU" in w)
    assert warning.startswith(
        "INT8 is not measurably faster than FP32 on this CPU (1.00x, per-round speed-up "
        "0.95-1.05x at 95% over 80 interleaved rounds)"
    )
    assert warning.endswith("wrote the FP32 model (--force-int8 keeps INT8)")
    assert model.SerializeToString() == digits_model.SerializeToString()


@pytest.mark.parametrize(
    ("speedup", "how"), [(0.8, "slower than"), (1.0, "not measurably faster than")]
)
def test_force_int8_keeps_int8_that_is_not_faster_and_says_so(digits_model, calib, monkeypatch,
                                                             speedup, how):  # fmt: skip
    monkeypatch.setattr(latency, "bench", fake_bench({}, jitter=0.05, others=speedup))
    options = QuantizeOptions(samples=16, bench_runs=10, force_int8=True)
    quantized, summary = quantize_model(digits_model, calib, options)
    assert summary.result == "int8"
    assert any(w.startswith(f"INT8 is {how} FP32") and w.endswith("kept because of --force-int8")
               for w in summary.warnings)  # fmt: skip
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


def _quantize_digits(cli, tmp_path, digits, monkeypatch, speedup: float):
    """`onnxslim-kd quantize` on digits with INT8 timed at `speedup`: the result, the JSON."""
    monkeypatch.setattr(latency, "bench", fake_bench({}, others=speedup))
    report = tmp_path / "q.json"
    result = cli("quantize", digits / "model.onnx", "-o", tmp_path / "q.onnx", "--data",
                 digits / "calib.npz", "--samples", "16", "--bench-runs", "10",
                 f"--json={report}")  # fmt: skip
    return result, json.loads(report.read_text())


def test_the_cli_table_and_json_give_the_interval_and_the_verdict(cli, tmp_path, digits,
                                                                 monkeypatch):  # fmt: skip
    result, record = _quantize_digits(cli, tmp_path, digits, monkeypatch, 1.5)
    assert result.code == 0, result.stderr
    assert (
        "(1.50x, per-round speed-up 1.49-1.51x at 95% over 10 interleaved rounds: faster)"
        in result.stdout
    )
    timing = record["latency"]
    assert timing["verdict"] == "faster" and timing["models"][1]["speedup_interval"] == [
        1.485,
        1.515,
    ]
    assert record["fidelity_of"] == "int8"
    assert "| 'logits' vs FP32 " in result.stdout


def test_when_fp32_is_written_the_fidelity_is_labelled_the_int8_candidates(
    cli, tmp_path, digits, monkeypatch
):
    """The gate refused INT8, so the SQNR and accuracy shown are of a model not written."""
    result, record = _quantize_digits(cli, tmp_path, digits, monkeypatch, 0.8)
    assert result.code == 3, result.stderr
    assert (record["result"], record["fidelity_of"]) == (
        "fp32 (int8 not faster)", "int8 candidate (not written)"
    )  # fmt: skip
    assert "| INT8 candidate 'logits' vs FP32 " in result.stdout
    assert "| 'logits' vs FP32 " not in result.stdout
