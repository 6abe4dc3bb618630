"""One torch rule per ONNX op type, in a registry (like onnxruntime's quantization/registry.py).

A rule computes a node's outputs from its input tensors and names the input positions that
hold trainable weights, so the executor knows which initializers become `nn.Parameter`s.
Rules follow the ONNX spec for opsets 11..21; attribute-to-input moves are handled per op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.walk import attribute


@dataclass(frozen=True)
class OpContext:
    """What a rule may read besides its inputs: the node (attributes) and the model's opset."""

    node: onnx.NodeProto
    opset: int

    def attr(self, name: str, default=None):
        value = attribute(self.node, name, default)
        return value.decode() if isinstance(value, bytes) else value

    def unsupported(self, what: str) -> InputError:
        return InputError(
            f"distill: {self.node.op_type} node '{self.node.name}' uses {what}, "
            "which the torch executor does not support"
        )


RuleFn = Callable[..., Tensor | tuple[Tensor, ...] | list[Tensor]]


@dataclass(frozen=True)
class Rule:
    """How to run one op type; `weights` are input positions holding trainable tensors.

    `per_channel` marks element-wise ops whose constant operands with more than one element
    (per-channel scales and shifts) are trainable too; scalar constants stay fixed.
    """

    fn: RuleFn
    weights: frozenset[int] = frozenset()
    per_channel: bool = False


RULES: dict[str, Rule] = {}


def register(*op_types: str, weights: tuple[int, ...] = (), per_channel: bool = False):
    """Decorator adding `fn` as the rule of every op type in `op_types`."""

    def wrap(fn: RuleFn) -> RuleFn:
        for op_type in op_types:
            RULES[op_type] = Rule(fn, frozenset(weights), per_channel)
        return fn

    return wrap


