"""Resize (and the older Upsample) exactly as the ONNX spec defines them, one axis at a time.

torch's `interpolate` covers only some of ONNX's coordinate modes and rounds nearest
ties its own way, so each resized axis is planned here in float64 from the spec: nearest
modes become an index gather, linear and cubic (antialias, exclude_outside, cubic_coeff_a
included) a [out, in] weight matrix. Both are exact, differentiable and cached per shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register
from onnxslim_kd.distill.ops.values import ints


@dataclass(frozen=True)
class Sampling:
    """The attributes that decide how one axis is sampled."""

    mode: str = "nearest"
    coordinates: str = "half_pixel"
    nearest: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False


def _source(sampling: Sampling, size: int, out: int, scale: float, roi) -> np.ndarray:
    """The input coordinate each output index samples, per coordinate_transformation_mode."""
    y = np.arange(out, dtype=np.float64)
    width = scale * size  # the spec's output_width: a float, not the rounded size
    mode = sampling.coordinates
    if mode == "asymmetric":
        return y / scale
    if mode == "align_corners":
        return np.zeros(out) if width == 1 else y * (size - 1) / (width - 1)
    if mode == "pytorch_half_pixel":
        return np.full(out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = size / 2 * (1 - out / width)
        return offset + (y + 0.5) / scale - 0.5
    start, end = roi
    if width == 1:
        return np.full(out, (end - start) * (size - 1) / 2 + start * (size - 1))
    return y * (end - start) * (size - 1) / (width - 1) + start * (size - 1)


def _nearest(sampling: Sampling, x: np.ndarray) -> np.ndarray:
    base = np.floor(x)
    fraction = x - base
    up = {
        "round_prefer_floor": fraction > 0.5, "round_prefer_ceil": fraction >= 0.5,
        "floor": np.zeros_like(x, dtype=bool), "ceil": fraction > 0,
    }[sampling.nearest]  # fmt: skip
    return (base + up).astype(np.int64)


def _kernel(sampling: Sampling, distance: np.ndarray) -> np.ndarray:
    """The linear (triangle) or Keys cubic kernel at |distance|."""
    d = np.abs(distance)
    if sampling.mode == "linear":
        return np.clip(1 - d, 0, 1)
    a = sampling.cubic_a
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _weights(sampling: Sampling, x: np.ndarray, size: int, scale: float) -> np.ndarray:
    """The [out, in] matrix of linear/cubic interpolation (antialiased when downsampling)."""
    stretch = min(scale, 1.0) if sampling.antialias else 1.0
    reach = 1 if sampling.mode == "linear" else 2
    start = math.floor(-reach / stretch) + 1
    taps = np.arange(start, 2 - start)
    base = np.where(x == np.floor(x), x - 1, np.floor(x))  # ratio in (0, 1]: prefer the left
    ratio = x - base
    coefficients = _kernel(sampling, (taps[None, :] - ratio[:, None]) * stretch)
    neighbours = base[:, None].astype(np.int64) + taps[None, :]
    if sampling.exclude_outside:
        coefficients = np.where((neighbours < 0) | (neighbours >= size), 0.0, coefficients)
    coefficients = coefficients / coefficients.sum(axis=1, keepdims=True)
    matrix = np.zeros((len(x), size))
    rows = np.broadcast_to(np.arange(len(x))[:, None], neighbours.shape)
    np.add.at(matrix, (rows, np.clip(neighbours, 0, size - 1)), coefficients)
    return matrix


@lru_cache(maxsize=256)
def _plan(sampling: Sampling, size: int, out: int, scale: float, roi):
    """(indices or weight matrix, mask of outputs that take the extrapolation value)."""
    x = _source(sampling, size, out, scale, roi)
    outside = (x < 0) | (x > size - 1) if sampling.coordinates == "tf_crop_and_resize" else None
    if sampling.mode == "nearest":
        return np.clip(_nearest(sampling, x), 0, size - 1), outside
    return _weights(sampling, x, size, scale), outside


def _resize_axis(x: Tensor, axis: int, plan, fill: float) -> Tensor:
    taken, outside = plan
    if taken.ndim == 1:
        y = x.index_select(axis, torch.from_numpy(taken))
    else:
        matrix = torch.from_numpy(taken).to(x.dtype)
        y = (x.movedim(axis, -1) @ matrix.T).movedim(-1, axis)
    if outside is None or not outside.any():
        return y
    shape = [1] * x.dim()
    shape[axis] = len(outside)
    mask = torch.from_numpy(outside).reshape(shape)
    return torch.where(mask, torch.tensor(fill, dtype=y.dtype), y)


def resize_tensor(
    ctx: OpContext, x: Tensor, sampling: Sampling, scales: list[float] | None,
    sizes: list[int] | None, roi: list[float] | None,
) -> Tensor:  # fmt: skip
    """`x` resized on `axes` (attribute; default all) to `sizes`, else by `scales`."""
    rank = x.dim()
    axes = [a % rank for a in (ctx.attr("axes") or range(rank))]
    if sampling.mode != "nearest" and not x.dtype.is_floating_point:
        raise ctx.unsupported(f"mode={sampling.mode} on {x.dtype} data")
    inputs = [x.shape[a] for a in axes]
    if sizes:
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        ratios = [out / n for out, n in zip(sizes, inputs, strict=True)]
        if policy == "stretch":
            outs, factors = list(sizes), ratios
        else:
            common = min(ratios) if policy == "not_larger" else max(ratios)
            outs, factors = [int(common * n + 0.5) for n in inputs], [common] * len(axes)
    else:
        factors = list(scales)
        outs = [math.floor(f * n) for f, n in zip(factors, inputs, strict=True)]
    count = len(axes)
    for i, (axis, n, out, factor) in enumerate(zip(axes, inputs, outs, factors, strict=True)):
        pair = (0.0, 1.0) if not roi else (roi[i], roi[count + i])
        trivial = pair == (0.0, 1.0) or sampling.coordinates != "tf_crop_and_resize"
        if math.isclose(factor, 1.0) and out == n and trivial:
            continue
        plan = _plan(sampling, n, out, factor, pair if not trivial else (0.0, 1.0))
        x = _resize_axis(x, axis, plan, ctx.attr("extrapolation_value", 0.0))
    return x


def _floats(value: Tensor | None) -> list[float] | None:
    if value is None or value.numel() == 0:
        return None
    return [float(v) for v in value.reshape(-1).tolist()]


def _sampling(ctx: OpContext) -> Sampling:
    return Sampling(
        mode=ctx.attr("mode", "nearest"),
        coordinates=ctx.attr("coordinate_transformation_mode", "half_pixel"),
        nearest=ctx.attr("nearest_mode", "round_prefer_floor"),
        cubic_a=ctx.attr("cubic_coeff_a", -0.75),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        antialias=bool(ctx.attr("antialias", 0)),
    )


@register("Resize", since=11)
def resize(ctx: OpContext, x: Tensor, roi=None, scales=None, sizes=None) -> Tensor:
    sizes_list, scales_list = ints(sizes) if sizes is not None else None, _floats(scales)
    if not sizes_list and not scales_list:
        raise ctx.unsupported("neither scales nor sizes")
    return resize_tensor(ctx, x, _sampling(ctx), scales_list, sizes_list, _floats(roi))


def _legacy(ctx: OpContext, x: Tensor, scales: list[float]) -> Tensor:
    """Resize 10 and Upsample: asymmetric coordinates, nearest (floor) or linear, scales only."""
    mode = ctx.attr("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode
    sampling = Sampling(mode=mode, coordinates="asymmetric", nearest="floor")
    return resize_tensor(ctx, x, sampling, scales, None, None)


@register("Resize", since=10)
@register("Upsample", since=9)
def resize_10(ctx: OpContext, x: Tensor, scales: Tensor) -> Tensor:
    return _legacy(ctx, x, _floats(scales))


@register("Upsample", since=7)
def upsample_7(ctx: OpContext, x: Tensor) -> Tensor:
    return _legacy(ctx, x, list(ctx.attr("scales")))
