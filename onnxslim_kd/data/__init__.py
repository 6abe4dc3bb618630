"""The one data loader every command uses: `.npz` files or image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.data.images import Preprocess, load_image_folder
from onnxslim_kd.data.npz import load_npz
from onnxslim_kd.data.validate import validate_dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import batch_axes, model_inputs, resolve_shapes

__all__ = ["Dataset", "Preprocess", "data_shapes", "load_data", "random_data", "with_data_shapes"]


def load_data(
    source: str | os.PathLike,
    model: onnx.ModelProto,
    *,
    samples: int | None = None,
    preprocess: Preprocess | None = None,
    axes: dict[str, int | None] | None = None,
) -> Dataset:
    """Load `source` for `model`, validate it, and take a deterministic subset.

    Each input's sample axis comes from the model (see graph.io.batch_axes) or `axes`.
    """
    path = Path(source)
    inputs = model_inputs(model)
    if samples is not None and samples <= 0:
        raise InputError(f"--samples must be positive, got {samples}")
    if not path.exists():
        raise InputError(f"{path}: no such data file or folder")
    if path.is_dir():
        if len(inputs) != 1:
            raise InputError(f"{path}: image folders need a single-input model")
        data = load_image_folder(path, inputs[0], preprocess or Preprocess())
    elif path.suffix == ".npz":
        data = load_npz(path, inputs)
    else:
        raise InputError(f"{path}: unsupported data format (use .npz or a folder of images)")
    data.axes = batch_axes(model, axes)
    validate_dataset(data, inputs)
    return data.subset(samples)


def random_data(
    model: onnx.ModelProto,
    shapes: dict[str, list[int]] | None = None,
    *,
    batch: int = 1,
    seed: int = 0,
) -> Dataset:
    """Seeded synthetic inputs, for latency and parity checks when no data is given."""
    rng = np.random.default_rng(seed)
    concrete = resolve_shapes(model, shapes or {}, batch)
    inputs = {}
    for spec in model_inputs(model):
        shape = concrete[spec.name]
        if np.issubdtype(spec.dtype, np.floating):
            inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            inputs[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[spec.name] = rng.integers(0, 8, shape).astype(spec.dtype)
    return Dataset(inputs, None, "random", batch_axes(model))


def data_shapes(model: onnx.ModelProto, data: Dataset | None) -> dict[str, list[int]]:
    """Concrete shapes of the inputs with dynamic dims, taken from the data's samples.

    A detector or text recogniser exported with dynamic H/W runs at the size its data has;
    axis 0 is the model's fixed batch, or 1 when the batch is dynamic.
    """
    if data is None:
        return {}
    shapes = {}
    for spec in model_inputs(model):
        array = data.inputs.get(spec.name)
        if spec.is_static or array is None or array.ndim != len(spec.dims):
            continue
        axis = data.axis(spec.name)
        shape = list(array.shape)
        if axis is not None:
            shape[axis] = spec.dims[axis] if isinstance(spec.dims[axis], int) else 1
        shapes[spec.name] = shape
    return shapes


def with_data_shapes(
    model: onnx.ModelProto, data: Dataset | None, shapes: dict[str, list[int]] | None
) -> dict[str, list[int]]:
    """Given shapes (`--shape`) over the data's: the user's word wins."""
    given = dict(shapes or {})
    inputs = model_inputs(model)
    if "" in given and len(inputs) == 1:
        given = {inputs[0].name: given[""]}
    return {**data_shapes(model, data), **given}
