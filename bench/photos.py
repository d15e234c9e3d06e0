"""Image folders of real photographs at any size, with no download: crops of scikit-learn's two sample
photos (a temple in China, a flower), each crop a different window, size and orientation, saved as JPEG in
a class folder named after its photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_folder(root: Path, images: int, seed: int = 0, side: tuple[int, int] = (160, 400)) -> Path:
    """`images` JPEG crops under root/<photo>/, half from each photo; returns root. Written once: a folder
    that already holds them is reused."""
    from sklearn.datasets import load_sample_images

    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == images:
        return root
    photos = load_sample_images()
    rng = np.random.default_rng(seed)
    for index in range(images):
        name = ("china", "flower")[index % 2]
        photo = photos.images[index % 2]
        size = int(rng.integers(side[0], min(side[1], *photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - size + 1))
        left = int(rng.integers(0, photo.shape[1] - size + 1))
        crop = photo[top:top + size, left:left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{index:06d}.jpg", quality=90)
    return root
