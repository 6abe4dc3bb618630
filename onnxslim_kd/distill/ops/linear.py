"""Convolution, pooling and dense products."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register
from onnxslim_kd.errors import InputError


def _pads(ctx: OpContext, x: Tensor, kernel: list[int], strides: list[int], dilations: list[int]):
    """ONNX pads [begin..., end...] after resolving auto_pad against the input's size."""
    rank = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        return list(ctx.attr("pads", [0] * 2 * rank))
    if auto_pad == "VALID":
        return [0] * 2 * rank
    begins, ends = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def pad_explicitly(x: Tensor, begins: list[int], ends: list[int], value: float = 0.0) -> Tensor:
    """`x` padded on its trailing len(begins) axes (torch's pad order is last axis first)."""
    torch_pads = [p for i in reversed(range(len(begins))) for p in (begins[i], ends[i])]
    return F.pad(x, torch_pads, value=value) if any(torch_pads) else x


def _symmetric(x: Tensor, pads: list[int], value: float = 0.0) -> tuple[Tensor, list[int]]:
    """Torch pads both sides equally: pad asymmetric cases explicitly, return the rest."""
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return x, begins
    return pad_explicitly(x, begins, ends, value), [0] * rank


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _rank_supported(ctx: OpContext, rank: int) -> None:
    if rank not in _CONV:
        raise ctx.unsupported(f"{rank} spatial dimensions")


