"""Resumable distillation: an interrupted run resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxslim_kd.data import load_data, random_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from tests.builders import conv_net
from tests.test_distill import _two_threads, damaged  # noqa: F401 (autouse fixture)

torch = pytest.importorskip("torch")

from onnxslim_kd.distill.api import distill  # noqa: E402
from onnxslim_kd.distill.checkpoint import STATE_FILE, TrainCheckpoint  # noqa: E402
from onnxslim_kd.distill.options import DistillOptions  # noqa: E402
from onnxslim_kd.pipeline.checkpoint import Checkpoints  # noqa: E402
from onnxslim_kd.pipeline.runner import compress  # noqa: E402


def _stop_after_epoch(monkeypatch, epoch: int) -> None:
    """Make training raise KeyboardInterrupt (like Ctrl-C) right after saving `epoch`."""
    real_save = TrainCheckpoint.save

    def save_then_stop(self, state):
        real_save(self, state)
        if state["report"]["epochs"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainCheckpoint, "save", save_then_stop)


def _max_diff(a: onnx.ModelProto, b: onnx.ModelProto) -> float:
    """Largest absolute difference between same-named initializers of two models."""
    want = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    assert want.keys() == got.keys()
    return max(float(np.abs(want[name] - got[name]).max()) for name in want)


def test_interrupted_run_resumes_to_the_uninterrupted_weights(digits, tmp_path, monkeypatch):
    teacher = load(digits / "model.onnx")
    student = damaged(teacher)
    train = load_data(digits / "train.npz", teacher, samples=64)
    # shifts draw from torch's global RNG: resuming must restore it, not just the weights
    options = DistillOptions(epochs=3, batch=32, lr=1e-4, augment_shift=2)
    reference, expected = distill(student, [teacher], train, options=options)

    resumable = DistillOptions(**{**vars(options), "checkpoint_dir": str(tmp_path / "kd")})
    _stop_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        distill(student, [teacher], train, options=resumable)
    monkeypatch.undo()
    assert (tmp_path / "kd" / STATE_FILE).is_file()
    resumed, summary = distill(student, [teacher], train, options=resumable)

    assert summary["training"]["resumed_from"] == 2
    assert expected["training"]["resumed_from"] is None
    assert summary["training"]["steps"] == expected["training"]["steps"] == 6
    losses = [[epoch["loss"] for epoch in s["training"]["history"]] for s in (summary, expected)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6) and losses[0][2] < losses[0][0]
    assert _max_diff(reference, resumed) < 1e-6
    assert summary["val_after"] == expected["val_after"]


def test_cli_resumes_a_finished_run_and_refuses_other_options(cli, tmp_path, digits):
    student = save(damaged(load(digits / "model.onnx")), tmp_path / "damaged.onnx")
    state = tmp_path / "state"
    common = ["distill", student, "--teacher", digits / "model.onnx", "--data",
              digits / "train.npz", "--samples", "64", "--epochs", "1", "--batch", "32",
              "--checkpoint-dir", state]  # fmt: skip
    first = cli(*common, "-o", tmp_path / "a.onnx", "--json")
    assert first.code == 0, first.stderr
    again = cli(*common, "-o", tmp_path / "b.onnx")
    assert again.code == 0, again.stderr
    assert "| resumed from checkpoint after epoch | 1" in again.stdout
    assert _max_diff(load(tmp_path / "a.onnx"), load(tmp_path / "b.onnx")) == 0.0
    assert json.loads(first.stdout)["training"]["resumed_from"] is None

    refused = cli(*common, "-o", tmp_path / "c.onnx", "--lr", "0.002")
    assert refused.code == 2
    assert refused.stderr == (
        f"onnxslim-kd: error: distill: the checkpoint in {state} was made with a different lr "
        "(0.001, now 0.002); resume with the same options or use another directory\n"
    )
    other_student = cli(*[digits / "model.onnx" if a == student else a for a in common],
                        "-o", tmp_path / "d.onnx")  # fmt: skip
    assert other_student.code == 2 and "with a different student model;" in other_student.stderr
    assert not (tmp_path / "c.onnx").exists() and not (tmp_path / "d.onnx").exists()


def test_killed_compress_resumes_mid_distill_and_cleans_up(tmp_path, monkeypatch):
    model = conv_net()
    data = random_data(model, batch=64, seed=1)
    recipe = [{"name": "distill", "epochs": 3, "lr": 1e-3}]
    work = tmp_path / "work"
    _stop_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        compress(model, recipe, data=data, bench_runs=0, checkpoints=Checkpoints(work, model, data))
    monkeypatch.undo()
    (stage,) = work.glob("*.d")
    assert (stage / STATE_FILE).is_file()

    result = compress(
        model, recipe, data=data, bench_runs=0, checkpoints=Checkpoints(work, model, data)
    )
    training = result.passes[0]["summary"]["training"]
    assert training["resumed_from"] == 2 and training["epochs"] == 3
    assert not stage.exists()  # the stage is stored, so its scratch state goes
