"""The user's files are never touched and bad arguments are refused before any work.

Each case is a command line from the safety issue, run as written, on copies of the
digits sample: exit 2, one stderr line, every input byte-identical, nothing new on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxslim_kd.graph.save import save
from tests.builders import conv_net


@pytest.fixture
def ws(tmp_path, digits) -> Path:
    """m.onnx, a.onnx, b.onnx (copies of the digits model), calib.npz, test.npz, a folder."""
    for name in ("m.onnx", "a.onnx", "b.onnx", "x.onnx"):
        shutil.copy(digits / "model.onnx", tmp_path / name)
    for name in ("calib.npz", "test.npz"):
        shutil.copy(digits / name, tmp_path / name)
    (tmp_path / "existing").mkdir()
    return tmp_path


def _state(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def _in(ws: Path, arg: str) -> str:
    """A workspace path for every file-like argument, also in `--opt=FILE` form."""
    option, eq, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    if value.startswith("/") or not ((ws / value).exists() or re.search(r"\.[a-z]+$", value)):
        return arg
    return f"{option}{eq}{ws / value}"


def _refused(cli, ws: Path, line: str, message: str) -> None:
    """Run `line` (paths relative to the workspace) and assert a clean refusal."""
    before = _state(ws)
    args = [_in(ws, a) for a in line.split()]
    result = cli(*args)
    assert result.code == 2, (line, result.stderr)
    assert message in result.stderr, (line, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert _state(ws) == before, line


@pytest.mark.parametrize("line, message", [
    ("inspect m.onnx --json=m.onnx", "--json"),
    ("bench m.onnx --markdown m.onnx", "--markdown"),
    ("prune m.onnx -o p.onnx --plan-out m.onnx", "--plan-out"),
    ("compare m.onnx x.onnx --data test.npz --json=m.onnx", "--json"),
    ("compress m.onnx -o c.onnx --html m.onnx", "--html"),
    ("quantize m.onnx -o calib.npz --data calib.npz", "-o"),
    ("distill m.onnx -o d.onnx --teacher a.onnx --data calib.npz --json=a.onnx", "--json"),
])  # fmt: skip
def test_a_report_or_model_never_overwrites_an_input(cli, ws, line, message):
    _refused(cli, ws, line, f"{message} ")
    _refused(cli, ws, line, "refusing to overwrite it")


def test_a_model_never_replaces_a_data_file_that_is_not_an_input(cli, ws):
    _refused(cli, ws, "prune m.onnx -o test.npz", "an existing data file; refusing to replace")


def test_a_report_never_replaces_a_model_that_is_not_an_input(cli, ws):
    _refused(cli, ws, "inspect m.onnx --json=x.onnx", "an existing model file")


def test_links_to_an_input_are_the_input(cli, ws):
    (ws / "soft.json").symlink_to(ws / "m.onnx")
    (ws / "hard.json").hardlink_to(ws / "m.onnx")
    _refused(cli, ws, "inspect m.onnx --json=soft.json", "is the input")
    _refused(cli, ws, "inspect m.onnx --json=hard.json", "is the input")


def test_bare_json_never_takes_the_next_model_as_its_file(cli, ws):
    before = _state(ws)
    result = cli("bench", "--json", ws / "a.onnx", ws / "b.onnx", "--runs", "2", "--warmup", "0")
    assert result.code == 0, result.stderr
    assert [m["label"] for m in json.loads(result.stdout)["models"]] == ["a.onnx", "b.onnx"]
    assert _state(ws) == before


def test_json_with_a_space_and_a_file_is_refused_with_a_hint(cli, ws):
    _refused(cli, ws, "inspect m.onnx --json out.json", "--json=FILE")


def test_json_equals_file_writes_the_file(cli, ws):
    result = cli("inspect", ws / "m.onnx", f"--json={ws / 'stats.json'}")
    assert result.code == 0 and json.loads((ws / "stats.json").read_text())["params"] > 0
    assert not list(ws.glob(".stats.json.*"))  # the atomic write left no temporary file


@pytest.mark.parametrize("line, message", [
    ("quantize m.onnx -o q.onnx --data calib.npz --json=/nodir/q.json", "/nodir does not exist"),
    ("compress m.onnx -o c.onnx --html /nodir/r.html", "/nodir does not exist"),
    ("compress m.onnx -o c.onnx --markdown /nodir/r.md", "/nodir does not exist"),
    ("bench m.onnx --markdown /nodir/b.md", "/nodir does not exist"),
    ("prune m.onnx -o existing", "is a directory"),
    ("compress m.onnx -o existing", "is a directory"),
    ("compress m.onnx -o c.onnx --bench-batch -2", "--bench-batch: must be an integer >= 1"),
    ("compress m.onnx -o /missing/dir/x.onnx", "/missing/dir does not exist"),
    ("prune m.onnx -o /missing/dir/x.onnx", "/missing/dir does not exist"),
    ("decompose m.onnx -o /missing/dir/x.onnx", "/missing/dir does not exist"),
    ("distill m.onnx -o d.onnx --teacher a.onnx --data calib.npz --checkpoint-dir m.onnx",
     "is the input"),
])  # fmt: skip
def test_what_would_fail_late_is_refused_before_any_work(cli, ws, line, message):
    _refused(cli, ws, line, message)
    assert not list(ws.glob("*.work"))


def test_a_refused_compress_leaves_no_work_directory(cli, ws):
    spatial = conv_net()
    spatial.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    )
    save(spatial, ws / "dyn.onnx")
    bad = ws / "bad.npz"
    np.savez(bad, input=np.zeros((4, 3, 8, 8), np.float64))  # float64 for a float32 input
    _refused(cli, ws, "compress dyn.onnx -o out.onnx --data bad.npz", "bad.npz")
    _refused(cli, ws, "compress dyn.onnx -o out.onnx", "dynamic axis 2")  # refused in the pipeline


@pytest.mark.parametrize("line, message", [
    ("inspect m.onnx --shape input=1x3x64x64",
     "axis 1 of input 'input' [batch,1,32,32] is fixed at 1"),
    ("inspect m.onnx --shape input=1x1x32", "has rank 3; input 'input' [batch,1,32,32] has rank 4"),
    ("inspect m.onnx --batch -3", "--batch: must be an integer >= 1, got '-3'"),
    ("inspect m.onnx --batch 0", "--batch: must be an integer >= 1, got '0'"),
    ("bench m.onnx --threads 0", "--threads: must be an integer >= 1, got '0'"),
    ("quantize m.onnx -o q.onnx --data calib.npz --threads 0",
     "--threads: must be an integer >= 1"),
    ("check m.onnx --baseline a.onnx --data test.npz --max-drop 0.01 --threads 0",
     "--threads: must be an integer >= 1"),
    ("compress m.onnx -o c.onnx --threads 0", "--threads: must be an integer >= 1"),
    ("compress m.onnx -o c.onnx --bench-batch 0", "--bench-batch: must be an integer >= 1"),
    ("check m.onnx --baseline a.onnx --data test.npz --min-speedup -1",
     "--min-speedup: must be a number > 0"),
    ("check m.onnx --baseline a.onnx --data test.npz", "check needs at least one limit"),
])  # fmt: skip
def test_nonsense_values_are_refused(cli, ws, line, message):
    _refused(cli, ws, line, message)


@pytest.mark.parametrize("line", [
    "quantize m.onnx -o q.onnx --data calib.npz --max-drop 5",
    "compress m.onnx -o c.onnx --max-drop 5",
    "check m.onnx --baseline a.onnx --data test.npz --max-drop 5",
])  # fmt: skip
def test_max_drop_has_one_range_and_one_wording_everywhere(cli, ws, line):
    _refused(cli, ws, line, "--max-drop: must be a fraction in [0, 1] (0.01 = one point), got 5")


def test_a_text_file_named_npz_is_not_an_archive_and_gets_no_unsafe_advice(cli, ws):
    (ws / "notes.npz").write_text("hello\n")
    line = "quantize m.onnx -o q.onnx --data notes.npz"
    _refused(cli, ws, line, "not an .npz archive")
    result = cli("quantize", ws / "m.onnx", "-o", ws / "q.onnx", "--data", ws / "notes.npz")
    assert "allow_pickle" not in result.stderr and "trust" not in result.stderr
