"""Natural-image inputs offline: random crops of scikit-learn's two bundled photos."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_sample_images

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def photo_crops(count: int, seed: int, size: int = 224) -> np.ndarray:
    """Random size x size crops (random flips) of the bundled photos, ImageNet-normalised,
    NCHW float32, so activations have natural-image statistics."""
    rng = np.random.default_rng(seed)
    photos = [image.astype(np.float32) / 255 for image in load_sample_images().images]
    crops = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - size)
        left = rng.integers(photo.shape[1] - size)
        crop = photo[top : top + size, left : left + size]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return ((np.stack(crops) - MEAN) / STD).transpose(0, 3, 1, 2).copy()
