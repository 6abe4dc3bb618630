"""ONNX element types as torch dtypes, and numpy arrays (ml_dtypes included) as tensors.

torch holds bfloat16 and the float8 formats natively, numpy only through ml_dtypes; both
sides are bridged bit for bit, through an unsigned integer view of the same width.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import Tensor

from onnxslim_kd.errors import InputError

_T = onnx.TensorProto
#: ONNX element type -> torch dtype, for every type torch can hold.
TORCH_DTYPES: dict[int, torch.dtype] = {
    _T.FLOAT: torch.float32, _T.DOUBLE: torch.float64, _T.FLOAT16: torch.float16,
    _T.BFLOAT16: torch.bfloat16, _T.INT8: torch.int8, _T.INT16: torch.int16,
    _T.INT32: torch.int32, _T.INT64: torch.int64, _T.UINT8: torch.uint8,
    _T.UINT16: torch.uint16, _T.UINT32: torch.uint32, _T.UINT64: torch.uint64,
    _T.BOOL: torch.bool, _T.COMPLEX64: torch.complex64, _T.COMPLEX128: torch.complex128,
    _T.FLOAT8E4M3FN: torch.float8_e4m3fn, _T.FLOAT8E5M2: torch.float8_e5m2,
    _T.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz, _T.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
}  # fmt: skip
#: torch dtypes numpy has no type for, by the ml_dtypes name numpy arrays carry.
_BRIDGED = {
    "bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2, "float8_e4m3fnuz": torch.float8_e4m3fnuz,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz,
}  # fmt: skip
_BITS = {1: (np.uint8, torch.uint8), 2: (np.uint16, torch.uint16)}


def torch_dtype(onnx_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type; InputError for those torch cannot hold."""
    dtype = TORCH_DTYPES.get(onnx_type)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(onnx_type)
        raise InputError(f"distill: the torch executor cannot hold ONNX type {name}")
    return dtype


def to_tensor(array: np.ndarray) -> Tensor:
    """A numpy array as a tensor of the same element type (no copy where numpy allows)."""
    array = np.ascontiguousarray(array).reshape(array.shape)  # 0-d stays 0-d
    if not array.flags.writeable:  # a read-only buffer (an initializer's bytes): torch writes
        array = array.copy()
    bridged = _BRIDGED.get(array.dtype.name)
    if bridged is not None:
        numpy_bits, torch_bits = _BITS[array.dtype.itemsize]
        return torch.from_numpy(array.view(numpy_bits)).view(torch_bits).view(bridged)
    if array.dtype.kind in "OSUV":
        raise InputError(f"distill: the torch executor cannot hold {array.dtype} tensors")
    return torch.from_numpy(array)


def to_array(tensor: Tensor) -> np.ndarray:
    """A tensor as numpy; bfloat16 and float8 come back as their ml_dtypes types."""
    tensor = tensor.detach().cpu()
    for name, dtype in _BRIDGED.items():
        if tensor.dtype == dtype:
            import ml_dtypes

            _, torch_bits = _BITS[tensor.element_size()]
            return tensor.view(torch_bits).numpy().view(getattr(ml_dtypes, name))
    return tensor.numpy()
