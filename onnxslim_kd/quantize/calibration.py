"""Streaming calibration with bounded memory, driving onnxruntime's calibrators.

`quantize_static` keeps every intermediate activation of the whole calibration set in
memory for entropy and percentile (gigabytes at 64 images of 224x224). Here the
calibrator is fed chunks sized from a memory budget: its histograms (or min/max
ranges) merge across `collect_data` calls, so peak memory depends on the chunk, not on
the number of samples. The ranges go to onnxruntime's calibration cache file, so every
later build (exclusions, FP32 fallback) reuses them without running calibration again.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.defaults import DEFAULT_CALIB_MEMORY_MB, DEFAULT_CALIB_SAMPLES
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.progress import progress
from onnxslim_kd.quantize.ranges import mse_ranges

#: onnxruntime's calibrator per method and its options; "mse" collects the percentile
#: calibrator's real-valued histograms and chooses each range itself (quantize.ranges).
METHODS = {
    "minmax": (CalibrationMethod.MinMax, {}),
    "entropy": (CalibrationMethod.Entropy, {}),
    "percentile": (CalibrationMethod.Percentile, {}),
    "mse": (CalibrationMethod.Percentile, {"symmetric": False, "num_bins": 2048}),
}


def cached_method(method: str) -> CalibrationMethod:
    """The method the calibration cache of `method` records (quantize_static checks it)."""
    return CalibrationMethod.MinMax if method == "mse" else METHODS[method][0]


DEFAULT_SAMPLES = DEFAULT_CALIB_SAMPLES
DEFAULT_MEMORY_MB = DEFAULT_CALIB_MEMORY_MB
#: Copies of each activation alive at once: onnxruntime's buffer and session output, and
#: for histograms the stacked array and its flattened/absolute copy.
_COPIES = 3
_MAX_BATCH = 32


class DatasetReader(CalibrationDataReader):
    """Feeds of equal batch size over samples [start, stop) of a Dataset."""

    def __init__(self, data: Dataset, start: int, stop: int, batch: int) -> None:
        self._feeds = (
            data.take(np.arange(i, min(i + batch, stop))).inputs for i in range(start, stop, batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


@dataclass
class CalibrationReport:
    """How the ranges were collected."""

    method: str
    samples: int
    chunk_samples: int
    batch: int
    estimated_peak_mb: float
    memory_budget_mb: int

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate(
    model: onnx.ModelProto,
    data: Dataset,
    workdir: Path,
    *,
    method: str = "minmax",
    samples: int | None = DEFAULT_SAMPLES,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> tuple[Path, CalibrationReport]:
    """Collect activation ranges of `model` on a deterministic subset of `data`.

    Returns the onnxruntime calibration cache file (for `quantize_static`) and a report.
    """
    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if memory_mb <= 0:
        raise InputError(f"--max-calib-memory must be positive, got {memory_mb}")
    subset = data.subset(samples)
    count = len(subset)
    per_sample = _activation_bytes(model, subset) * _COPIES
    fits = max(1, min(count, memory_mb * 2**20 // per_sample))
    # MinMax keeps only reduced ranges between batches, so only the batch must fit
    chunk = count if method == "minmax" else fits
    batch = fixed_batch(model) or min(fits, _MAX_BATCH)
    if fixed_batch(model):  # a fixed-batch model cannot take a smaller last batch
        count = count // batch * batch
        if not count:
            raise InputError(f"{data.source}: fewer samples than the model's fixed batch {batch}")
    chunk = max(batch, chunk // batch * batch)
    calibrate_method, extra_options = METHODS[method]
    calibrator = create_calibrator(
        save(model, workdir / "calibration_input.onnx"),
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=calibrate_method,
        use_external_data_format=True,
        extra_options=extra_options,
    )
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # ORT prints progress
        for start, stop in progress(_calls(count, chunk, batch), "calibrate"):
            calibrator.collect_data(DatasetReader(subset, start, stop, batch))
        if method == "mse":
            histograms = calibrator.collector.get_histogram_dict()
            ranges = TensorsData(cached_method(method), mse_ranges(histograms))
        else:
            ranges = calibrator.compute_data()
    cache = workdir / f"calibration.{method}.json"
    save_tensors_data(ranges, cache)
    report = CalibrationReport(
        method=method,
        samples=count,
        chunk_samples=chunk,
        batch=batch,
        estimated_peak_mb=round(per_sample * (batch if method == "minmax" else chunk) / 2**20, 1),
        memory_budget_mb=memory_mb,
    )
    return cache, report


def _activation_bytes(model: onnx.ModelProto, data: Dataset) -> int:
    """Bytes of all float intermediate tensors for one sample (an upper bound)."""
    shapes = static_shapes(
        model, {k: list(v.shape) for k, v in data.take(np.arange(1)).inputs.items()}
    )
    weights = {t.name for t in model.graph.initializer}
    total = sum(math.prod(dims) for name, dims in shapes.items() if name not in weights)
    return 4 * total


def _calls(count: int, chunk: int, batch: int) -> list[tuple[int, int]]:
    """[start, stop) sample ranges, one per collect_data call, each of equal-sized batches.

    The histogram calibrators stack a call's outputs, so a smaller last batch gets its own call.
    """
    calls = []
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        full = start + (stop - start) // batch * batch
        calls += [(a, b) for a, b in ((start, full), (full, stop)) if b > a]
    return calls
