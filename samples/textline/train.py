"""Train a small text-line recogniser (conv stem, attention mixing block, CTC) and export it.

The sample is what INT8 finds hard in real OCR recognisers: LayerNorm and attention
between convolutions, a per-step class head and a dynamic image width. Data come from
render.py (offline, seeded).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import (
    ALPHABET,
    FONT_SIZES,
    HEIGHT,
    MAX_CHARS,
    MIN_CHARS,
    SPLITS,
    WIDTH,
    render_split,
)

from onnxslim_kd.report.fidelity import ctc_decode, text_accuracy

SEED = 0
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
SOURCE = "samples/textline/train.py"


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class SelfAttention(nn.Module):
    """Multi-head self-attention written as exporters see timm/Hugging Face blocks: Q, K, V
    projections, view/permute to heads, softmax(QK^T / sqrt(d)) V, output projection.
    (nn.MultiheadAttention's legacy export fixes the sequence length in its Reshapes.)"""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, 1 / math.sqrt(width // heads)
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, steps, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [N, T, C] -> [N, heads, T, C/heads]
            return t.view(n, steps, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return self.out((weights @ v).transpose(1, 2).reshape(n, steps, width))


class MixingBlock(nn.Module):
    """Pre-norm self-attention and MLP over the columns, as modern recognisers mix them."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        hidden = 2 * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TextLineRecognizer(nn.Module):
    """[N, 1, 32, W] -> per-column log-probabilities [N, W/4, classes] (blank = 0)."""

    def __init__(self, width: int = 96, classes: int = len(ALPHABET) + 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_conv(1, 32), nn.MaxPool2d(2), *_conv(32, 64), nn.MaxPool2d(2),
            *_conv(64, width), nn.MaxPool2d((2, 1)), *_conv(width, width), nn.MaxPool2d((2, 1)),
            nn.Conv2d(width, width, (HEIGHT // 16, 1)), nn.ReLU(),
        )  # fmt: skip
        self.mixing = MixingBlock(width, heads=4)
        self.head = nn.Linear(width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        columns = self.stem(image).squeeze(2).transpose(1, 2)  # [N, T, width]
        return self.head(self.mixing(columns)).log_softmax(-1)


def ctc_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated targets and their lengths from PAD-padded label rows."""
    lengths = (labels > 0).sum(1)
    return labels[labels > 0], lengths


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int) -> None:
    """AdamW with a one-cycle schedule on the CTC loss; all randomness is seeded."""
    generator = torch.Generator().manual_seed(SEED)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    steps = epochs * ((len(x) + BATCH_SIZE - 1) // BATCH_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order, total, started = torch.randperm(len(x), generator=generator), 0.0, time.time()
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            logprobs = model(x[idx]).transpose(0, 1)  # CTC wants [T, N, C]
            targets, target_lengths = ctc_targets(y[idx])
            input_lengths = torch.full((len(idx),), logprobs.shape[0], dtype=torch.long)
            loss = F.ctc_loss(logprobs, targets, input_lengths, target_lengths, zero_infinity=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs} ctc {total / len(x):.4f} "
              f"({time.time() - started:.0f}s)", flush=True)  # fmt: skip


def line_metrics(logprobs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Exact-match rate and character accuracy (1 - normalized edit distance) of the greedy
    CTC readings, decoded the way onnxslim-kd scores label sequences."""
    read = ctc_decode(logprobs, len(labels))
    exact = [r == [int(c) for c in row if c >= 0] for r, row in zip(read, labels, strict=True)]
    return {"exact_match": float(np.mean(exact)), "char_accuracy": text_accuracy(logprobs, labels)}


def export(model: nn.Module, path: Path) -> None:
    """Legacy export (opset 17), batch and width dynamic, with the alphabet as metadata."""
    dummy = torch.zeros(2, 1, HEIGHT, WIDTH)
    torch.onnx.export(
        model.eval(), (dummy,), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logprobs"],
        dynamic_axes={"input": {0: "batch", 3: "width"}, "logprobs": {0: "batch", 1: "steps"}},
    )  # fmt: skip
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"alphabet": ALPHABET, "blank": "0", "source": SOURCE})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def onnx_outputs(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0]


def check_dynamic_width(path: Path, images: np.ndarray) -> None:
    """The export must run at other widths: lines twice as wide give twice the steps."""
    wide = np.concatenate([images, np.ones_like(images)], axis=3)
    steps = onnx_outputs(path, wide).shape[1]
    if steps != wide.shape[3] // 4:
        raise SystemExit(f"{path}: width is not dynamic ({steps} steps at width {wide.shape[3]})")


def write_readme(out_dir: Path, metrics: dict[str, float], params: int, epochs: int) -> None:
    """Describe the sample with the onnxruntime test metrics and the actual file sizes."""
    files = ["model.onnx", "calib.npz", "test.npz"]
    rows = "\n".join(f"| `{f}` | {(out_dir / f).stat().st_size / 1024:.0f} KiB |" for f in files)
    _, test_count = SPLITS["test"]
    text = f"""# textline sample

A small text-line recogniser ({params:,} parameters) trained on rendered lines of random
digits and capital letters, so onnxslim-kd has an offline, reproducible model of the kind
INT8 finds hard (LayerNorm and attention between convolutions, a per-step class head),
with ground-truth strings to measure compression against.

How it is made (`render.py`, `train.py`):

- lines of {MIN_CHARS}-{MAX_CHARS} characters from `{ALPHABET}`, drawn in PIL's bundled
  font at sizes {", ".join(map(str, FONT_SIZES))} px, placed at random, squeezed to fit
  when too long, half of them blurred, on paper of random brightness with random ink
  contrast and Gaussian noise; input `[N, 1, {HEIGHT}, W]` float32 in [-1, 1] (dark text
  on light paper), W = {WIDTH} in the data, dynamic in the model;
- splits rendered from their own seeds: train {SPLITS["train"][1]:,} lines (not shipped:
  `python samples/textline/render.py --split train` writes the same bytes), calib
  {SPLITS["calib"][1]}, test {test_count};
- conv stem (32, 64, 96, 96 channels with BatchNorm; height pooled to 1, width to W/4),
  one pre-norm mixing block over the W/4 columns (LayerNorm, 4-head self-attention as
  separate Q/K/V projections with view/permute, LayerNorm, GELU MLP of width 192, both
  residual), Linear to {len(ALPHABET) + 1} classes,
  LogSoftmax; output `logprobs` `[N, W/4, {len(ALPHABET) + 1}]`, class 0 the CTC blank;
- {epochs} epochs of AdamW (one-cycle LR, peak {LEARNING_RATE}) on the CTC loss, seeded;
- exported with the legacy exporter (opset 17; batch and width dynamic), metadata
  `alphabet`, `blank` and `source`.

Test metrics (onnxruntime, {test_count} lines, greedy CTC decoding):
**exact match {metrics["exact_match"]:.2%}, character accuracy {metrics["char_accuracy"]:.2%}**
(1 - normalized edit distance, the `accuracy` onnxslim-kd reports for label sequences).

| file | size |
| --- | --- |
{rows}

Each `.npz` holds `input` (float32 `[N, 1, {HEIGHT}, {WIDTH}]`) and `labels` (int64
`[N, {MAX_CHARS}]`: class ids 1..{len(ALPHABET)}, padded with -1).

Reproduce (CPU, about 6-8 minutes on 2 cores):

```
python samples/textline/train.py --out-dir samples/textline --epochs {epochs}
```
"""
    (out_dir / "README.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    splits = {name: render_split(name) for name in SPLITS}
    print(f"rendered in {time.perf_counter() - started:.0f}s", flush=True)
    model = TextLineRecognizer()
    train(model, *splits["train"], epochs=args.epochs)
    path = args.out_dir / "model.onnx"
    export(model, path)
    for name in ("calib", "test"):
        images, labels = splits[name]
        np.savez_compressed(args.out_dir / f"{name}.npz", input=images, labels=labels)
    images, labels = splits["test"]
    check_dynamic_width(path, images[:4])
    metrics = line_metrics(onnx_outputs(path, images), labels)
    params = sum(p.numel() for p in model.parameters())
    write_readme(args.out_dir, metrics, params, args.epochs)
    print(f"params {params:,}; test {metrics}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
