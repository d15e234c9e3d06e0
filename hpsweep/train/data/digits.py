"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, and writing them out as files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image

Layout = Literal["folders", "csv", "filename"]


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 [1797, 1, 8, 8] (0..255) and labels 0..9."""
    pixels, labels = _digits_table()
    images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) * (255.0 / 16.0)
    return images.round().to(torch.uint8), torch.as_tensor(labels, dtype=torch.int64)


def _digits_table() -> tuple[Any, Any]:
    """The 64 pixel values (0..16) and the label of each digit, as numpy arrays. Read straight from the
    file scikit-learn ships: importing sklearn.datasets to read it costs a sweep's start-up 0.8 s of
    CPU (scipy and the rest of scikit-learn), while the two cores also start Ray and its workers.
    scikit-learn's own loader reads it where the file is not found there."""
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    table = Path(next(iter(folders))) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if table is None or not table.is_file():
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.data, bunch.target
    with gzip.open(table, "rt", encoding="ascii") as rows:
        data = np.loadtxt(rows, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a uint8 batch once, bilinearly; used when the sweep asks for another image size."""
    height, width = (size, size) if isinstance(size, int) else size
    if images.shape[-2] == height and images.shape[-1] == width:
        return images
    scaled = F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False,
                           antialias=True)
    return scaled.round().clamp(0, 255).to(torch.uint8)


def export_digits(folder: Path, layout: Layout) -> int:
    """Write the digits as PNG files in one of the on-disk layouts the file sources read; returns the count.

    folders:  DIR/<digit>/digit_<n>.png                  (image_folder)
    csv:      DIR/images/digit_<n>.png + DIR/labels.csv   (csv_annotations, columns path,label)
    filename: DIR/input_<suite>_<sample>_<digit>.png      (filename_labels, the numerals naming scheme)
    """
    images, labels = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int]] = []
    for n, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        if layout == "folders":
            path = folder / str(label) / f"digit_{n:04d}.png"
        elif layout == "csv":
            path = folder / "images" / f"digit_{n:04d}.png"
            rows.append((path.relative_to(folder).as_posix(), label))
        else:
            path = folder / f"input_{n // 100 + 1}_{n % 100 + 1}_{label}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)
    if layout == "csv":
        with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows(rows)
    return len(images)