@register("Conv", weights=(1, 2))
def conv(ctx: OpContext, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    rank = x.dim() - 2
    _rank_supported(ctx, rank)
    strides = ctx.attr("strides", [1] * rank)
    dilations = ctx.attr("dilations", [1] * rank)
    x, padding = _symmetric(x, _pads(ctx, x, list(w.shape[2:]), strides, dilations))
    return _CONV[rank](x, w, b, strides, padding, dilations, ctx.attr("group", 1))


@register("ConvTranspose", weights=(1, 2))
def conv_transpose(ctx: OpContext, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """The full transposed convolution, then the ONNX pads (given, or derived from
    output_shape/auto_pad) cropped off and output_padding added as zeros, then the bias.

    Negative derived pads (an output_shape past the full output) pad with zeros too.
    """
    rank = x.dim() - 2
    _rank_supported(ctx, rank)
    strides = ctx.attr("strides", [1] * rank)
    dilations = ctx.attr("dilations", [1] * rank)
    extra = list(ctx.attr("output_padding", [0] * rank))
    y = _CONV_T[rank](x, w, None, strides, 0, 0, ctx.attr("group", 1), dilations)
    wanted = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [n * s for n, s in zip(x.shape[2:], strides, strict=True)]
    if wanted is not None:
        sizes = zip(y.shape[2:], extra, list(wanted)[-rank:], strict=True)
        totals = [full + e - size for full, e, size in sizes]
        upper = auto_pad == "SAME_UPPER"
        begins = [t // 2 if upper else t - t // 2 for t in totals]
        ends = [t - b for t, b in zip(totals, begins, strict=True)]
    else:
        pads = list(ctx.attr("pads", [0] * 2 * rank))
        begins, ends = pads[:rank], pads[rank:]
    ends = [e - more for e, more in zip(ends, extra, strict=True)]
    y = pad_explicitly(y, [-p for p in begins], [-p for p in ends])
    return y if b is None else y + b.reshape(1, -1, *[1] * rank)


def _pool_geometry(ctx: OpContext, x: Tensor):
    kernel = list(ctx.attr("kernel_shape"))
    rank = len(kernel)
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    return kernel, strides, dilations, _pads(ctx, x, kernel, strides, dilations)


def _ceil_extra(sizes, kernel, strides, dilations, pads) -> list[int]:
    """Elements to add past the end pad so that ceil_mode's last window fits.

    As in onnxruntime and torch, a last window that would start inside the end padding
    (past the data and the begin pad) is dropped.
    """
    rank = len(kernel)
    extra = []
    for i, (n, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations, strict=True)):
        padded = n + pads[i] + pads[rank + i]
        span = (k - 1) * d + 1
        count = math.ceil((padded - span) / s) + 1
        if (count - 1) * s >= n + pads[i]:
            count -= 1
        extra.append(max(0, (count - 1) * s + span - padded))
    return extra


@register("MaxPool")
def max_pool(ctx: OpContext, x: Tensor):
    kernel, strides, dilations, pads = _pool_geometry(ctx, x)
    rank = len(kernel)
    if ctx.attr("ceil_mode", 0):
        extra = _ceil_extra(x.shape[2:], kernel, strides, dilations, pads)
        pads = pads[:rank] + [p + e for p, e in zip(pads[rank:], extra, strict=True)]
    if x.dtype in (torch.int8, torch.uint8):
        raise ctx.unsupported(f"{x.dtype} data (torch pools floats only)")
    padded = pad_explicitly(x, pads[:rank], pads[rank:], -math.inf)
    y, flat = _MAX_POOL[rank](padded, kernel, strides, 0, dilations, return_indices=True)
    wants_indices = len(ctx.node.output) > 1 and ctx.node.output[1]
    if not wants_indices:
        return y
    return y, _onnx_indices(flat, padded.shape, x.shape, pads[:rank], ctx.attr("storage_order", 0))


def _onnx_indices(flat, padded_shape, shape, begins, storage_order: int) -> Tensor:
    """torch's per-plane indices into the padded input as ONNX's flat indices into `x`."""
    spatial = shape[2:]
    coords, rest = [], flat
    for size in reversed(padded_shape[2:]):
        coords.append(rest % size)
        rest = rest // size
    coords = [c - b for c, b in zip(reversed(coords), begins, strict=True)]
    index = torch.zeros_like(flat)
    order = range(len(spatial)) if storage_order == 0 else reversed(range(len(spatial)))
    for axis in order:
        index = index * spatial[axis] + coords[axis]
    planes = torch.arange(shape[0] * shape[1]).reshape(shape[0], shape[1], *[1] * len(spatial))
    return index + planes * math.prod(spatial)


def _window_sum(x: Tensor, kernel, strides, dilations) -> Tensor:
    """Sum over each pooling window: a depthwise convolution with a kernel of ones."""
    channels = x.shape[1]
    ones = torch.ones((channels, 1, *kernel), dtype=x.dtype)
    return _CONV[len(kernel)](x, ones, None, strides, 0, dilations, channels)


def _pooled_sum_and_count(ctx: OpContext, x: Tensor, values: Tensor):
    """Window sums of `values` (padded with zeros) and the element count of each window."""
    kernel, strides, dilations, pads = _pool_geometry(ctx, x)
    rank = len(kernel)
    extra = [0] * rank
    if ctx.attr("ceil_mode", 0):
        extra = _ceil_extra(x.shape[2:], kernel, strides, dilations, pads)
    ends = [p + e for p, e in zip(pads[rank:], extra, strict=True)]
    sums = _window_sum(pad_explicitly(values, pads[:rank], ends), kernel, strides, dilations)
    mask = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    if ctx.attr("count_include_pad", 0):
        mask = pad_explicitly(mask, pads[:rank], pads[rank:], 1.0)
        mask = pad_explicitly(mask, [0] * rank, extra)
    else:
        mask = pad_explicitly(mask, pads[:rank], ends)
    return sums, _window_sum(mask, kernel, strides, dilations)


@register("AveragePool")
def average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    kernel, strides, dilations, pads = _pool_geometry(ctx, x)
    rank = len(kernel)
    simple = (
        pads[:rank] == pads[rank:]
        and all(p <= k // 2 for p, k in zip(pads, kernel * 2, strict=True))
        and set(dilations) == {1}
        and rank in _AVG_POOL
    )
    if simple:
        include_pad = bool(ctx.attr("count_include_pad", 0))
        ceil_mode = bool(ctx.attr("ceil_mode", 0))
        return _AVG_POOL[rank](x, kernel, strides, pads[:rank], ceil_mode, include_pad)
    sums, counts = _pooled_sum_and_count(ctx, x, x)
    return sums / counts


@register("LpPool")
def lp_pool(ctx: OpContext, x: Tensor) -> Tensor:
    p = ctx.attr("p", 2)
    sums, _ = _pooled_sum_and_count(ctx, x, x.abs() ** p)
    return sums ** (1.0 / p)


@register("GlobalAveragePool")
def global_average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext, x: Tensor) -> Tensor:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalLpPool")
def global_lp_pool(ctx: OpContext, x: Tensor) -> Tensor:
    p = ctx.attr("p", 2)
    return (x.abs() ** p).sum(dim=tuple(range(2, x.dim())), keepdim=True) ** (1.0 / p)


@register("Gemm", weights=(1, 2))
def gemm(ctx: OpContext, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
    a = a.T if ctx.attr("transA", 0) else a
    b = b.T if ctx.attr("transB", 0) else b
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    y = a @ b if alpha == 1.0 else alpha * (a @ b)
    if c is None:
        return y
    return y + (c if beta == 1.0 else beta * c)


@register("MatMul", weights=(0, 1))
def matmul(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return torch.matmul(a, b)


@register("Einsum", weights=tuple(range(8)))
def einsum(ctx: OpContext, *xs: Tensor) -> Tensor:
    equation = ctx.attr("equation").replace(" ", "")
    try:
        return torch.einsum(equation, *xs)
    except RuntimeError as exc:
        raise InputError(f"distill: Einsum node '{ctx.node.name}': {exc}") from exc
