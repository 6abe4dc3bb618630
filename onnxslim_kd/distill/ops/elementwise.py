"""Activations, arithmetic, comparison and logic, element by element."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register

#: Unsigned types torch stores but has few kernels for: computed in int64, cast back.
_WIDENED = (torch.uint16, torch.uint32, torch.uint64)


def _widening(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run `fn` on int64 copies of unsigned 16/32/64-bit operands, cast numbers back."""

    def run(*xs: Tensor) -> Tensor:
        dtype = xs[0].dtype
        if dtype not in _WIDENED:
            return fn(*xs)
        result = fn(*(x.to(torch.int64) for x in xs))
        return result.to(dtype) if result.dtype == torch.int64 else result

    return run


def _unary(op_type: str, fn: Callable[[Tensor], Tensor]) -> None:
    widened = _widening(fn)
    register(op_type)(lambda ctx, x: widened(x))


for _name, _fn in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf,
    "HardSwish": F.hardswish, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Abs": torch.abs, "Neg": torch.neg, "Reciprocal": torch.reciprocal, "Softplus": F.softplus,
    "Floor": torch.floor, "Ceil": torch.ceil, "Identity": lambda x: x, "Round": torch.round,
    "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan,
    "Asin": torch.asin, "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh,
    "Cosh": torch.cosh, "Asinh": torch.asinh, "Acosh": torch.acosh, "Atanh": torch.atanh,
    "Mish": F.mish, "Softsign": F.softsign, "Not": torch.logical_not, "IsNaN": torch.isnan,
    "BitwiseNot": torch.bitwise_not,
}.items():  # fmt: skip
    _unary(_name, _fn)


@register("Dropout")
def dropout(ctx: OpContext, x: Tensor, ratio=None, training_mode=None):
    """Inference: the identity, and an all-true mask when the mask output is used."""
    if training_mode is not None and bool(training_mode) and (ratio is None or float(ratio)):
        raise ctx.unsupported("training_mode=1 (random masks cannot match a reference)")
    return x, torch.ones_like(x, dtype=torch.bool)


@register("IsInf")
def is_inf(ctx: OpContext, x: Tensor) -> Tensor:
    positive, negative = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    found = torch.zeros_like(x, dtype=torch.bool)
    found = found | torch.isposinf(x) if positive else found
    return found | torch.isneginf(x) if negative else found


@register("LeakyRelu")
def leaky_relu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.leaky_relu(x, ctx.attr("alpha", 0.01))


@register("Elu")
def elu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.elu(x, ctx.attr("alpha", 1.0))


@register("Selu")
def selu(ctx: OpContext, x: Tensor) -> Tensor:
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@register("Celu")
def celu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.celu(x, ctx.attr("alpha", 1.0))


@register("ThresholdedRelu")
def thresholded_relu(ctx: OpContext, x: Tensor) -> Tensor:
    return torch.where(x > ctx.attr("alpha", 1.0), x, torch.zeros_like(x))


@register("Shrink")
def shrink(ctx: OpContext, x: Tensor) -> Tensor:
    bias, lambd = ctx.attr("bias", 0.0), ctx.attr("lambd", 0.5)
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))


@register("PRelu", weights=(1,))
def prelu(ctx: OpContext, x: Tensor, slope: Tensor) -> Tensor:
    return torch.where(x >= 0, x, x * slope)


@register("HardSigmoid")
def hard_sigmoid(ctx: OpContext, x: Tensor) -> Tensor:
    return (ctx.attr("alpha", 0.2) * x + ctx.attr("beta", 0.5)).clamp(0.0, 1.0)


@register("Clip")
def clip_6(ctx: OpContext, x: Tensor) -> Tensor:
    """Before version 11 the bounds are attributes."""
    return x.clamp(min=ctx.attr("min", -math.inf), max=ctx.attr("max", math.inf))


