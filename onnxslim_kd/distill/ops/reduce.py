"""Reductions over axes, and the index of the extreme value along one."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register
from onnxslim_kd.distill.ops.values import ints


def _sum_square(x, dim, keepdim):
    return x.square().sum(dim=dim, keepdim=keepdim)


def _l1(x, dim, keepdim):
    return x.abs().sum(dim=dim, keepdim=keepdim)


def _l2(x, dim, keepdim):
    return x.square().sum(dim=dim, keepdim=keepdim).sqrt()


def _log_sum(x, dim, keepdim):
    return x.sum(dim=dim, keepdim=keepdim).log()


def _prod(x, dim, keepdim):
    for axis in sorted(dim, reverse=True):
        x = x.prod(dim=axis, keepdim=keepdim)
    return x


#: op type -> (reduction, its value over an empty set: the identity of the reduction).
_REDUCTIONS = {
    "ReduceSum": (torch.sum, 0.0), "ReduceMean": (torch.mean, math.nan),
    "ReduceMax": (torch.amax, -math.inf), "ReduceMin": (torch.amin, math.inf),
    "ReduceProd": (_prod, 1.0), "ReduceSumSquare": (_sum_square, 0.0),
    "ReduceL1": (_l1, 0.0), "ReduceL2": (_l2, 0.0), "ReduceLogSum": (_log_sum, -math.inf),
    "ReduceLogSumExp": (torch.logsumexp, -math.inf),
}  # fmt: skip


def _reduce(ctx: OpContext, x: Tensor, dims: list[int] | None) -> Tensor:
    if not dims:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        dims = list(range(x.dim()))
    dims = sorted({d % max(x.dim(), 1) for d in dims})
    keep = bool(ctx.attr("keepdims", 1))
    fn, empty = _REDUCTIONS[ctx.node.op_type]
    if any(x.shape[d] == 0 for d in dims):
        shape = [1 if d in dims else n for d, n in enumerate(x.shape)]
        shape = shape if keep else [n for d, n in enumerate(x.shape) if d not in dims]
        return torch.full(shape, _identity(empty, x.dtype), dtype=x.dtype)
    if x.dtype == torch.bool and ctx.node.op_type in ("ReduceMax", "ReduceMin"):
        return fn(x.to(torch.uint8), dim=tuple(dims), keepdim=keep).to(torch.bool)
    return fn(x, dim=tuple(dims), keepdim=keep)


def _identity(value: float, dtype: torch.dtype):
    """`value` in `dtype`: infinities of integer types become the type's bounds."""
    if dtype.is_floating_point or math.isnan(value) or math.isfinite(value):
        return value
    info = torch.iinfo(dtype) if dtype != torch.bool else None
    if info is None:
        return value > 0
    return info.max if value > 0 else info.min


@register(*_REDUCTIONS)
def reduce_attribute_axes(ctx: OpContext, x: Tensor) -> Tensor:
    return _reduce(ctx, x, ctx.attr("axes"))


@register("ReduceSum", since=13)
@register(*(op for op in _REDUCTIONS if op != "ReduceSum"), since=18)
def reduce_input_axes(ctx: OpContext, x: Tensor, axes: Tensor | None = None) -> Tensor:
    return _reduce(ctx, x, ints(axes))


@register("ArgMax", "ArgMin")
def arg_extreme(ctx: OpContext, x: Tensor) -> Tensor:
    axis = ctx.attr("axis", 0) % x.dim()
    keep = bool(ctx.attr("keepdims", 1))
    fn = torch.argmax if ctx.node.op_type == "ArgMax" else torch.argmin
    if not ctx.attr("select_last_index", 0):
        return fn(x, dim=axis, keepdim=keep)
    return x.shape[axis] - 1 - fn(x.flip(axis), dim=axis, keepdim=keep)
