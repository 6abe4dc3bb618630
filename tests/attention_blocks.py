"""Attention blocks exported from torch the ways real models come: view/transpose, timm's
`B, N, C = x.shape` sizes (head size C // heads, merged back to C), Hugging Face-style
size()[:-1] + (heads, size) views, F.scaled_dot_product_attention; by
the legacy (TorchScript) and the dynamo exporter, with dynamic batch and sequence."""

from __future__ import annotations

import io

import onnx
import torch
import torch.nn.functional as F
from torch import nn

STYLES = ("view", "hf", "sdpa", "fused", "timm")


class Attention(nn.Module):
    """Separate Q/K/V projections, `heads` heads, an output projection and a residual."""

    def __init__(self, width: int, heads: int, style: str) -> None:
        super().__init__()
        self.heads, self.size, self.style = heads, width // heads, style
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.qkv = nn.Linear(width, 3 * width)  # timm's fused projection, used by "fused"
        self.out = nn.Linear(width, width)

    def _split(self, t: torch.Tensor, width: int) -> torch.Tensor:
        if self.style == "hf":
            shape = t.size()[:-1] + (self.heads, self.size)  # noqa: RUF005 - as HF writes it
            return t.view(shape).permute(0, 2, 1, 3)
        n, steps, _ = t.shape
        size = width // self.heads if self.style == "timm" else -1
        return t.view(n, steps, self.heads, size).transpose(1, 2)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.style != "fused":
            width = x.shape[2]  # the residual's width, as timm reads C
            return tuple(self._split(p(x), width) for p in (self.query, self.key, self.value))
        n, steps, _ = x.shape
        qkv = self.qkv(x).reshape(n, steps, 3, self.heads, self.size).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        if self.style == "sdpa":
            context = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = q @ k.transpose(-1, -2) / self.size**0.5
            context = scores.softmax(dim=-1) @ v
        context = context.transpose(1, 2)
        if self.style == "hf":
            merged = context.reshape(context.size()[:-2] + (self.heads * self.size,))  # noqa: RUF005
        elif self.style == "timm":
            merged = context.reshape(x.shape)
        else:
            merged = context.flatten(2)
        return x + self.out(merged)


class Block(nn.Module):
    """Attention, then a GELU MLP, each behind a residual (the norms are left out here:
    their own rule is the residual width's, not the heads')."""

    def __init__(self, width: int = 16, heads: int = 4, style: str = "view") -> None:
        super().__init__()
        self.attention = Attention(width, heads, style)
        hidden = 2 * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return x + self.mlp(x)


def export(module: nn.Module, example: torch.Tensor, dynamo: bool = False) -> onnx.ModelProto:
    """The module as ONNX with dynamic batch and sequence length."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    axes = {"x": {0: "batch", 1: "steps"}, "y": {0: "batch", 1: "steps"}}
    if dynamo:
        steps = torch.export.Dim("steps", min=2, max=512)
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.onnx.export(
            module.eval(), (example,), dynamo=True, input_names=["x"], output_names=["y"],
            dynamic_shapes=({0: batch, 1: steps},), verbose=False,
        )  # fmt: skip
        program.save(buffer)
    else:
        torch.onnx.export(
            module.eval(), (example,), buffer, dynamo=False, opset_version=17,
            input_names=["x"], output_names=["y"], dynamic_axes=axes,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


class TinyViT(nn.Module):
    """A ViT as timm and torchvision write one: a patch-embedding conv, x.flatten(2), a
    class token joined with torch.cat, position embeddings, pre-norm blocks (attention
    written out, GELU MLP), a final LayerNorm and x[:, 0]; `norms=False` leaves the
    LayerNorms out (for exact parity of everything else)."""

    def __init__(
        self, width: int = 16, heads: int = 4, depth: int = 2, norms: bool = True,
        style: str = "view",
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Conv2d(1, width, 4, 4)
        self.token = nn.Parameter(torch.randn(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, 17, width))
        norm = nn.LayerNorm if norms else lambda _: nn.Identity()
        self.norms = nn.ModuleList(norm(width) for _ in range(2 * depth + 1))
        self.blocks = nn.ModuleList(Block(width, heads, style) for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.token.expand(x.shape[0], -1, -1), t], 1) + self.position
        for number, block in enumerate(self.blocks):
            t = block.attention(self.norms[2 * number](t))  # the block adds the residual
            t = t + block.mlp(self.norms[2 * number + 1](t))
        return self.head(self.norms[-1](t)[:, 0])


def export_image(module: nn.Module, dynamo: bool = False) -> onnx.ModelProto:
    """An image model on [N, 1, 16, 16] as ONNX with a dynamic batch."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    example = (torch.randn(2, 1, 16, 16),)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.onnx.export(
            module.eval(), example, dynamo=True, input_names=["input"], output_names=["y"],
            dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        program.save(buffer)
    else:
        torch.onnx.export(
            module.eval(), example, buffer, dynamo=False, opset_version=17,
            input_names=["input"], output_names=["y"],
            dynamic_axes={"input": {0: "batch"}, "y": {0: "batch"}},
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())