@register("Clip", since=11)
def clip(ctx: OpContext, x: Tensor, low: Tensor | None = None, high: Tensor | None = None):
    if low is None and high is None:
        return x
    return x.clamp(min=low, max=high)


@register("Gelu")
def gelu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.gelu(x, approximate=ctx.attr("approximate", "none"))


def _coerced(ctx: OpContext, x: Tensor, fn: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Before version 13 the input is coerced to 2-D at `axis` (default 1)."""
    axis = ctx.attr("axis", 1) % max(x.dim(), 1)
    return fn(x.reshape(int(np.prod(x.shape[:axis])), -1), 1).reshape(x.shape)


def _hardmax(x: Tensor, dim: int) -> Tensor:
    """One-hot of the first maximum along `dim`."""
    return F.one_hot(x.argmax(dim=dim), x.shape[dim]).movedim(-1, dim).to(x.dtype)


_SOFTMAX_LIKE = {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax, "Hardmax": _hardmax}


@register(*_SOFTMAX_LIKE)
def softmax_coerced(ctx: OpContext, x: Tensor) -> Tensor:
    return _coerced(ctx, x, _SOFTMAX_LIKE[ctx.node.op_type])


@register(*_SOFTMAX_LIKE, since=13)
def softmax(ctx: OpContext, x: Tensor) -> Tensor:
    return _SOFTMAX_LIKE[ctx.node.op_type](x, ctx.attr("axis", -1))


@register("Add", per_channel=True)
def add(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return _widening(torch.add)(a, b)


@register("Sub", per_channel=True)
def sub(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return _widening(torch.sub)(a, b)


@register("Mul", per_channel=True)
def mul(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return _widening(torch.mul)(a, b)


@register("Div", per_channel=True)
def div(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    """Integer division truncates in ONNX (shape arithmetic of the legacy exporter)."""
    if a.dtype.is_floating_point:
        return a / b
    return _widening(lambda x, y: torch.div(x, y, rounding_mode="trunc"))(a, b)


@register("Mod")
def mod(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    """fmod=1: C's fmod (sign of the dividend); fmod=0: sign of the divisor."""
    fn = torch.fmod if ctx.attr("fmod", 0) else torch.remainder
    return _widening(fn)(a, b)


@register("Pow")
def power(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    """The result has the base's type (an integer base stays integer)."""
    return torch.pow(a, b).to(a.dtype)


@register("Max", "Min", "Sum", "Mean")
def variadic(ctx: OpContext, *xs: Tensor) -> Tensor:
    fold = {"Max": torch.maximum, "Min": torch.minimum}.get(ctx.node.op_type, torch.add)
    y = xs[0]
    for x in xs[1:]:
        y = _widening(fold)(y, x)
    return y / len(xs) if ctx.node.op_type == "Mean" else y


_BINARY = {
    "Equal": torch.eq, "Less": torch.lt, "LessOrEqual": torch.le, "Greater": torch.gt,
    "GreaterOrEqual": torch.ge, "And": torch.logical_and, "Or": torch.logical_or,
    "Xor": torch.logical_xor, "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or,
    "BitwiseXor": torch.bitwise_xor,
}  # fmt: skip


@register(*_BINARY)
def binary(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return _widening(_BINARY[ctx.node.op_type])(a, b)


@register("BitShift")
def bit_shift(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    left = ctx.attr("direction") == "LEFT"
    return _widening(torch.bitwise_left_shift if left else torch.bitwise_right_shift)(a, b)


@register("Where")
def where(ctx: OpContext, condition: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(condition, a, b)


@register("CumSum")
def cumsum(ctx: OpContext, x: Tensor, axis: Tensor) -> Tensor:
    dim = int(axis.reshape(-1)[0]) % x.dim()
    reverse, exclusive = ctx.attr("reverse", 0), ctx.attr("exclusive", 0)
    values = x.flip(dim) if reverse else x
    total = values.cumsum(dim).to(x.dtype)
    if exclusive:
        total = total - values
    return total.flip(dim) if reverse else total
