"""The output-path guard: every path a command writes is checked before any work.

A command declares which of its arguments name files it reads (models, teachers, data,
plans, recipes) and which name files or directories it writes. Before the handler runs,
`guard` refuses (exit 2, one line, nothing written) an output that is, or resolves
through symlinks or hard links to, one of the inputs, an output that is an existing
directory (or, for a directory output, an existing file), one inside a directory that
does not exist, and two outputs that name the same file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from onnxslim_kd.errors import InputError

#: The value of `--json` that means standard output rather than a file.
STDOUT = "-"
#: What an existing file holds, by suffix: a model output never replaces data or a
#: recipe, a report never replaces a model, even when that file is not this run's input.
KINDS = {".onnx": "model", ".data": "model", ".npz": "data", ".npy": "data",
         ".yaml": "recipe", ".yml": "recipe", ".toml": "recipe"}  # fmt: skip

Derived = Callable[[argparse.Namespace], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class PathRoles:
    """Which arguments of a command are read and which are written.

    `inputs`: argument names whose values (a path or a list of paths) are read.
    `models`: the subset of outputs that are ONNX models (their external-data file
    `OUT.data` is written too). `files` and `dirs`: other outputs. `derived`: outputs
    computed from the arguments (a report beside the model, a default work directory),
    as (label, path) pairs, each checked as a file or, when its label ends with
    '/', as a directory.
    """

    inputs: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    derived: Derived | None = field(default=None, compare=False)


def guard(args: argparse.Namespace, roles: PathRoles) -> None:
    """Raise InputError for the first output path that would lose data or fail late."""
    from onnxslim_kd.graph.save import external_data_name  # onnx: not at --help time

    inputs = [(option_name(name), p) for name in roles.inputs for p in _values(args, name)]
    inputs += [(label, p) for label, path in inputs for p in _external_files(path)]
    outputs: list[tuple[str, str, str]] = []  # (label, path, what: model, report or dir)
    for name in roles.models:
        for path in _values(args, name):
            outputs.append((option_name(name), path, "model"))
            sidecar = str(Path(path).with_name(external_data_name(path)))
            outputs.append((f"{option_name(name)}'s external data", sidecar, "model"))
    for names, what in ((roles.files, "report"), (roles.dirs, "dir")):
        outputs += [(option_name(n), p, what) for n in names for p in _values(args, n)]
    if roles.derived is not None:
        for label, path in roles.derived(args):
            what = "dir" if label.endswith("/") else "report"
            outputs.append((label.rstrip("/"), path, what))
    for label, path, what in outputs:
        _check_output(label, path, what, inputs)
    _check_distinct([(label, path) for label, path, _ in outputs])


def option_name(dest: str) -> str:
    """The option as the user typed it: output -> -o, plan_out -> --plan-out."""
    if dest == "output":
        return "-o"
    if dest in {"model", "models", "student", "candidate", "reference"}:
        return dest
    return "--" + dest.replace("_", "-")


def _values(args: argparse.Namespace, name: str) -> list[str]:
    value = getattr(args, name, None)
    if value is None or value == STDOUT:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None and str(v) != STDOUT]


def _external_files(path: str) -> list[str]:
    """External-data files of an input model (none for other inputs or unreadable files)."""
    if not str(path).endswith(".onnx") or not Path(path).is_file():
        return []
    from onnxslim_kd.graph.load import external_files  # onnx import: not on --help's path

    try:
        return [str(p) for p in external_files(path)]
    except Exception:  # an unreadable model is reported by the command's own load
        return []


def _check_output(label: str, path: str, what: str, inputs: list[tuple[str, str]]) -> None:
    from onnxslim_kd.graph.save import same_file

    target = Path(path)
    for input_label, input_path in inputs:
        if same_file(target, input_path):
            raise InputError(
                f"{label} {path}: is the input {input_path} ({input_label}); "
                "refusing to overwrite it, choose another path"
            )
    if what == "dir":
        if target.exists() and not target.is_dir():
            raise InputError(f"{label} {path}: is a file, expected a directory")
    elif target.is_dir():
        raise InputError(f"{label} {path}: is a directory, expected a file path")
    elif target.is_file():
        held = KINDS.get(target.suffix.lower())
        if held is not None and held != what:
            raise InputError(
                f"{label} {path}: an existing {held} file; refusing to replace it with a "
                f"{what}, choose another path"
            )
    parent = target.absolute().parent
    if not parent.is_dir():
        raise InputError(f"{label} {path}: directory {parent} does not exist")


def _check_distinct(outputs: list[tuple[str, str]]) -> None:
    from onnxslim_kd.graph.save import same_file

    seen: list[tuple[str, Path]] = []
    for label, path in outputs:
        for other_label, other in seen:
            if same_file(path, other):
                raise InputError(f"{label} and {other_label} both write {path}; give two paths")
        seen.append((label, Path(path)))
