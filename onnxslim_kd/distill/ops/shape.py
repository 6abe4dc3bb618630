"""Shape and data movement: views, joins, slices, gathers and scatters."""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.distill.ops.dtypes import to_tensor, torch_dtype
from onnxslim_kd.distill.ops.registry import OpContext, register
from onnxslim_kd.distill.ops.values import ints


@register("Flatten")
def flatten(ctx: OpContext, x: Tensor) -> Tensor:
    axis = ctx.attr("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register("Reshape", since=5)
def reshape(ctx: OpContext, x: Tensor, shape: Tensor) -> Tensor:
    dims = ints(shape)
    if not ctx.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@register("Transpose")
def transpose(ctx: OpContext, x: Tensor) -> Tensor:
    return x.permute(ctx.attr("perm", list(reversed(range(x.dim())))))


@register("Concat")
def concat(ctx: OpContext, *xs: Tensor) -> Tensor:
    return torch.cat(xs, dim=ctx.attr("axis"))


def _split(ctx: OpContext, x: Tensor, parts: list[int] | None) -> tuple[Tensor, ...]:
    """Even parts (the last one smaller when the size does not divide) unless sized."""
    axis = ctx.attr("axis", 0)
    if not parts:
        count = ctx.attr("num_outputs") or len(ctx.node.output)
        parts = math.ceil(x.shape[axis] / count)
    return torch.split(x, parts, dim=axis)


@register("Split", since=2)
def split_2(ctx: OpContext, x: Tensor) -> tuple[Tensor, ...]:
    return _split(ctx, x, ctx.attr("split"))


@register("Split", since=13)
def split(ctx: OpContext, x: Tensor, sizes: Tensor | None = None) -> tuple[Tensor, ...]:
    return _split(ctx, x, ints(sizes))


def _slice(x: Tensor, starts, ends, axes, steps) -> Tensor:
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= x.dim()
        if step > 0:
            index[axis] = slice(start, end, step)
        else:  # torch has no negative-step slicing: gather the indices Python would visit
            picked = range(*slice(start, end, step).indices(x.shape[axis]))
            x = x.index_select(axis, torch.tensor(list(picked), dtype=torch.long))
    return x[tuple(index)]


@register("Slice")
def slice_1(ctx: OpContext, x: Tensor) -> Tensor:
    return _slice(x, ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None)


@register("Slice", since=10)
def slice_(ctx, x: Tensor, starts: Tensor, ends: Tensor, axes=None, steps=None) -> Tensor:
    return _slice(x, ints(starts), ints(ends), ints(axes), ints(steps))


def _positive(indices: Tensor, size: int) -> Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


@register("Gather")
def gather(ctx: OpContext, x: Tensor, indices: Tensor) -> Tensor:
    axis = ctx.attr("axis", 0) % x.dim()
    flat = _positive(indices.reshape(-1), x.shape[axis])
    picked = x.index_select(axis, flat)
    return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))


@register("GatherElements")
def gather_elements(ctx: OpContext, x: Tensor, indices: Tensor) -> Tensor:
    axis = ctx.attr("axis", 0) % x.dim()
    return torch.gather(x, axis, _positive(indices, x.shape[axis]))


@register("GatherND")
def gather_nd(ctx: OpContext, x: Tensor, indices: Tensor) -> Tensor:
    batch = ctx.attr("batch_dims", 0)
    depth = indices.shape[-1]
    lead = x.shape[:batch]
    flat_x = x.reshape(math.prod(lead), *x.shape[batch:])
    flat_i = indices.reshape(math.prod(lead), -1, depth).long()
    rows = []
    for b in range(flat_x.shape[0]):
        coords = [_positive(flat_i[b, :, k], flat_x.shape[1 + k]) for k in range(depth)]
        rows.append(flat_x[b][tuple(coords)])
    picked = torch.stack(rows)
    return picked.reshape(*indices.shape[:-1], *x.shape[batch + depth :])


