"""Train a small residual CNN on scikit-learn's digits and export it as an ONNX sample.

The sample gives onnxslim-kd a real, offline, reproducible model plus train/calib/test
splits, so compression can be measured against ground-truth labels without downloads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
IMAGE_SIZE = 32
TEST_FRACTION = 0.3
CALIB_SIZE = 256
BATCH_SIZE = 64
MAX_SHIFT = 2
CLASS_NAMES = ",".join(str(d) for d in range(10))
SOURCE = "samples/digits/train.py"


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """Return normalised [N,1,32,32] float32 images and int64 labels.

    Upsampling to 32x32 gives the network enough spatial extent for three stages.
    """
    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0)
    pixels = (pixels - 0.5) / 0.5
    images = F.interpolate(
        pixels.unsqueeze(1), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
    )
    return images.numpy().astype(np.float32), digits.target.astype(np.int64)


def split(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split into train/test (stratified) and draw a calibration subset from train."""
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SEED, stratify=labels
    )
    calib_idx = np.sort(np.random.default_rng(SEED).choice(len(x_train), CALIB_SIZE, replace=False))
    return {
        "train": (x_train, y_train),
        "calib": (x_train[calib_idx], y_train[calib_idx]),
        "test": (x_test, y_test),
    }


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity or 1x1-projection shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Stem plus three residual stages (32, 64, 128), pooled into a linear classifier."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_ch = widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(in_ch, width, stride=1 if i == 0 else 2))
            blocks.append(BasicBlock(width, width, stride=1))
            in_ch = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def random_shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to MAX_SHIFT px, filling with the background value."""
    background = float(batch.min())
    padded = F.pad(batch, [MAX_SHIFT] * 4, value=background)
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (len(batch), 2), generator=generator)
    crops = [
        padded[i, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]
        for i, (dy, dx) in enumerate(offsets.tolist())
    ]
    return torch.stack(crops)


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int) -> None:
    """SGD (Nesterov) with a one-cycle cosine schedule; all randomness is seeded."""
    generator = torch.Generator().manual_seed(SEED)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    steps_per_epoch = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total_loss = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = F.cross_entropy(model(random_shift(x[idx], generator)), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs} loss {total_loss / len(x):.4f}", flush=True)


@torch.no_grad()
def torch_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the eval-mode torch model."""
    logits = model.eval()(torch.from_numpy(images))
    return float((logits.argmax(1).numpy() == labels).mean())


def onnx_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the exported model under onnxruntime (the number the README reports)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images})
    return float((logits.argmax(1) == labels).mean())


def export(model: nn.Module, path: Path, source: str = SOURCE) -> None:
    """Export with the legacy exporter and attach metadata the library can read back
    (`source`: the script that made it; samples/vit_digits reuses this)."""
    dummy = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        model.eval(),
        dummy,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"class_names": CLASS_NAMES, "source": source})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def save_splits(splits: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path) -> None:
    """Write one compressed .npz per split with arrays `input` and `labels`."""
    for name, (images, labels) in splits.items():
        np.savez_compressed(out_dir / f"{name}.npz", input=images, labels=labels)


def write_readme(out_dir: Path, accuracy: float, test_count: int, params: int, epochs: int) -> None:
    """Describe the sample with the measured onnxruntime accuracy and actual file sizes."""
    files = ["model.onnx", "train.npz", "calib.npz", "test.npz"]
    rows = "\n".join(f"| `{f}` | {(out_dir / f).stat().st_size / 1024:.0f} KiB |" for f in files)
    text = f"""# digits sample

A small residual CNN ({params:,} parameters) trained on scikit-learn's bundled
`load_digits` (1,797 real 8x8 handwritten digits), so onnxslim-kd has an offline,
reproducible model with labelled data to measure compression against.

How it is made (`train.py`):

- pixels 0..16 scaled to [0, 1], normalised with mean 0.5 / std 0.5, bilinearly upsampled
  to 32x32; input layout NCHW `[N, 1, 32, 32]` float32;
- stratified split with seed 0: test = 30 %, train = the rest, calib = 256 samples
  drawn from train;
- stem conv3x3(1->32), three stages of two basic residual blocks (widths 32, 64, 128,
  stride 2 at the start of stages 2 and 3), global average pool, Linear(128 -> 10);
- {epochs} epochs of SGD (Nesterov momentum, one-cycle cosine LR) with random shifts of up
  to 2 px, seeded and deterministic on CPU;
- exported with the legacy exporter (opset 17, dynamic batch), input `input`, output
  `logits`, metadata `class_names` and `source`; the exporter folds every BatchNorm into
  the preceding Conv, so the graph has no BatchNormalization nodes.

Test accuracy (onnxruntime, {test_count} images):
**{accuracy:.2%}**

| file | size |
| --- | --- |
{rows}

Each `.npz` holds `input` (float32 `[N, 1, 32, 32]`) and `labels` (int64 `[N]`).

Reproduce (CPU, about a minute or two on 2 cores; repeated runs give byte-identical files):

```
python samples/digits/train.py --out-dir samples/digits --epochs {epochs}
```
"""
    (out_dir / "README.md").write_text(text)


def configure_determinism(seed: int = SEED) -> None:
    """Fix seeds and threads so repeated runs produce the same weights."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    configure_determinism()
    splits = split(*load_images())
    model = DigitsResNet()
    params = sum(p.numel() for p in model.parameters())
    train(model, *splits["train"], epochs=args.epochs)
    train_seconds = time.perf_counter() - started

    model_path = args.out_dir / "model.onnx"
    export(model, model_path)
    save_splits(splits, args.out_dir)
    torch_acc = torch_accuracy(model, *splits["test"])
    ort_acc = onnx_accuracy(model_path, *splits["test"])
    write_readme(args.out_dir, ort_acc, len(splits["test"][1]), params, args.epochs)

    print(f"params {params:,}")
    print(f"test accuracy torch {torch_acc:.4f} onnxruntime {ort_acc:.4f}")
    print(f"train {train_seconds:.1f}s total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
