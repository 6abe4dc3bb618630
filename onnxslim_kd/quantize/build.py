"""One call of onnxruntime's `quantize_static` with our data types and cached ranges."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize.calibration import cached_method
from onnxslim_kd.quantize.target import DataTypes

_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


def build(
    prepared: Path,
    ranges: Path,
    method: str,
    types: DataTypes,
    workdir: Path,
    *,
    exclude: Sequence[str] = (),
    only: list[str] | None = None,
) -> onnx.ModelProto:
    """Quantize the saved model `prepared` with the calibration cache `ranges`.

    `exclude` keeps nodes in FP32; `only` (when given) quantizes just those nodes.
    """
    output = workdir / "quantized.onnx"
    with quiet_warnings():
        quantize_static(
            str(prepared),
            str(output),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            per_channel=types.per_channel,
            reduce_range=types.reduce_range,
            activation_type=_TYPES[types.activations],
            weight_type=_TYPES[types.weights],
            nodes_to_quantize=list(only or []),
            nodes_to_exclude=list(exclude),
            use_external_data_format=True,
            calibrate_method=cached_method(method),
            extra_options={"WeightSymmetric": types.weight_symmetric},
            calibration_cache_path=str(ranges),
        )
    return with_metadata_of(output, prepared)


def with_metadata_of(output: Path, prepared: Path) -> onnx.ModelProto:
    """The quantized model at `output` with the metadata of `prepared`: onnxruntime stamps
    its own ('onnx.infer'), the model's interface keeps ours."""
    quantized = load(output)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(
        onnx.load(str(prepared), load_external_data=False).metadata_props
    )
    return quantized


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """quantize_static logs a pre-processing hint on the root logger; we did pre-process."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