def torch_dtype(onnx_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type."""
    return torch.from_numpy(np.empty(0, onnx.helper.tensor_dtype_to_np_dtype(onnx_type))).dtype


def _ints(value: Tensor | None) -> list[int] | None:
    return None if value is None else [int(v) for v in value.reshape(-1).tolist()]


# --- convolution, pooling, dense ---------------------------------------------------------


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


def _symmetric(x: Tensor, pads: list[int], value: float = 0.0) -> tuple[Tensor, list[int]]:
    """Torch pads both sides equally: pad asymmetric cases explicitly, return the rest."""
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return x, begins
    torch_pads = [p for i in reversed(range(rank)) for p in (begins[i], ends[i])]
    return F.pad(x, torch_pads, value=value), [0] * rank


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@register("Conv", weights=(1, 2))
def conv(ctx: OpContext, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    rank = x.dim() - 2
    strides = ctx.attr("strides", [1] * rank)
    dilations = ctx.attr("dilations", [1] * rank)
    x, padding = _symmetric(x, _pads(ctx, x, list(w.shape[2:]), strides, dilations))
    return _CONV[rank](x, w, b, strides, padding, dilations, ctx.attr("group", 1))


@register("ConvTranspose", weights=(1, 2))
def conv_transpose(ctx: OpContext, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    rank = x.dim() - 2
    if ctx.attr("output_shape") is not None or ctx.attr("auto_pad", "NOTSET") != "NOTSET":
        raise ctx.unsupported("output_shape/auto_pad")
    pads = ctx.attr("pads", [0] * 2 * rank)
    y = _CONV_T[rank](
        x, w, b, ctx.attr("strides", [1] * rank), 0, ctx.attr("output_padding", [0] * rank),
        ctx.attr("group", 1), ctx.attr("dilations", [1] * rank),
    )  # fmt: skip
    crop = [slice(None), slice(None)]
    crop += [slice(pads[i], y.shape[2 + i] - pads[rank + i]) for i in range(rank)]
    return y[tuple(crop)]


def _pool_geometry(ctx: OpContext, x: Tensor):
    kernel = ctx.attr("kernel_shape")
    rank = len(kernel)
    strides = ctx.attr("strides", [1] * rank)
    dilations = ctx.attr("dilations", [1] * rank)
    return kernel, strides, dilations, _pads(ctx, x, kernel, strides, dilations)


@register("MaxPool")
def max_pool(ctx: OpContext, x: Tensor) -> Tensor:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.unsupported("the Indices output")
    kernel, strides, dilations, pads = _pool_geometry(ctx, x)
    x, padding = _symmetric(x, pads, value=-math.inf)
    if any(p > k // 2 for p, k in zip(padding, kernel, strict=True)):
        x = F.pad(x, [p for p in reversed(padding) for _ in (0, 1)], value=-math.inf)
        padding = [0] * len(kernel)
    pool = _MAX_POOL[len(kernel)]
    return pool(x, kernel, strides, padding, dilations, ceil_mode=bool(ctx.attr("ceil_mode", 0)))


@register("AveragePool")
def average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    kernel, strides, _, pads = _pool_geometry(ctx, x)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    pool = _AVG_POOL[len(kernel)]
    rank = len(kernel)
    if pads[:rank] == pads[rank:]:
        return pool(x, kernel, strides, pads[:rank], ceil_mode, include_pad)
    padded, _ = _symmetric(x, pads)
    y = pool(padded, kernel, strides, 0, ceil_mode)
    if include_pad:
        return y
    ones, _ = _symmetric(torch.ones_like(x[:1, :1]), pads)
    return y / pool(ones, kernel, strides, 0, ceil_mode)


@register("GlobalAveragePool")
def global_average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext, x: Tensor) -> Tensor:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


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


# --- normalization -------------------------------------------------------------------------


@register("BatchNormalization", weights=(1, 2))
def batch_norm(ctx: OpContext, x, scale, bias, mean, var) -> Tensor:
    """Inference form: running statistics stay fixed, scale and shift train."""
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, ctx.attr("epsilon", 1e-5))


@register("LayerNormalization", weights=(1, 2))
def layer_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    shape = x.shape[ctx.attr("axis", -1) % x.dim() :]
    bias = None if bias is None else bias.expand(shape)
    return F.layer_norm(x, shape, scale.expand(shape), bias, ctx.attr("epsilon", 1e-5))


@register("InstanceNormalization", weights=(1, 2))
def instance_norm(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=ctx.attr("epsilon", 1e-5))


# --- activations and element-wise math -----------------------------------------------------


def _unary(op_type: str, fn: Callable[[Tensor], Tensor]) -> None:
    register(op_type)(lambda ctx, x: fn(x))


for _name, _fn in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf,
    "HardSwish": F.hardswish, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Abs": torch.abs, "Neg": torch.neg, "Reciprocal": torch.reciprocal, "Softplus": F.softplus,
    "Floor": torch.floor, "Ceil": torch.ceil, "Identity": lambda x: x, "Dropout": lambda x: x,
}.items():  # fmt: skip
    _unary(_name, _fn)


@register("LeakyRelu")
def leaky_relu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.leaky_relu(x, ctx.attr("alpha", 0.01))


@register("Elu")
def elu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.elu(x, ctx.attr("alpha", 1.0))


@register("PRelu", weights=(1,))
def prelu(ctx: OpContext, x: Tensor, slope: Tensor) -> Tensor:
    return torch.where(x >= 0, x, x * slope)


@register("HardSigmoid")
def hard_sigmoid(ctx: OpContext, x: Tensor) -> Tensor:
    return (ctx.attr("alpha", 0.2) * x + ctx.attr("beta", 0.5)).clamp(0.0, 1.0)


@register("Clip")
def clip(ctx: OpContext, x: Tensor, low: Tensor | None = None, high: Tensor | None = None):
    return x.clamp(min=low, max=high)


@register("Gelu")
def gelu(ctx: OpContext, x: Tensor) -> Tensor:
    return F.gelu(x, approximate=ctx.attr("approximate", "none"))


def _softmax(ctx: OpContext, x: Tensor, fn) -> Tensor:
    """Opset 13 made the axis a plain dim; before, the input is coerced to 2-D at the axis."""
    if ctx.opset >= 13:
        return fn(x, dim=ctx.attr("axis", -1))
    axis = ctx.attr("axis", 1) % x.dim()
    return fn(x.reshape(int(np.prod(x.shape[:axis])), -1), dim=1).reshape(x.shape)


@register("Softmax")
def softmax(ctx: OpContext, x: Tensor) -> Tensor:
    return _softmax(ctx, x, torch.softmax)


@register("LogSoftmax")
def log_softmax(ctx: OpContext, x: Tensor) -> Tensor:
    return _softmax(ctx, x, torch.log_softmax)


@register("Add", per_channel=True)
def add(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return a + b


@register("Sub", per_channel=True)
def sub(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return a - b


@register("Mul", per_channel=True)
def mul(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return a * b


@register("Div", per_channel=True)
def div(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    """Integer division truncates in ONNX (shape arithmetic of the legacy exporter)."""
    if a.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@register("Pow")
def power(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return torch.pow(a, b)


@register("Max", "Min", "Sum", "Mean")
def variadic(ctx: OpContext, *xs: Tensor) -> Tensor:
    fold = {"Max": torch.maximum, "Min": torch.minimum}.get(ctx.node.op_type, torch.add)
    y = xs[0]
    for x in xs[1:]:
        y = fold(y, x)
    return y / len(xs) if ctx.node.op_type == "Mean" else y


@register("Equal")
def equal(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    return a == b


@register("Where")
def where(ctx: OpContext, condition: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(condition, a, b)


# --- reductions ------------------------------------------------------------------------------

#: Opset at which each reduction's axes moved from an attribute to an input.
_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18}


@register(*_AXES_INPUT_SINCE)
def reduce(ctx: OpContext, x: Tensor, axes: Tensor | None = None) -> Tensor:
    attribute_axes = ctx.opset < _AXES_INPUT_SINCE[ctx.node.op_type]
    dims = ctx.attr("axes") if attribute_axes else _ints(axes)
    if not dims:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        dims = list(range(x.dim()))
    keep = bool(ctx.attr("keepdims", 1))
    fn = {"ReduceSum": torch.sum, "ReduceMean": torch.mean}.get(ctx.node.op_type)
    if fn is not None:
        return fn(x, dim=tuple(dims), keepdim=keep)
    extreme = torch.amax if ctx.node.op_type == "ReduceMax" else torch.amin
    return extreme(x, dim=tuple(dims), keepdim=keep)


# --- shape and data movement -------------------------------------------------------------------


@register("Flatten")
def flatten(ctx: OpContext, x: Tensor) -> Tensor:
    axis = ctx.attr("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@register("Reshape")
def reshape(ctx: OpContext, x: Tensor, shape: Tensor) -> Tensor:
    dims = _ints(shape)
    if not ctx.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@register("Transpose")
def transpose(ctx: OpContext, x: Tensor) -> Tensor:
    return x.permute(ctx.attr("perm", list(reversed(range(x.dim())))))


@register("Concat")
def concat(ctx: OpContext, *xs: Tensor) -> Tensor:
    return torch.cat(xs, dim=ctx.attr("axis"))


@register("Split")
def split(ctx: OpContext, x: Tensor, sizes: Tensor | None = None) -> tuple[Tensor, ...]:
    axis = ctx.attr("axis", 0)
    parts = _ints(sizes) if ctx.opset >= 13 else ctx.attr("split")
    if not parts:
        count = len(ctx.node.output)
        parts = math.ceil(x.shape[axis] / count)
    return torch.split(x, parts, dim=axis)


@register("Slice")
def slice_(ctx, x: Tensor, starts: Tensor, ends: Tensor, axes=None, steps=None) -> Tensor:
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) or list(range(len(starts)))
    steps = _ints(steps) or [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= x.dim()
        if step > 0:
            index[axis] = slice(start, end, step)
        else:  # torch has no negative-step slicing: gather the indices Python would visit
            picked = range(*slice(start, end, step).indices(x.shape[axis]))
            x = x.index_select(axis, torch.tensor(list(picked), dtype=torch.long))
    return x[tuple(index)]


@register("Gather")
def gather(ctx: OpContext, x: Tensor, indices: Tensor) -> Tensor:
    axis = ctx.attr("axis", 0) % x.dim()
    flat = indices.reshape(-1).long()
    flat = torch.where(flat < 0, flat + x.shape[axis], flat)
    picked = x.index_select(axis, flat)
    return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))


@register("Shape")
def shape(ctx: OpContext, x: Tensor) -> Tensor:
    dims = list(x.shape)[ctx.attr("start", 0) : ctx.attr("end", None)]
    return torch.tensor(dims, dtype=torch.int64)


@register("Cast")
def cast(ctx: OpContext, x: Tensor) -> Tensor:
    return x.to(torch_dtype(ctx.attr("to")))


@register("Unsqueeze")
def unsqueeze(ctx: OpContext, x: Tensor, axes: Tensor | None = None) -> Tensor:
    axes_list = ctx.attr("axes") if ctx.opset < 13 else _ints(axes)
    rank = x.dim() + len(axes_list)
    for axis in sorted(a % rank for a in axes_list):
        x = x.unsqueeze(axis)
    return x


@register("Squeeze")
def squeeze(ctx: OpContext, x: Tensor, axes: Tensor | None = None) -> Tensor:
    axes_list = ctx.attr("axes") if ctx.opset < 13 else _ints(axes)
    if not axes_list:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes_list))


@register("Expand")
def expand(ctx: OpContext, x: Tensor, shape: Tensor) -> Tensor:
    return x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(shape))))


@register("ConstantOfShape")
def constant_of_shape(ctx: OpContext, shape: Tensor) -> Tensor:
    value = ctx.attr("value")
    fill = torch.zeros(1) if value is None else torch.from_numpy(onnx.numpy_helper.to_array(value))
    return fill.reshape(-1)[0].expand(_ints(shape)).clone()


@register("Range")
def range_(ctx: OpContext, start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad")
def pad(ctx: OpContext, x: Tensor, pads: Tensor, value: Tensor | None = None, axes=None):
    mode = ctx.attr("mode", "constant")
    amounts = _ints(pads)
    count = len(amounts) // 2
    axes_list = [a % x.dim() for a in (_ints(axes) or range(count))]
    begins, ends = [0] * x.dim(), [0] * x.dim()
    for i, axis in enumerate(axes_list):
        begins[axis], ends[axis] = amounts[i], amounts[count + i]
    torch_pads = [p for axis in reversed(range(x.dim())) for p in (begins[axis], ends[axis])]
    while torch_pads and torch_pads[-2:] == [0, 0]:  # torch pads trailing dims only
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        fill = 0.0 if value is None or value.numel() == 0 else value.item()
        return F.pad(x, torch_pads, value=fill)
    return F.pad(x, torch_pads, mode=_PAD_MODES[mode])


#: (mode, coordinate_transformation_mode) -> (torch interpolate mode, align_corners).
_RESIZE = {
    ("nearest", "asymmetric"): ("nearest", None),
    ("nearest", "half_pixel"): ("nearest-exact", None),
    ("linear", "half_pixel"): ("linear", False),
    ("linear", "pytorch_half_pixel"): ("linear", False),
    ("linear", "align_corners"): ("linear", True),
    ("cubic", "half_pixel"): ("cubic", False),
    ("cubic", "align_corners"): ("cubic", True),
}
_RANK_PREFIX = {1: "", 2: "bi", 3: "tri"}


@register("Resize")
def resize(ctx: OpContext, x: Tensor, roi=None, scales=None, sizes=None) -> Tensor:
    mode = ctx.attr("mode", "nearest")
    coordinates = ctx.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    key = (mode, coordinates)
    if (
        key not in _RESIZE
        or (key == ("nearest", "asymmetric") and nearest_mode != "floor")
        or ctx.attr("antialias", 0)
        or ctx.attr("axes") is not None
    ):
        raise ctx.unsupported(f"mode={mode}, coordinate_transformation_mode={coordinates}")
    torch_mode, align = _RESIZE[key]
    spatial = x.dim() - 2
    if torch_mode in ("linear", "cubic"):
        torch_mode = _RANK_PREFIX[spatial] + torch_mode
    if sizes is not None and sizes.numel():
        return F.interpolate(x, size=_ints(sizes)[2:], mode=torch_mode, align_corners=align)
    factors = [float(s) for s in scales.tolist()[2:]]
    return F.interpolate(x, scale_factor=factors, mode=torch_mode, align_corners=align)
