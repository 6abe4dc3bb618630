"""The command line: outputs, clean JSON, and exit code 2 with one line for bad input."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli.main import COMMANDS
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from tests.builders import conv_net, matmul_net
from tests.conftest import ROOT


def _bad_inputs(tmp_path, digits):
    """Each kind of bad model file the issue lists, keyed by the message expected."""
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("hello\n" * 20)
    truncated = tmp_path / "cut.onnx"
    data = (digits / "model.onnx").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    external = save(load(digits / "model.onnx"), tmp_path / "ext.onnx", external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    old = tmp_path / "old.onnx"
    onnx.save_model(matmul_net(opset=9), str(old))
    return {
        "no such file": tmp_path / "absent.onnx",
        "not an ONNX model": not_onnx,
        "truncated": truncated,
        "external data file 'ext.onnx.data'": external,
        "unsupported opset 9": old,
    }


@pytest.mark.parametrize(
    "message",
    [
        "no such file",
        "not an ONNX model",
        "truncated",
        "external data file 'ext.onnx.data'",
        "unsupported opset 9",
    ],
)
def test_bad_model_exits_2_with_one_line_and_writes_nothing(cli, tmp_path, digits, message):
    bad = _bad_inputs(tmp_path, digits)[message]
    out = tmp_path / "out.onnx"
    for args in (["inspect", bad], ["compress", bad, "-o", out], ["bench", bad, "--runs", "1"]):
        result = cli(*args)
        assert result.code == 2, result.stderr
        assert message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not out.exists()


def test_data_that_does_not_match_the_model(cli, tmp_path, digits):
    data = tmp_path / "wrong.npz"
    np.savez(data, input=np.zeros((4, 1, 28, 28), np.float32))
    out = tmp_path / "out.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out, "--data", data)
    assert result.code == 2
    assert "input 'input' axis 2 is 28, expected float32 [batch,1,32,32]" in result.stderr
    assert not out.exists()


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("inspect", tmp_path / "absent.onnx", "--debug")
    assert result.code == 2 and "Traceback" in result.stderr


def test_usage_error_exits_2(cli):
    result = cli("bench")
    assert result.code == 2 and "the following arguments are required" in result.stderr


def test_inspect_json_is_clean(cli, digits):
    result = cli("inspect", digits / "model.onnx", "--json")
    record = json.loads(result.stdout)
    assert record["params"] == 694_922
    assert record["opset"] == 17
    assert record["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": ["batch", 1, 32, 32]}
    ]
    assert {"macs", "size_bytes", "nodes", "op_counts", "outputs"} <= set(record)
    assert record["op_counts"]["Conv"] == 15


def test_bench_two_models_interleaved(cli, tmp_path, digits):
    model = tmp_path / "m.onnx"
    save(conv_net(), model)
    report = tmp_path / "bench.json"
    result = cli("bench", model, model, "--runs", "20", "--warmup", "2", f"--json={report}",
                 "--threads", "1", "--batch", "4")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(report.read_text())
    assert record["interleaved"] is True
    first, second = record["models"]
    assert second["speedup"] == pytest.approx(first["p50_ms"] / second["p50_ms"], rel=1e-2)
    assert first["batch"] == 4 and first["runs"] == 20
    assert record["environment"]["threads"] == 1
    low, high = second["speedup_interval"]
    assert low <= high and "speedup_interval" not in first
    # the table prints the unrounded interval to 2 places, the JSON keeps 3: equal within both
    shown = re.search(r"\| (\d+\.\d\d)-(\d+\.\d\d)x \|", result.stdout)
    assert shown, result.stdout
    assert [float(v) for v in shown.groups()] == pytest.approx([low, high], abs=0.0051)
    assert "speed-up = ratio of medians, 95% = interval" in result.stdout


def test_compare_agreement_and_sqnr(cli, tmp_path, digits):
    model = load(digits / "model.onnx")
    noisy = onnx.ModelProto()
    noisy.CopyFrom(model)
    fc = next(t for t in noisy.graph.initializer if len(t.dims) == 2)
    weights = onnx.numpy_helper.to_array(fc) * 1.1
    fc.CopyFrom(onnx.numpy_helper.from_array(weights.astype(np.float32), fc.name))
    save(noisy, tmp_path / "noisy.onnx")
    result = cli("compare", digits / "model.onnx", tmp_path / "noisy.onnx",
                 "--data", digits / "test.npz", "--json", "-")  # fmt: skip
    assert result.code == 0, result.stderr
    entry = json.loads(result.stdout)["outputs"]["logits"]
    test = np.load(digits / "test.npz")
    ref, cand = (
        ort.InferenceSession(str(path)).run(None, {"input": test["input"]})[0].astype(np.float64)
        for path in (digits / "model.onnx", tmp_path / "noisy.onnx")
    )
    expected_sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2))
    assert entry["sqnr_db"] == pytest.approx(expected_sqnr, rel=1e-4)
    assert entry["top1_agreement"] == pytest.approx(np.mean(ref.argmax(1) == cand.argmax(1)))
    assert entry["accuracy_reference"] == pytest.approx(np.mean(ref.argmax(1) == test["labels"]))
    assert entry["max_abs_diff"] == pytest.approx(np.abs(ref - cand).max(), rel=1e-5)


def test_help_shows_examples(cli):
    for command in ("inspect", "bench", "compare", "compress"):
        result = cli(command, "--help")
        assert result.code == 0 and "examples:" in result.stdout


@pytest.mark.parametrize("command", [[], *[[c.__name__.rsplit(".", 1)[1]] for c in COMMANDS]])
def test_help_examples_keep_their_line_continuations(cli, command):
    """An example continued on the next line ends with a backslash, as a shell needs."""
    text = cli(*command, "--help").stdout
    examples = text[text.index("examples:") :] if "examples:" in text else ""
    lines = examples.splitlines()
    for line, following in itertools.pairwise(lines):
        if following.startswith("      ") and following.strip().startswith("--"):
            assert line.endswith("\\"), line
    assert "       --" not in "\n".join(line for line in lines if "onnxslim-kd " in line)


def test_version(cli):
    import onnxslim_kd

    result = cli("--version")
    assert result.code == 0 and result.stdout == f"onnxslim-kd {onnxslim_kd.__version__}\n"


def test_python_dash_m_entry_point(digits):
    result = subprocess.run(
        [sys.executable, "-m", "onnxslim_kd", "inspect", str(digits / "model.onnx"), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["nodes"] == 37


def test_bench_profile_breaks_time_down_by_op_type(cli, tmp_path, digits):
    report = tmp_path / "bench.json"
    result = cli("bench", digits / "model.onnx", "--runs", "5", "--warmup", "1", "--profile",
                 f"--json={report}")  # fmt: skip
    assert result.code == 0, result.stderr
    profile = json.loads(report.read_text())["profile"]["model.onnx"]
    assert profile["runs"] == 5  # --runs honoured, the --warmup run left out
    ops = profile["ops"]
    assert next(iter(ops)) == "Conv"  # the digits CNN spends its time in convolutions
    assert sum(entry["share"] for entry in ops.values()) == pytest.approx(1.0, abs=0.01)
    total = sum(entry["ms_per_run"] for entry in ops.values())  # reconciled with the runs
    assert total == pytest.approx(profile["run_ms"], rel=0.01)
    assert "op type (ms/run, share)" in result.stdout and "profiled run (median)" in result.stdout


def test_inspect_per_node_prints_the_macs_of_every_node(cli, digits):
    plain = cli("inspect", digits / "model.onnx").stdout
    detailed = cli("inspect", digits / "model.onnx", "--per-node").stdout
    header = re.compile(r"\| node +\| MACs +\| share")
    assert not header.search(plain) and header.search(detailed)
    stats = json.loads(cli("inspect", digits / "model.onnx", "--per-node", "--json").stdout)
    heaviest = max(stats["macs_per_node"], key=stats["macs_per_node"].get)
    assert f"| {heaviest} " in detailed


def test_a_ratio_below_one_reads_slower():
    from onnxslim_kd.report.comparison import speed_change

    assert speed_change(1.85) == "1.85x faster" and speed_change(0.98) == "1.02x slower"


def test_the_readme_command_reference_is_what_help_prints():
    result = subprocess.run(
        [sys.executable, "scripts/cli_reference.py", "--check"], cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, "README.md is stale: run python scripts/cli_reference.py"


def test_help_needs_neither_onnx_nor_numpy():
    """--help answers at once (0.1 s here, 1.1-2.1 s when it imported onnx): building every
    parser imports nothing heavy; the command's own work loads only when it runs."""
    heavy = "('onnx', 'onnxruntime', 'numpy', 'torch')"
    probe = ("import sys; from cli.main import build_parser; build_parser(); "
             f"print(sorted(m for m in {heavy} if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_the_help_choices_are_the_registries_they_select_from():
    from onnxslim_kd import defaults
    from onnxslim_kd.decompose.candidates import METHODS as decompositions
    from onnxslim_kd.prune.importance import CRITERIA
    from onnxslim_kd.quantize.calibration import METHODS as calibrations

    assert set(defaults.PRUNE_CRITERIA) == set(CRITERIA)
    assert set(defaults.DECOMPOSE_METHODS) == set(decompositions)
    assert set(defaults.CALIBRATION_METHODS) == {*calibrations, "auto"}
