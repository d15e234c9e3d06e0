"""Batches from the decoded data (tensors in memory, or the rows of a memory-mapped cache): shuffled by a
seeded generator, augmented and normalised on the device.

Images stay uint8 until their batch is on the device, so an epoch never re-reads or re-decodes files and
host memory holds the decoded dataset once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from hpsweep.spec.data_sources import Augment
from hpsweep.train.data.base import Split
from hpsweep.train.distributed import SINGLE, Group


@dataclass(frozen=True)
class BatchPlan:
    """How batches are made for one model: normalisation, augmentation, device layout."""

    is_image: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment | None
    device: torch.device
    channels_last: bool = False
    normalised: bool = False  #: the split's images are already float, normalised and in the model's layout

    def layout(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) on the device with (x / 255 - mean) / std == x * scale + shift for pixels
        0..255, shaped to broadcast over [N, C, H, W]."""
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        return (1 / (255 * std)).to(self.device), (-mean / std).to(self.device)


def normalise(x: torch.Tensor, plan: BatchPlan) -> torch.Tensor:
    """uint8 images (0..255) as the model takes them: float, (x / 255 - mean) / std, in the plan's layout.

    One copy and one multiply-add: small models on a GPU are bound by kernel launches, so each operation
    saved per batch counts (bench: loop efficiency).
    """
    return _convert(x.to(plan.device), plan.layout(), *plan.affine())


def _convert(x: torch.Tensor, layout: torch.memory_format, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift, x.to(dtype=torch.float32, memory_format=layout), scale)


#: validation reads up to 256 examples per batch, but at most this many bytes of float input per batch
EVAL_BATCH_BYTES = 32 * 2**20


def eval_batch_size(batch_size: int, split: Split) -> int:
    """The validation batch: larger than the training batch (no gradients are kept), up to 256 examples,
    but bounded in bytes, so 256 photos at 480x480 (700 MB as floats) are not one batch."""
    per_example = 4 * max(1, math.prod(split.example_shape))
    return max(batch_size, min(256, EVAL_BATCH_BYTES // per_example))


class Batch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    #: what this worker's mean loss is multiplied by (data-parallel: its share of the global batch)
    weight: float = 1.0


def batches(split: Split, batch_size: int, plan: BatchPlan, *, train: bool, generator: torch.Generator | None = None,
            group: Group = SINGLE, augment_generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Batches of `split`, shuffled by `generator` when training. Among data-parallel workers (`group`) every
    worker draws the same order and takes its share of each global batch of `batch_size`; augmentation
    then draws from `augment_generator`, so that the shared generator stays the same on every worker."""
    n = len(split)
    order = (torch.randperm(n, generator=generator) if train else torch.arange(n)).to(split.y.device)
    # a batch of one breaks BatchNorm; among workers, a last batch smaller than their number leaves one idle
    smallest = max(2, group.world) if train and n > group.world else 1
    stop = n - n % batch_size if 0 < n % batch_size < smallest else n
    convert = plan.is_image and not plan.normalised
    scale, shift = plan.affine() if convert else (None, None)
    layout = plan.layout()
    augmenting = convert and train and plan.augment is not None
    draws = augment_generator or generator
    for start in range(0, stop, batch_size):
        index = order[start:min(start + batch_size, stop)]
        part = group.share(index) if train else index
        x = split.take(part).to(plan.device, non_blocking=True)
        y = split.y[part].to(plan.device, non_blocking=True)
        if augmenting:  # crops and flips are linear: on 0..255 floats, normalised after
            x = augment(x.float(), plan.augment, draws)  # type: ignore[arg-type]
        if convert:
            x = _convert(x, layout, scale, shift)  # type: ignore[arg-type]
        yield Batch(x, y, group.loss_weight(len(part), len(index)))


def augment(x: torch.Tensor, spec: Augment, generator: torch.Generator | None) -> torch.Tensor:
    """Training-only augmentation on a float batch, one random draw per image."""
    if spec.random_resized_crop:
        x = random_resized_crop(x, spec.crop_scale, generator)
    if spec.horizontal_flip:
        flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], generator: torch.Generator | None,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random area fraction in `scale` with a random aspect ratio, resized back to the image size."""
    from torchvision.ops import roi_align

    n, _, height, width = x.shape
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator) * height * width
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    crop_w = (area * aspect).sqrt().clamp(1, width)
    crop_h = (area / aspect).sqrt().clamp(1, height)
    left = torch.rand(n, generator=generator) * (width - crop_w)
    top = torch.rand(n, generator=generator) * (height - crop_h)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), left, top, left + crop_w, top + crop_h], dim=1)
    return roi_align(x, boxes.to(x.device, x.dtype), output_size=(height, width), sampling_ratio=2, aligned=True)
