"""LSTM, GRU and RNN with ONNX's gate order, directions, sequence lengths and layouts.

The input projection of every step is one matrix product up front; the recurrence is a
plain loop over time steps, so gradients flow through it like through any other rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from onnxslim_kd.distill.ops.registry import OpContext, register

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu,
}  # fmt: skip
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                        "RNN": ["Tanh"]}  # fmt: skip


def _activations(ctx: OpContext, directions: int) -> list[list[Callable[[Tensor], Tensor]]]:
    """The activation functions of each direction, by name."""
    default = _DEFAULT_ACTIVATIONS[ctx.node.op_type]
    names = list(ctx.attr("activations") or default * directions)
    if len(names) == len(default):
        names = names * directions
    unknown = [name for name in names if name not in _ACTIVATIONS]
    if unknown or ctx.attr("activation_alpha") or ctx.attr("activation_beta"):
        raise ctx.unsupported(f"activations={names}")
    width = len(default)
    chosen = [_ACTIVATIONS[name] for name in names]
    return [chosen[d * width : (d + 1) * width] for d in range(directions)]


def _steps(direction: str, index: int, length: int) -> range:
    reverse = direction == "reverse" or (direction == "bidirectional" and index == 1)
    return range(length - 1, -1, -1) if reverse else range(length)


def _clip(ctx: OpContext) -> Callable[[Tensor], Tensor]:
    limit = ctx.attr("clip")
    return (lambda v: v) if limit is None else (lambda v: v.clamp(-limit, limit))


def _run(ctx: OpContext, x: Tensor, initial: list[Tensor | None], sequence_lens, cell):
    """Loop `cell(direction, step input, states) -> states` over time for each direction.

    Returns Y [T, D, N, H] and the final states, each [D, N, H]; batch entries past
    their sequence length keep their state and output zeros, as ONNX defines.
    """
    layout = ctx.attr("layout", 0)
    if layout:
        x = x.transpose(0, 1)
        initial = [None if s is None else s.transpose(0, 1) for s in initial]
    length, batch = x.shape[0], x.shape[1]
    hidden = ctx.attr("hidden_size")
    direction = ctx.attr("direction", "forward")
    directions = 2 if direction == "bidirectional" else 1
    lens = None if sequence_lens is None else sequence_lens.long()
    outputs, finals = [], []
    for d in range(directions):
        states = [torch.zeros(batch, hidden, dtype=x.dtype) if s is None else s[d] for s in initial]
        ys: list[Tensor | None] = [None] * length
        for t in _steps(direction, d, length):
            updated = cell(d, t, states)
            if lens is not None:
                alive = (t < lens).unsqueeze(1)
                pairs = zip(updated, states, strict=True)
                updated = [torch.where(alive, new, old) for new, old in pairs]
                ys[t] = torch.where(alive, updated[0], torch.zeros_like(updated[0]))
            else:
                ys[t] = updated[0]
            states = updated
        outputs.append(torch.stack(ys))
        finals.append(states)
    y = torch.stack(outputs, dim=1)
    last = [torch.stack([f[i] for f in finals]) for i in range(len(initial))]
    if layout:
        return (y.permute(2, 0, 1, 3), *[s.transpose(0, 1) for s in last])
    return (y, *last)


def _projections(x: Tensor, w: Tensor, b: Tensor | None, layout: int):
    """X W^T + Wb for every step and direction: [D, T, N, gates * H]."""
    steps = x.transpose(0, 1) if layout else x
    projected = torch.einsum("tni,dgi->dtng", steps, w)
    if b is not None:
        projected = projected + b[:, : w.shape[1]].reshape(w.shape[0], 1, 1, -1)
    return projected


@dataclass(frozen=True)
class _Layer:
    """What every step of a recurrent layer reads: activations and clip per the node, the
    input projection of all steps, and the width of W's half of the bias."""

    act: list[list[Callable[[Tensor], Tensor]]]
    clip: Callable[[Tensor], Tensor]
    projected: Tensor
    width: int

    @classmethod
    def of(cls, ctx: OpContext, x: Tensor, w: Tensor, b: Tensor | None) -> _Layer:
        act = _activations(ctx, w.shape[0])
        projected = _projections(x, w, b, ctx.attr("layout", 0))
        return cls(act, _clip(ctx), projected, w.shape[1])


def _recurrent_bias(b: Tensor | None, d: int, width: int) -> Tensor | float:
    return 0.0 if b is None else b[d, width:]


@register("LSTM", weights=(1, 2, 3, 7))
def lstm(ctx: OpContext, x, w, r, b=None, sequence_lens=None, h0=None, c0=None, p=None):
    layer = _Layer.of(ctx, x, w, b)
    act, clip, projected, width = layer.act, layer.clip, layer.projected, layer.width
    coupled = bool(ctx.attr("input_forget", 0))

    def cell(d: int, t: int, states: list[Tensor]) -> list[Tensor]:
        h, c = states
        gates = projected[d, t] + h @ r[d].T + _recurrent_bias(b, d, width)
        i, o, f, g = gates.chunk(4, dim=1)
        pi, po, pf = (0.0, 0.0, 0.0) if p is None else p[d].chunk(3)
        i = act[d][0](clip(i + pi * c))
        f = 1 - i if coupled else act[d][0](clip(f + pf * c))
        c = f * c + i * act[d][1](clip(g))
        o = act[d][0](clip(o + po * c))
        return [o * act[d][2](c), c]

    return _run(ctx, x, [h0, c0], sequence_lens, cell)


@register("GRU", weights=(1, 2, 3))
def gru(ctx: OpContext, x, w, r, b=None, sequence_lens=None, h0=None):
    layer = _Layer.of(ctx, x, w, b)
    act, clip, projected, width = layer.act, layer.clip, layer.projected, layer.width
    before_reset = bool(ctx.attr("linear_before_reset", 0))

    def cell(d: int, t: int, states: list[Tensor]) -> list[Tensor]:
        (h,) = states
        xz, xr, xh = projected[d, t].chunk(3, dim=1)
        rz, rr, rh = r[d].chunk(3)
        bz, br, bh = (0.0, 0.0, 0.0) if b is None else b[d, width:].chunk(3)
        z = act[d][0](clip(xz + h @ rz.T + bz))
        reset = act[d][0](clip(xr + h @ rr.T + br))
        recurrent = reset * (h @ rh.T + bh) if before_reset else (reset * h) @ rh.T + bh
        candidate = act[d][1](clip(xh + recurrent))
        return [(1 - z) * candidate + z * h]

    return _run(ctx, x, [h0], sequence_lens, cell)


@register("RNN", weights=(1, 2, 3))
def rnn(ctx: OpContext, x, w, r, b=None, sequence_lens=None, h0=None):
    layer = _Layer.of(ctx, x, w, b)

    def cell(d: int, t: int, states: list[Tensor]) -> list[Tensor]:
        (h,) = states
        step = layer.projected[d, t] + h @ r[d].T + _recurrent_bias(b, d, layer.width)
        return [layer.act[d][0](layer.clip(step))]

    return _run(ctx, x, [h0], sequence_lens, cell)
