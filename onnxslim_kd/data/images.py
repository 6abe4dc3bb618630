"""Read a folder of PNG/JPEG images into model inputs with a preprocessing spec.

Images directly in the folder carry no labels; images in sub-folders are labelled by
the sub-folder's index in sorted order (the ImageNet `class/image.jpg` layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Preprocess:
    """How an image becomes a tensor: resize shorter side, center crop, scale, normalise."""

    resize: int | None = None
    crop: int | None = None
    scale: float = 1 / 255
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    order: str = "RGB"  # RGB, BGR or L (grayscale)
    layout: str = "auto"  # NCHW, NHWC or auto (from the model's input shape)

    @classmethod
    def parse(cls, text: str | None) -> Preprocess:
        """Parse `resize=256,crop=224,mean=0.485/0.456/0.406,std=...,order=RGB,layout=NCHW`."""
        spec = cls()
        if not text:
            return spec
        known = {f.name for f in fields(cls)}
        for item in text.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in known or not value:
                raise InputError(
                    f"--preprocess {item!r}: expected KEY=VALUE with KEY in {sorted(known)}"
                )
            try:
                setattr(spec, key, _convert(key, value.strip()))
            except ValueError:
                raise InputError(f"--preprocess {item!r}: bad value for {key}") from None
        if spec.order not in ("RGB", "BGR", "L") or spec.layout not in ("NCHW", "NHWC", "auto"):
            raise InputError("--preprocess: order must be RGB/BGR/L, layout NCHW/NHWC/auto")
        return spec


def _convert(key: str, value: str):
    if key in ("resize", "crop"):
        return int(value)
    if key == "scale":
        return float(value)
    if key in ("mean", "std"):
        return [float(v) for v in value.split("/")]
    return value.upper()


def load_image_folder(folder: Path, spec: TensorSpec, preprocess: Preprocess) -> Dataset:
    """Decode, preprocess and stack every image of `folder` for the single input `spec`."""
    files, labels = _list_images(folder)
    if not files:
        raise InputError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images found")
    layout = _layout(spec, preprocess)
    height, width = _target_size(spec, layout, preprocess)
    arrays = [_read(path, preprocess, height, width) for path in files]
    batch = np.stack(arrays).astype(spec.dtype)
    if layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return Dataset({spec.name: np.ascontiguousarray(batch)}, labels, str(folder))


def _list_images(folder: Path) -> tuple[list[Path], np.ndarray | None]:
    def images(directory: Path) -> list[Path]:
        return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        return images(folder), None
    files, labels = [], []
    for index, directory in enumerate(classes):
        found = images(directory)
        files += found
        labels += [index] * len(found)
    return files, np.array(labels, dtype=np.int64)


def _layout(spec: TensorSpec, preprocess: Preprocess) -> str:
    if preprocess.layout != "auto":
        return preprocess.layout
    if len(spec.dims) != 4:
        raise InputError(f"input '{spec.name}' {spec.dims_text()} is not an image batch (rank 4)")
    return "NHWC" if spec.dims[3] in (1, 3) and spec.dims[1] not in (1, 3) else "NCHW"


def _target_size(spec: TensorSpec, layout: str, preprocess: Preprocess) -> tuple[int, int]:
    height, width = spec.dims[2:4] if layout == "NCHW" else spec.dims[1:3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    if preprocess.crop:
        return preprocess.crop, preprocess.crop
    raise InputError(
        f"input '{spec.name}' {spec.dims_text()} has a dynamic image size; "
        "give --preprocess crop=SIZE"
    )


def _read(path: Path, preprocess: Preprocess, height: int, width: int) -> np.ndarray:
    """One image as float HWC after resize, center crop, scale and normalisation."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if preprocess.order == "L" else "RGB")
            if preprocess.resize:
                ratio = preprocess.resize / min(image.size)
                size = (round(image.size[0] * ratio), round(image.size[1] * ratio))
                image = image.resize(size, Image.BILINEAR)
            image = _center_crop(image, width, height)
            pixels = np.asarray(image, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if preprocess.order == "BGR":
        pixels = pixels[:, :, ::-1]
    mean = np.array(preprocess.mean, dtype=np.float32)
    std = np.array(preprocess.std, dtype=np.float32)
    return (pixels * preprocess.scale - mean) / std


def _center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Crop the center to width x height, resizing first when the image is smaller."""
    if image.size[0] < width or image.size[1] < height:
        image = image.resize((max(width, image.size[0]), max(height, image.size[1])))
    left = (image.size[0] - width) // 2
    top = (image.size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))
