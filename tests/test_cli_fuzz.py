"""A seeded fuzz over every command: inputs are never touched, bad input is refused early.

Command lines are generated from each command's options with values drawn from valid,
boundary and invalid ones, and paths drawn from the command's own inputs, missing
paths, directories, text files posing as models or data, and fresh outputs. For every
run: the exit code is 0, 2, 3 or 4 (see cli/exit_codes.py: 1 is an internal failure, a
bug); exit 2 prints one stderr line; no traceback; every input file is byte-identical
afterwards; and after exit 2 nothing new is on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from onnxslim_kd.graph.save import save
from tests.builders import conv_net

#: Generated command lines per run of the test, and the seed that makes them.
CASES = 3000
SEED = 20261201
#: Share of draws that take a valid value when a role has valid and invalid ones.
VALID_SHARE = 0.85

INT_POSITIVE = (["1", "2"], ["0", "-1", "x", "1.5", ""])
INT_NON_NEGATIVE = (["0", "1"], ["-1", "-2", "y", "0.5"])
FRACTION = (["0.5", "0.3", "1"], ["0", "-0.1", "1.5", "nan", "inf", "a"])
RATIO = (["0", "0.25", "0.5"], ["1", "-0.1", "2", "nan", "x"])
MAX_DROP = (["0", "0.01", "1"], ["5", "-0.01", "1.01", "nan", "p"])
POSITIVE_FLOAT = (["0.5", "2"], ["0", "-1", "inf", "nan", "q"])


class Workspace:
    """A folder of inputs (model, data, recipe, plan) and the decoys a user may mistype."""

    def __init__(self, root: Path) -> None:
        self.root = root
        rng = np.random.default_rng(0)
        model = conv_net()
        self.model = save(model, root / "model.onnx")
        self.model2 = save(model, root / "model2.onnx")
        self.data = root / "data.npz"
        np.savez(
            self.data,
            input=rng.standard_normal((24, 3, 8, 8)).astype(np.float32),
            labels=rng.integers(0, 5, 24),
        )
        self.recipe = root / "recipe.yaml"
        self.recipe.write_text("passes:\n  - canonicalize\n")
        self.not_onnx = root / "notes.onnx"
        self.not_onnx.write_text("not a model\n")
        self.not_npz = root / "notes.npz"
        self.not_npz.write_text("not an archive\n")
        self.folder = root / "folder"
        self.folder.mkdir()
        self.link = root / "link.onnx"
        self.link.symlink_to(self.model)
        self.inputs = [self.model, self.model2, self.data, self.recipe, self.not_onnx, self.not_npz]
        self.counter = 0

    def fresh(self, suffix: str) -> str:
        self.counter += 1
        return str(self.root / f"out{self.counter}{suffix}")

    def model_paths(self) -> tuple[list[str], list[str]]:
        bad = [self.not_onnx, self.data, self.folder, self.root / "missing.onnx"]
        return [str(self.model)], [str(p) for p in bad]

    def data_paths(self) -> tuple[list[str], list[str]]:
        bad = [self.not_npz, self.model, self.folder, self.root / "missing.npz"]
        return [str(self.data)], [str(p) for p in bad]

    def output_paths(self, suffix: str) -> tuple[list[str], list[str]]:
        """A fresh file, or one that must be refused: an input, a link to one, a folder,
        a file in a missing folder."""
        bad = [self.model, self.link, self.data, self.recipe, self.folder,
               self.root / "nodir" / f"x{suffix}"]  # fmt: skip
        return [self.fresh(suffix)], [str(p) for p in bad]

    def snapshot(self) -> set[Path]:
        return set(self.root.rglob("*"))

    def digests(self) -> dict[Path, str]:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.inputs}

    def clean(self, before: set[Path]) -> None:
        """Remove what a successful run wrote, so every case starts from the same folder."""
        for path in sorted(self.snapshot() - before, key=lambda p: -len(p.parts)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def pick(rng: random.Random, choices: tuple[list[str], list[str]]) -> str:
    valid, invalid = choices
    pool = valid if (rng.random() < VALID_SHARE or not invalid) else invalid
    return rng.choice(pool)


def json_option(rng: random.Random, ws: Workspace) -> list[str]:
    """Bare --json (stdout), --json=FILE, or --json followed by an input (never a file)."""
    kind = rng.choice(["stdout", "file", "file", "input", "space"])
    if kind == "stdout":
        return ["--json"]
    if kind == "file":
        return [f"--json={pick(rng, ws.output_paths('.json'))}"]
    if kind == "input":
        return [f"--json={rng.choice([ws.model, ws.data, ws.link])}"]
    return ["--json", str(ws.model2)]  # must not swallow model2 as its FILE


def command_line(rng: random.Random, ws: Workspace, command: str) -> list[str]:
    """One generated command line: required parts, then each optional option at random."""
    model = lambda: pick(rng, ws.model_paths())  # noqa: E731
    data = lambda: pick(rng, ws.data_paths())  # noqa: E731
    out = lambda suffix=".onnx": pick(rng, ws.output_paths(suffix))  # noqa: E731
    # (required arguments, fixed cheap settings a draw may override, optional options)
    specs: dict[str, tuple[list[str], list[str], dict]] = {
        "inspect": ([model()], [], {
            "--batch": INT_POSITIVE, "--shape": (["input=2x3x8x8"], ["input=1x3x9x8",
            "input=1x3x8", "nope=1x3x8x8", "input=0x3x8x8", "input=axb"]),
            "--per-node": None}),
        "bench": ([model(), model()], ["--runs", "2", "--warmup", "0"], {
            "--batch": INT_POSITIVE, "--threads": INT_POSITIVE, "--runs": INT_POSITIVE,
            "--warmup": INT_NON_NEGATIVE, "--data": "data", "--markdown": "md",
            "--samples": INT_POSITIVE}),
        "compare": ([model(), model(), "--data", data()], [], {
            "--batch": INT_POSITIVE, "--samples": INT_POSITIVE, "--markdown": "md"}),
        "prune": ([model(), "-o", out()], [], {
            "--ratio": RATIO, "--target-macs": FRACTION, "--max-ratio": RATIO,
            "--round-to": INT_POSITIVE, "--criterion": (["l1", "fpgm"], ["nope"]),
            "--data": "data", "--plan-out": "plan", "--downsample": INT_POSITIVE,
            "--samples": INT_POSITIVE}),
        "decompose": ([model(), "-o", out()], [], {
            "--energy": FRACTION, "--rank-ratio": FRACTION, "--target-macs": FRACTION,
            "--method": (["svd", "auto"], ["qr"])}),
        "quantize": ([model(), "-o", out(), "--data", data()], ["--bench-runs", "0"], {
            "--max-drop": MAX_DROP, "--eval-data": "data", "--threads": INT_POSITIVE,
            "--bench-runs": (["0", "1"], ["-1", "z"]), "--samples": INT_POSITIVE,
            "--per-tensor": None, "--method": (["minmax"], ["best"])}),
        "distill": ([model(), "-o", out(), "--teacher", model(), "--data", data()],
                    ["--epochs", "1", "--batch", "8"], {
            "--epochs": INT_POSITIVE, "--batch": (["8"], ["0", "-4"]), "--lr": POSITIVE_FLOAT,
            "--alpha": (["0", "1"], ["2", "-1"]), "--temperature": POSITIVE_FLOAT,
            "--patience": INT_POSITIVE, "--augment-shift": INT_NON_NEGATIVE,
            "--checkpoint-dir": "dir", "--eval-data": "data", "--samples": INT_POSITIVE}),
        "compress": ([model(), "-o", out()], ["--bench-runs", "0", "--distill-epochs", "1",
                     "--max-trials", "1"], {
            "--data": "data", "--eval-data": "data", "--max-drop": MAX_DROP,
            "--recipe": (["recipe"], ["model", "missing"]), "--threads": INT_POSITIVE,
            "--bench-batch": INT_POSITIVE, "--bench-runs": (["0", "2"], ["-1"]),
            "--target-speedup": (["1.5"], ["1", "0.5", "-2"]), "--html": "html",
            "--markdown": "md", "--work-dir": "dir", "--distill-epochs": INT_POSITIVE}),
        "check": ([model(), "--baseline", model(), "--data", data()], ["--runs", "2"], {
            "--max-drop": MAX_DROP, "--min-speedup": POSITIVE_FLOAT,
            "--max-size-mb": POSITIVE_FLOAT, "--runs": INT_POSITIVE, "--markdown": "md",
            "--threads": INT_POSITIVE}),
    }  # fmt: skip
    required, fixed, optional = specs[command]
    argv = [command, *required, *fixed]
    for option, values in optional.items():
        if rng.random() < 0.3:
            argv += _option(rng, ws, option, values)
    if rng.random() < 0.4:
        argv += json_option(rng, ws)
    if rng.random() < 0.5:
        argv.append("--quiet")
    return argv


def _option(rng: random.Random, ws: Workspace, option: str, values) -> list[str]:
    if values is None:
        return [option]
    if values == "data":
        return [option, pick(rng, ws.data_paths())]
    if values in ("md", "plan", "html"):
        return [option, pick(rng, ws.output_paths(f".{values}"))]
    if values == "dir":
        dirs = ([ws.fresh(".d")], [str(ws.model), str(ws.root / "nodir" / "d")])
        return [option, pick(rng, dirs)]
    if option == "--recipe":
        named = {"recipe": ws.recipe, "model": ws.model, "missing": ws.root / "r.yaml"}
        return [option, str(named[pick(rng, values)])]
    return [option, pick(rng, values)]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("fuzz"))


def test_fuzzed_command_lines_keep_every_promise(workspace):
    pytest.importorskip("torch")  # distill and compress need it; the suite installs it
    rng = random.Random(SEED)
    commands = ["inspect", "bench", "compare", "prune", "decompose", "quantize", "distill",
                "compress", "check"]  # fmt: skip
    # Cheap commands are drawn more often so that 3,000 lines fit in a few minutes.
    weights = [3, 2, 2, 2, 2, 1, 1, 1, 1]
    digests = workspace.digests()
    runs, codes, problems = Counter(), Counter(), []
    started = time.monotonic()
    for _ in range(CASES):
        command = rng.choices(commands, weights)[0]
        argv = command_line(rng, workspace, command)
        before = workspace.snapshot()
        code, _, stderr = run_cli(argv)
        runs[command] += 1
        codes[(command, code)] += 1
        problems += _broken_promises(argv, code, stderr, before, workspace, digests)
        workspace.clean(before)
        if len(problems) > 20:
            break
    elapsed = time.monotonic() - started
    report = ", ".join(f"{c}: {runs[c]}" for c in commands)
    exits = ", ".join(f"{c} exit {k}: {n}" for (c, k), n in sorted(codes.items()))
    print(f"\nfuzz: {sum(runs.values())} command lines in {elapsed:.0f} s ({report}); {exits}")
    assert not problems, "\n".join(problems[:20])
    assert sum(runs.values()) == CASES and min(runs.values()) >= 100  # every command, often


def _broken_promises(argv, code, stderr, before, ws, digests) -> list[str]:
    line = " ".join(argv)
    found = []
    if code not in (0, 2, 3, 4):
        found.append(f"exit {code}: {line}\n    {stderr.strip()[-300:]}")
    if "Traceback" in stderr:
        found.append(f"traceback: {line}")
    if code == 2 and stderr.count("\n") != 1:
        found.append(f"exit 2 with {stderr.count(chr(10))} stderr lines: {line}\n{stderr}")
    changed = [p.name for p, digest in ws.digests().items() if digest != digests[p]]
    if changed:
        found.append(f"inputs changed {changed}: {line}")
    if code == 2 and ws.snapshot() - before:
        new = sorted(p.name for p in ws.snapshot() - before)
        found.append(f"exit 2 left {new}: {line}")
    return found
