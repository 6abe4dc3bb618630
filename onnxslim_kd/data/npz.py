"""Read `.npz` files whose arrays are named after the model's inputs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import TensorSpec

LABELS_KEY = "labels"


def load_npz(path: Path, inputs: list[TensorSpec]) -> Dataset:
    """Map arrays to graph inputs by name; a single-input model may use any single array."""
    if not zipfile.is_zipfile(path):  # np.load would try pickle and advise allow_pickle
        raise InputError(f"{path}: not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        reason = "holds object arrays" if "pickle" in str(exc) else str(exc)
        raise InputError(f"{path}: not a readable .npz archive ({reason})") from exc
    labels = arrays.pop(LABELS_KEY, None)
    names = [spec.name for spec in inputs]
    if all(name in arrays for name in names):
        chosen = {name: arrays[name] for name in names}
    elif len(names) == 1 and len(arrays) == 1:
        chosen = {names[0]: next(iter(arrays.values()))}
    else:
        missing = [name for name in names if name not in arrays]
        raise InputError(
            f"{path}: no array for model input '{missing[0]}' "
            f"(arrays found: {', '.join(sorted(arrays)) or 'none'})"
        )
    return Dataset(chosen, labels, str(path))