_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@register("ScatterElements")
def scatter_elements(ctx: OpContext, x: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
    axis = ctx.attr("axis", 0) % x.dim()
    index = _positive(indices, x.shape[axis])
    reduction = ctx.attr("reduction", "none")
    if reduction == "none":
        return x.scatter(axis, index, updates)
    return x.scatter_reduce(axis, index, updates, _SCATTER_REDUCE[reduction])


@register("ScatterND")
def scatter_nd(ctx: OpContext, x: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
    depth = indices.shape[-1]
    coords = indices.reshape(-1, depth).long()
    coords = tuple(_positive(coords[:, k], x.shape[k]) for k in range(depth))
    values = updates.reshape(-1, *x.shape[depth:])
    y = x.clone()
    reduction = ctx.attr("reduction", "none")
    if reduction == "none":
        y[coords] = values
    elif reduction == "add":
        y.index_put_(coords, values, accumulate=True)
    else:  # mul/max/min apply one update at a time, in order
        combine = {"mul": torch.mul, "max": torch.maximum, "min": torch.minimum}[reduction]
        for row in range(values.shape[0]):
            at = tuple(c[row] for c in coords)
            y[at] = combine(y[at], values[row])
    return y


@register("Shape")
def shape(ctx: OpContext, x: Tensor) -> Tensor:
    dims = list(x.shape)[ctx.attr("start", 0) : ctx.attr("end", None)]
    return torch.tensor(dims, dtype=torch.int64)


@register("Size")
def size(ctx: OpContext, x: Tensor) -> Tensor:
    return torch.tensor(x.numel(), dtype=torch.int64)


def _cast(ctx: OpContext, x: Tensor, target: torch.dtype) -> Tensor:
    """Float8 targets: only float8e4m3fn with saturation rounds and clamps as ONNX does."""
    exact = target == torch.float8_e4m3fn and ctx.attr("saturate", 1)
    if target.is_floating_point and target.itemsize == 1 and not exact:
        raise ctx.unsupported(f"a cast to {target} (saturate={ctx.attr('saturate', 1)})")
    return x.to(target)


@register("Cast")
def cast(ctx: OpContext, x: Tensor) -> Tensor:
    return _cast(ctx, x, torch_dtype(ctx.attr("to")))


@register("CastLike")
def cast_like(ctx: OpContext, x: Tensor, like: Tensor) -> Tensor:
    return _cast(ctx, x, like.dtype)


def _axes(ctx: OpContext, axes: Tensor | None) -> list[int] | None:
    return ctx.attr("axes") if axes is None else ints(axes)


@register("Unsqueeze")
def unsqueeze_1(ctx: OpContext, x: Tensor) -> Tensor:
    return _unsqueeze(x, ctx.attr("axes"))


@register("Unsqueeze", since=13)
def unsqueeze(ctx: OpContext, x: Tensor, axes: Tensor) -> Tensor:
    return _unsqueeze(x, ints(axes))


def _unsqueeze(x: Tensor, axes: list[int]) -> Tensor:
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


@register("Squeeze")
def squeeze_1(ctx: OpContext, x: Tensor) -> Tensor:
    return _squeeze(x, ctx.attr("axes"))


@register("Squeeze", since=13)
def squeeze(ctx: OpContext, x: Tensor, axes: Tensor | None = None) -> Tensor:
    return _squeeze(x, ints(axes))


def _squeeze(x: Tensor, axes: list[int] | None) -> Tensor:
    if not axes:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes))


@register("Expand")
def expand(ctx: OpContext, x: Tensor, shape: Tensor) -> Tensor:
    return x.expand(torch.broadcast_shapes(x.shape, tuple(ints(shape))))


@register("Tile")
def tile(ctx: OpContext, x: Tensor, repeats: Tensor) -> Tensor:
    return x.repeat(ints(repeats))


@register("ConstantOfShape")
def constant_of_shape(ctx: OpContext, shape: Tensor) -> Tensor:
    value = ctx.attr("value")
    fill = torch.zeros(1) if value is None else to_tensor(onnx.numpy_helper.to_array(value))
    return fill.reshape(-1)[0].expand(ints(shape)).clone()


