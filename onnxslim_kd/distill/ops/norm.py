"""Normalization layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register


def _wanted(ctx: OpContext, position: int) -> bool:
    """Whether the node's optional output at `position` is used."""
    return len(ctx.node.output) > position and bool(ctx.node.output[position])


@register("BatchNormalization", weights=(1, 2))
def batch_norm(ctx: OpContext, x, scale, bias, mean, var):
    """Inference form: running statistics stay fixed, scale and shift train.

    With `training_mode=1` (op version 14+) the batch's own statistics normalise and the
    updated running statistics are the optional outputs, as the ONNX spec defines them.
    """
    epsilon = ctx.attr("epsilon", 1e-5)
    if not ctx.attr("training_mode", 0):
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)
    axes = [0, *range(2, x.dim())]
    batch_mean = x.mean(dim=axes)
    batch_var = x.var(dim=axes, unbiased=False)
    y = F.batch_norm(x, batch_mean, batch_var, scale, bias, False, 0.0, epsilon)
    momentum = ctx.attr("momentum", 0.9)
    running_mean = mean * momentum + batch_mean * (1 - momentum)
    running_var = var * momentum + batch_var * (1 - momentum)
    return y, running_mean, running_var


def _stash(ctx: OpContext, x: Tensor) -> torch.dtype:
    """The dtype statistics are computed in: float32 unless stash_type says x's own."""
    return torch.float32 if ctx.attr("stash_type", 1) == 1 else x.dtype


@register("LayerNormalization", since=17, weights=(1, 2))
def layer_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor | None = None):
    axis = ctx.attr("axis", -1) % x.dim()
    shape = x.shape[axis:]
    epsilon = ctx.attr("epsilon", 1e-5)
    if not (_wanted(ctx, 1) or _wanted(ctx, 2)) and x.dtype == _stash(ctx, x):
        bias = None if bias is None else bias.expand(shape)
        return F.layer_norm(x, shape, scale.expand(shape), bias, epsilon)
    stats = x.to(_stash(ctx, x))
    dims = tuple(range(axis, x.dim()))
    mean = stats.mean(dim=dims, keepdim=True)
    inverse = torch.rsqrt(stats.var(dim=dims, unbiased=False, keepdim=True) + epsilon)
    y = ((stats - mean) * inverse).to(x.dtype) * scale
    y = y if bias is None else y + bias
    return y, mean, inverse


@register("InstanceNormalization", weights=(1, 2))
def instance_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=ctx.attr("epsilon", 1e-5))


def _group_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor, per_group: bool):
    groups = ctx.attr("num_groups")
    epsilon = ctx.attr("epsilon", 1e-5)
    stats = x.to(_stash(ctx, x))
    grouped = stats.reshape(x.shape[0], groups, -1)
    mean = grouped.mean(dim=2, keepdim=True)
    var = grouped.var(dim=2, unbiased=False, keepdim=True)
    normed = ((grouped - mean) * torch.rsqrt(var + epsilon)).reshape(x.shape).to(x.dtype)
    if per_group:  # version 18: one scale and bias per group
        channels = x.shape[1] // groups
        scale, bias = scale.repeat_interleave(channels), bias.repeat_interleave(channels)
    view = (1, -1, *[1] * (x.dim() - 2))
    return normed * scale.reshape(view) + bias.reshape(view)


@register("GroupNormalization", since=18, weights=(1, 2))
def group_norm_18(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return _group_norm(ctx, x, scale, bias, per_group=True)


@register("GroupNormalization", since=21, weights=(1, 2))
def group_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return _group_norm(ctx, x, scale, bias, per_group=False)


@register("LRN")
def local_response_norm(ctx: OpContext, x: Tensor) -> Tensor:
    return F.local_response_norm(
        x, ctx.attr("size"), ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    )


@register("MeanVarianceNormalization")
def mean_variance_norm(ctx: OpContext, x: Tensor) -> Tensor:
    dims = tuple(ctx.attr("axes", [0, 2, 3]))
    mean = x.mean(dim=dims, keepdim=True)
    deviation = (x - mean).square().mean(dim=dims, keepdim=True).sqrt()
    return (x - mean) / (deviation + 1e-9)
