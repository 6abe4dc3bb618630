"""Atomic saving: the output path holds a complete model or nothing at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.walk import clone

#: Protobuf cannot serialise a message over 2 GB; such models must use external data.
PROTOBUF_LIMIT = 2**31 - 1


def needs_external_data(model: onnx.ModelProto) -> bool:
    """True when the model is too large to be written as a single protobuf file."""
    return model.ByteSize() > PROTOBUF_LIMIT


def external_data_name(path: str | os.PathLike) -> str:
    """Name of the external-data file we write beside `path` (the dynamo exporter's convention)."""
    return Path(path).name + ".data"


def save(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write `model` to `path` atomically and return the path.

    The model (and its external-data file, when used) is written into a temporary
    directory beside the target and renamed into place only once complete; on any
    error nothing is left at `path`. `external_data=None` chooses it automatically
    (over 2 GB). Paths in `protect` (the input files) are never overwritten.
    """
    path = Path(path)
    if any(same_file(path, other) for other in protect):
        raise InputError(f"{path}: refusing to overwrite the input model; choose another output")
    if external_data is None:
        external_data = needs_external_data(model)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output directory does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = staging / path.name
        data_name = external_data_name(path)
        if external_data:
            # save_model moves tensor bytes out of the proto it is given: hand it a copy.
            onnx.save_model(
                clone(model), str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                location=data_name, size_threshold=1024,
            )  # fmt: skip
        else:
            onnx.save_model(model, str(staged))
        if (staging / data_name).exists():
            os.replace(staging / data_name, path.parent / data_name)
        elif (path.parent / data_name).exists() and not external_data:
            (path.parent / data_name).unlink()
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Same file: one inode (symlinks, hard links) when both exist, else one resolved path."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return a.resolve() == b.resolve()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a report (JSON, Markdown, HTML, plan) so that `path` holds all of it or its
    previous content: a temporary file beside it, renamed into place once complete."""
    path = Path(path)
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(staged, 0o666 & ~_umask())  # mkstemp makes 0600: a report is not a secret
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
