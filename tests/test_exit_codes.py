"""The exit-code contract (cli/exit_codes.py), one test per code, and the README's table."""

from __future__ import annotations

import numpy as np
import pytest

import cli.exit_codes as codes
from onnxslim_kd.graph.save import save
from tests.builders import conv_net
from tests.conftest import ROOT


@pytest.fixture
def net(tmp_path):
    model = save(conv_net(), tmp_path / "net.onnx")
    data = tmp_path / "data.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((40, 3, 8, 8), np.float32))
    return model, data


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_readme_documents_the_table_of_cli_exit_codes():
    table = [line for line in codes.__doc__.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(table) in readme


def test_2_bad_input_writes_nothing(cli, tmp_path):
    result = cli("quantize", tmp_path / "missing.onnx", "-o", tmp_path / "q.onnx", "--data", "x")
    assert result.code == codes.BAD_INPUT and result.stderr.startswith("onnxslim-kd: error:")
    assert list(tmp_path.iterdir()) == []


def test_4_target_missed_within_budget_and_0_with_best_effort(cli, tmp_path, net):
    pytest.importorskip("torch")
    model, data = net
    line = ["compress", model, "-o", tmp_path / "c.onnx", "--data", data, "--target-speedup",
            "50", "--max-trials", "0", "--distill-epochs", "1", "--bench-runs", "5",
            "--max-drop", "1"]  # fmt: skip
    missed = cli(*line)
    assert missed.code == codes.TARGET_MISSED, missed.stderr
    assert "target 50x not reached within the budget" in missed.stderr
    assert (tmp_path / "c.onnx").exists()  # the closest result is saved
    assert cli(*line, "--best-effort").code == codes.OK


def test_3_and_4_from_check_limits(cli, net):
    model, data = net
    size = cli("check", model, "--baseline", model, "--data", data, "--max-size-mb", "0.0001",
               "--runs", "3")  # fmt: skip
    assert size.code == codes.BUDGET_MISSED and "check failed: max-size-mb" in size.stderr
    speed = cli("check", model, "--baseline", model, "--data", data, "--min-speedup", "100",
                "--runs", "3")  # fmt: skip
    assert speed.code == codes.TARGET_MISSED and "check failed: min-speedup" in speed.stderr


def test_130_interrupt_prints_the_command_that_resumes(cli, tmp_path, net, monkeypatch):
    from onnxslim_kd.pipeline import runner

    model, data = net
    real = runner._run_pass

    def interrupted_second(step, *args):
        if step.name == "quantize":
            raise KeyboardInterrupt
        return real(step, *args)

    monkeypatch.setattr(runner, "_run_pass", interrupted_second)
    recipe = _recipe(tmp_path, "passes: [canonicalize, quantize]\n")
    out = tmp_path / "c.onnx"
    result = cli("compress", model, "-o", out, "--data", data, "--recipe", recipe)
    assert result.code == codes.INTERRUPTED
    assert f"interrupted; resume with: onnxslim-kd compress {model}" in result.stderr
    assert not out.exists()
    monkeypatch.setattr(runner, "_run_pass", real)
    resumed = cli("compress", model, "-o", out, "--data", data, "--recipe", recipe)
    assert resumed.code == codes.OK and "canonicalize done in 0.0 s (resumed)" in resumed.stderr


def test_1_internal_error_is_one_line(cli, tmp_path, net, monkeypatch):
    from onnxslim_kd.pipeline import runner

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "_run_pass", broken)
    model, data = net
    result = cli("compress", model, "-o", tmp_path / "c.onnx", "--data", data, "--recipe",
                 _recipe(tmp_path, "passes: [canonicalize]\n"))  # fmt: skip
    assert result.code == codes.INTERNAL_ERROR
    assert (
        result.stderr.strip().splitlines()[-1] == "onnxslim-kd: internal error: RuntimeError: boom"
    )
