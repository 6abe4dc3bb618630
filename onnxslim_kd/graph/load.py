"""Load ONNX files, with clear one-line errors for every way a file can be bad."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.walk import all_tensors

#: Default-domain opsets we read and write. Below 11 the op semantics differ too much
#: (Resize, Pad, Slice as attributes); above 21 is newer than the passes are tested on.
MIN_OPSET = 11
MAX_OPSET = 21


def load(path: str | os.PathLike) -> onnx.ModelProto:
    """Read a model and its external data, checking everything a user can get wrong."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{path}: not an ONNX model or truncated ({_first_line(exc)})") from exc
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{path}: not an ONNX model (no graph found)")
    check_opset(model, path)
    _check_external_files(model, path.parent, path)
    external_data_helper.load_external_data_for_model(model, str(path.parent))
    return model


def file_uses_external_data(path: str | os.PathLike) -> bool:
    """Whether the model file at `path` keeps tensors in external data files."""
    return bool(external_files(path))


def external_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files the model at `path` references (none when self-contained)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    names = {
        entry.value
        for tensor in all_tensors(model)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path.parent / name for name in sorted(names)]


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain (ai.onnx) opset version of a model."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise InputError("model imports no ai.onnx opset")


def check_opset(model: onnx.ModelProto, path: str | os.PathLike = "model") -> None:
    """Refuse models outside the opset range the passes support."""
    version = opset_of(model)
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise InputError(
            f"{path}: unsupported opset {version} (supported: {MIN_OPSET} to {MAX_OPSET})"
        )


def _check_external_files(model: onnx.ModelProto, base: Path, path: Path) -> None:
    """Fail early and clearly when an external-data file is missing or too short."""
    for tensor in all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        data_file = base / info.get("location", "")
        if not data_file.is_file():
            raise InputError(
                f"{path}: external data file '{info.get('location')}' for tensor "
                f"'{tensor.name}' not found beside the model"
            )
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if end > data_file.stat().st_size:
            raise InputError(
                f"{path}: external data file '{info.get('location')}' is truncated "
                f"(tensor '{tensor.name}' needs {end} bytes, file has {data_file.stat().st_size})"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
