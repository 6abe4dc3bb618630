"""Simple image augmentation for the fine-tune: shift, horizontal flip, Gaussian noise.

Each acts on every 4-D float input (an image batch, NCHW; NHWC when the last axis looks
like channels) and leaves other inputs alone. All draw from torch's global RNG, which the
training checkpoint saves, so a resumed run augments exactly as an uninterrupted one.
With any of them on, the teachers are asked about every augmented batch instead of using
their cached outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from onnxslim_kd.distill.options import DistillOptions


def augment(feeds: dict[str, Tensor], options: DistillOptions) -> dict[str, Tensor]:
    """`feeds` with the augmentations `options` turns on, in the order shift, flip, noise."""
    if options.augment_shift:
        feeds = shifted(feeds, options.augment_shift)
    if options.augment_flip and bool(torch.rand(()) < 0.5):
        feeds = _each_image(feeds, lambda image: image.flip(3))
    if options.augment_noise:
        feeds = _each_image(feeds, lambda image: _noisy(image, options.augment_noise))
    return feeds


def shifted(feeds: dict[str, Tensor], pixels: int) -> dict[str, Tensor]:
    """Translate the images by one random offset of up to `pixels`, padding with edge
    values: the shift augmentation the digits sample was trained with."""
    dy, dx = (int(v) for v in torch.randint(0, 2 * pixels + 1, (2,)))

    def move(image: Tensor) -> Tensor:
        height, width = image.shape[2], image.shape[3]
        padded = torch.nn.functional.pad(image, (pixels,) * 4, mode="replicate")
        return padded[:, :, dy : dy + height, dx : dx + width]

    return _each_image(feeds, move)


def _noisy(image: Tensor, scale: float) -> Tensor:
    """Gaussian noise with a standard deviation of `scale` times the batch's."""
    return image + scale * image.std() * torch.randn_like(image)


def _each_image(feeds: dict[str, Tensor], change: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """Apply `change` (written for NCHW) to every image input, in its own layout."""
    out = {}
    for name, value in feeds.items():
        if value.dim() != 4 or not value.is_floating_point():
            out[name] = value
            continue
        channels_last = value.shape[3] in (1, 3) and value.shape[1] not in (1, 3)
        image = value.permute(0, 3, 1, 2) if channels_last else value
        changed = change(image)
        out[name] = changed.permute(0, 2, 3, 1).contiguous() if channels_last else changed
    return out
