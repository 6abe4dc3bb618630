"""What a CI log shows: a line per stage and epoch on stderr when it is not a terminal,
JSON lines with --log-format json, nothing with --quiet, repeated warnings grouped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxslim_kd import progress
from onnxslim_kd.graph.save import save
from tests.builders import conv_net

RECIPE = """passes:
  - {name: prune, ratio: 0.5}
  - {name: distill, epochs: 2, lr: 0.001}
  - {name: quantize}
"""


@pytest.fixture
def job(tmp_path):
    pytest.importorskip("torch")
    model = save(conv_net(), tmp_path / "net.onnx")
    data = tmp_path / "data.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((48, 3, 8, 8), np.float32))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    return ["compress", model, "-o", tmp_path / "out.onnx", "--data", data, "--recipe", recipe,
            "--bench-runs", "2", "--json"]  # fmt: skip


def test_a_line_per_stage_and_epoch_on_stderr_when_it_is_not_a_terminal(cli, job):
    result = cli(*job)
    assert result.code == 0, result.stderr
    json.loads(result.stdout)  # stdout holds the JSON record only
    lines = result.stderr.splitlines()
    expected = [
        "onnxslim-kd compress: [1/3] prune ...",
        "onnxslim-kd compress: [1/3] prune done in",
        "onnxslim-kd compress: [2/3] distill ...",
        "onnxslim-kd distill: epoch 1/2 loss",
        "onnxslim-kd distill: epoch 2/2 loss",
        "onnxslim-kd compress: [2/3] distill done in",
        "onnxslim-kd compress: [3/3] quantize ...",
        "onnxslim-kd quantize: calibrated (minmax, ",
        "onnxslim-kd compress: [3/3] quantize done in",
    ]
    found = [next(i for i, line in enumerate(lines) if line.startswith(e)) for e in expected]
    assert found == sorted(found), lines
    epoch = next(line for line in lines if "epoch 1/2" in line)
    assert "held-out" in epoch and "s/epoch" in epoch and "ETA" in epoch


def test_log_format_json_gives_the_same_events_as_json_lines(cli, job):
    result = cli(*job, "--log-format", "json")
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {e["stage"] for e in events} == {"compress", "distill", "quantize"}
    epochs = [e for e in events if "epoch" in e]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["loss"] > 0 for e in epochs)
    done = [e for e in events if e["stage"] == "compress" and "seconds" in e]
    assert [e["pass_name"] for e in done] == ["prune", "distill", "quantize"]


def test_quiet_logs_nothing(cli, job):
    result = cli(*job, "--quiet")
    assert result.code == 0 and result.stderr == ""


def test_repeated_warnings_are_grouped_on_one_line(capsys):
    progress.configure(quiet=False, tty=False)
    try:
        progress.warn("prune", [
            "'conv1': folded 8 mean-compensated inputs into its bias",
            "'conv2': folded 16 mean-compensated inputs into its bias",
            "'conv3': folded 4 mean-compensated inputs into its bias",
            "exclusion 'nope' matches no node",
        ])  # fmt: skip
    finally:
        progress.configure(quiet=True)
    assert capsys.readouterr().err.splitlines() == [
        "onnxslim-kd prune: warning: 'conv1': folded 8 mean-compensated inputs into its bias "
        "(and 2 more like it: 'conv2', 'conv3')",
        "onnxslim-kd prune: warning: exclusion 'nope' matches no node",
    ]


def test_on_a_terminal_events_are_written_above_the_bars(capsys):
    progress.configure(quiet=False, tty=True)
    try:
        assert progress.MODE == "bars"
        progress.report("distill", "epoch 1/3 loss 0.5")
    finally:
        progress.configure(quiet=True)
    assert capsys.readouterr().err == "onnxslim-kd distill: epoch 1/3 loss 0.5\n"
