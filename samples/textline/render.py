"""Render the text-line data set: random strings in PIL's bundled font, with noise.

Offline and seeded: the same split always gives the same bytes, so the training set
need not be shipped (`python samples/textline/render.py --split train` writes it).
Needs only numpy and Pillow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

#: Class 0 is the CTC blank; class i > 0 is ALPHABET[i - 1].
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HEIGHT = 32
WIDTH = 128
MIN_CHARS, MAX_CHARS = 3, 8
FONT_SIZES = (15, 17, 19, 21, 23)
#: Label rows are padded to MAX_CHARS with this value.
PAD = -1
#: (seed, samples) per split; the seeds differ so no split repeats another's lines.
SPLITS = {"train": (1, 6000), "calib": (2, 256), "test": (3, 400)}


def encode(text: str) -> np.ndarray:
    """Class ids of `text`, padded to MAX_CHARS with PAD."""
    ids = [ALPHABET.index(ch) + 1 for ch in text]
    return np.array(ids + [PAD] * (MAX_CHARS - len(ids)), dtype=np.int64)


def render_line(text: str, rng: np.random.Generator) -> np.ndarray:
    """One [HEIGHT, WIDTH] float32 image in [-1, 1] with 256 levels: dark text on a light,
    noisy page, at a random size, position, contrast and blur, squeezed to fit if too long."""
    font = ImageFont.load_default(size=int(rng.choice(FONT_SIZES)))
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 8, HEIGHT), color=0)
    y = int(rng.integers(0, max(1, HEIGHT - (bottom - top)))) - top
    ImageDraw.Draw(canvas).text((4 - left, y), text, fill=255, font=font)
    if canvas.width > WIDTH:
        canvas = canvas.resize((WIDTH, HEIGHT), Image.BILINEAR)
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    ink = np.zeros((HEIGHT, WIDTH), np.float32)
    x = int(rng.integers(0, WIDTH - canvas.width + 1))
    ink[:, x : x + canvas.width] = np.asarray(canvas, np.float32) / 255.0
    paper, contrast = rng.uniform(0.75, 1.0), rng.uniform(0.5, 0.9)
    image = paper - contrast * ink + rng.normal(0.0, 0.06, ink.shape)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255) / 255  # 8 bits, as a scan or photo has
    return ((pixels - 0.5) / 0.5).astype(np.float32)


def render_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 1, HEIGHT, WIDTH] and padded labels [N, MAX_CHARS] of split `name`."""
    seed, count = SPLITS[name]
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        length = int(rng.integers(MIN_CHARS, MAX_CHARS + 1))
        text = "".join(rng.choice(list(ALPHABET), length))
        images.append(render_line(text, rng))
        labels.append(encode(text))
    return np.stack(images)[:, None], np.stack(labels)


def save_split(name: str, out_dir: Path) -> Path:
    """Write `<name>.npz` with arrays `input` and `labels`."""
    images, labels = render_split(name)
    path = out_dir / f"{name}.npz"
    np.savez_compressed(path, input=images, labels=labels)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=sorted(SPLITS), action="append", required=True)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    for name in args.split:
        print(save_split(name, args.out_dir))


if __name__ == "__main__":
    main()
