"""Shared fixtures: paths to the bundled sample and an in-process CLI runner."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "samples" / "digits"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run `onnxslim-kd ARGS...` in-process and capture its exit code and streams."""

    def invoke(*args: str) -> CliResult:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --help
            code = exc.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def digits() -> Path:
    return DIGITS


@pytest.fixture(scope="session")
def textline() -> Path:
    """samples/textline: a trained CTC text-line recogniser with calib and test lines."""
    return ROOT / "samples/textline"


@pytest.fixture(scope="session")
def vit_digits() -> Path:
    """samples/vit_digits: a trained vision transformer on the digits splits."""
    return ROOT / "samples/vit_digits"


def _zoo_module():
    """samples/zoo/export.py, loaded by path (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("zoo_export", ROOT / "samples/zoo/export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def zoo():
    """`zoo(name, exporter)` -> path of a torchvision export, exported once and cached."""
    module = _zoo_module()
    return module.ensure_exported
