"""Check that a model is valid ONNX, runs in onnxruntime, and matches another model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import BrokenModelError, InputError
from onnxslim_kd.graph.io import batch_axes, fixed_batch
from onnxslim_kd.graph.save import needs_external_data, save
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.report.fidelity import OutputFidelity, output_fidelity


def check(model: onnx.ModelProto) -> None:
    """onnx.checker plus an onnxruntime CPU session; raise BrokenModelError with the reason."""
    try:
        if needs_external_data(model):
            with tempfile.TemporaryDirectory() as tmp:
                onnx.checker.check_model(str(save(model, Path(tmp) / "m.onnx")))
        else:
            onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise BrokenModelError(f"onnx.checker rejects the model: {exc}") from exc
    try:
        make_session(model)
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise BrokenModelError(f"onnxruntime cannot load the model: {exc}") from exc


def run(model: onnx.ModelProto, data: Dataset, batch_size: int = 32) -> dict[str, np.ndarray]:
    """All outputs of `model` over `data`, concatenated along each output's sample axis
    (a recurrent state output [layers, N, hidden] on axis 1; one not per sample: its first).

    A fixed-batch model gets its last, smaller batch padded with repeats of its last
    sample, and the padding's outputs are dropped."""
    fixed = fixed_batch(model)
    batch_size = fixed or batch_size
    session = make_session(model)
    names = [o.name for o in session.get_outputs()]
    axes = batch_axes(model, outputs=True)
    input_axes = {**batch_axes(model), **data.axes}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feeds in data.batches(batch_size):
        count = _samples(feeds, input_axes) if fixed else 0  # only a fixed batch is padded
        short = count < fixed if fixed else False
        if short:
            feeds = _padded(feeds, input_axes, fixed)
        for name, value in zip(names, session.run(names, feeds), strict=True):
            axis = axes.get(name, 0)
            if short and axis is not None:
                value = np.take(value, np.arange(count), axis=axis)
            chunks[name].append(value)
    return {
        name: parts[0] if axes.get(name, 0) is None else np.concatenate(parts, axes.get(name, 0))
        for name, parts in chunks.items()
    }


def _samples(feeds: dict[str, np.ndarray], axes: dict[str, int | None]) -> int:
    return next(v.shape[axes.get(k, 0)] for k, v in feeds.items() if axes.get(k, 0) is not None)


def _padded(feeds: dict[str, np.ndarray], axes: dict[str, int | None], size: int) -> dict:
    """Each per-sample input filled up to `size` samples with repeats of its last one."""
    padded = {}
    for name, value in feeds.items():
        axis = axes.get(name, 0)
        if axis is None:
            padded[name] = value
            continue
        index = np.minimum(np.arange(size), value.shape[axis] - 1)
        padded[name] = np.take(value, index, axis=axis)
    return padded


def run_pair(
    reference: onnx.ModelProto, candidate: onnx.ModelProto, data: Dataset, batch_size: int = 32
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Outputs of both models on the same inputs, the candidate's keyed by reference names.

    Outputs pair by name, or by position when the candidate renamed them.
    """
    return pair_outputs(run(reference, data, batch_size), run(candidate, data, batch_size))


def pair_outputs(
    ref_out: dict[str, np.ndarray], cand_out: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two models' outputs on the same inputs, the candidate's keyed by reference names
    (by position when it renamed them); different outputs or shapes are an InputError."""
    if set(ref_out) != set(cand_out):
        if len(ref_out) != len(cand_out):
            raise InputError(
                f"models have different outputs: {sorted(ref_out)} vs {sorted(cand_out)}"
            )
        cand_out = dict(zip(ref_out, cand_out.values(), strict=True))
    for name, value in ref_out.items():
        if value.shape != cand_out[name].shape:
            raise InputError(
                f"output '{name}' has shape {list(value.shape)} in the reference but "
                f"{list(cand_out[name].shape)} in the candidate"
            )
    return ref_out, cand_out


def compare_models(
    reference: onnx.ModelProto, candidate: onnx.ModelProto, data: Dataset, batch_size: int = 32
) -> dict[str, OutputFidelity]:
    """Run both models on the same inputs and report the difference per output."""
    return output_differences(*run_pair(reference, candidate, data, batch_size))


def output_differences(
    ref_out: dict[str, np.ndarray], cand_out: dict[str, np.ndarray]
) -> dict[str, OutputFidelity]:
    """The difference per output of two runs on the same inputs (see pair_outputs)."""
    ref_out, cand_out = pair_outputs(ref_out, cand_out)
    return {name: output_fidelity(ref_out[name], cand_out[name]) for name in ref_out}