@register("Range")
def range_(ctx: OpContext, start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    count = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
    return (start + delta * torch.arange(count, dtype=start.dtype)).to(start.dtype)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _pad(ctx: OpContext, x: Tensor, amounts: list[int], fill: float, axes=None) -> Tensor:
    mode = ctx.attr("mode", "constant")
    count = len(amounts) // 2
    axes_list = [a % x.dim() for a in (axes or range(count))]
    begins, ends = [0] * x.dim(), [0] * x.dim()
    for i, axis in enumerate(axes_list):
        begins[axis], ends[axis] = amounts[i], amounts[count + i]
    if mode == "constant":
        torch_pads = [p for axis in reversed(range(x.dim())) for p in (begins[axis], ends[axis])]
        return F.pad(x, torch_pads, value=fill)
    for axis in range(x.dim()):  # torch pads these modes on trailing dims only: one axis at a time
        if begins[axis] or ends[axis]:
            moved = x.movedim(axis, -1)
            flat = moved.reshape(1, -1, moved.shape[-1])
            if min(begins[axis], ends[axis]) < 0:
                raise ctx.unsupported(f"negative pads with mode={mode}")
            padded = F.pad(flat, [begins[axis], ends[axis]], mode=_PAD_MODES[mode])
            x = padded.reshape(*moved.shape[:-1], -1).movedim(-1, axis)
    return x


@register("Pad", since=2)
def pad_2(ctx: OpContext, x: Tensor) -> Tensor:
    return _pad(ctx, x, ctx.attr("pads"), ctx.attr("value", 0.0))


@register("Pad", since=11)
def pad(ctx: OpContext, x: Tensor, pads: Tensor, value: Tensor | None = None, axes=None):
    fill = 0.0 if value is None or value.numel() == 0 else value.item()
    return _pad(ctx, x, ints(pads), fill, ints(axes))


@register("DepthToSpace")
def depth_to_space(ctx: OpContext, x: Tensor) -> Tensor:
    block = ctx.attr("blocksize")
    n, c, h, w = x.shape
    if ctx.attr("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, block)
    y = x.reshape(n, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // block**2, h * block, w * block)


@register("SpaceToDepth")
def space_to_depth(ctx: OpContext, x: Tensor) -> Tensor:
    block = ctx.attr("blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * block**2, h // block, w // block)


@register("Trilu")
def trilu(ctx: OpContext, x: Tensor, k: Tensor | None = None) -> Tensor:
    offset = 0 if k is None else int(k.reshape(-1)[0])
    return torch.triu(x, offset) if ctx.attr("upper", 1) else torch.tril(x, offset)


@register("NonZero")
def non_zero(ctx: OpContext, x: Tensor) -> Tensor:
    return torch.nonzero(x.reshape(1) if x.dim() == 0 else x).T.contiguous()


@register("OneHot")
def one_hot(ctx: OpContext, indices: Tensor, depth: Tensor, values: Tensor) -> Tensor:
    count = int(depth.reshape(-1)[0])
    positions = indices.long()
    positions = torch.where(positions < 0, positions + count, positions)
    valid = (positions >= 0) & (positions < count)
    hot = F.one_hot(positions.clamp(0, count - 1), count) * valid.unsqueeze(-1)
    axis = ctx.attr("axis", -1) % (indices.dim() + 1)
    hot = hot.movedim(-1, axis).to(torch.bool)
    return torch.where(hot, values[1], values[0])


@register("EyeLike")
def eye_like(ctx: OpContext, x: Tensor) -> Tensor:
    dtype = torch_dtype(ctx.attr("dtype")) if ctx.attr("dtype") is not None else x.dtype
    rows, cols = x.shape
    return torch.from_numpy(np.eye(rows, cols, ctx.attr("k", 0))).to(dtype)


def _top_k(ctx: OpContext, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Stable: among equal values the lower index comes first, as ONNX requires."""
    axis = ctx.attr("axis", -1) % x.dim()
    largest = bool(ctx.attr("largest", 1))
    values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
    return values.narrow(axis, 0, k), indices.narrow(axis, 0, k)


@register("TopK")
def top_k_1(ctx: OpContext, x: Tensor) -> tuple[Tensor, Tensor]:
    return _top_k(ctx, x, ctx.attr("k"))


@register("TopK", since=10)
def top_k(ctx: OpContext, x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    return _top_k(ctx, x, int(k.reshape(-1)[0]))
