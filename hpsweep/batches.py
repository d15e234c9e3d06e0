"""Batches from in-memory tensors: shuffled by a seeded generator, augmented and normalised on the device.

Images stay uint8 until their batch is on the device, so an epoch never re-reads or re-decodes files and
host memory holds the decoded dataset once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hpsweep.data.base import Split
from hpsweep.sections import Augment


@dataclass(frozen=True)
class BatchPlan:
    """How batches are made for one model: normalisation, augmentation, device layout."""

    is_image: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment | None
    device: torch.device
    channels_last: bool = False


def batches(split: Split, batch_size: int, plan: BatchPlan, *, train: bool,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = len(split)
    order = (torch.randperm(n, generator=generator) if train else torch.arange(n)).to(split.x.device)
    stop = n - 1 if train and n % batch_size == 1 and n > 1 else n  # a batch of one breaks BatchNorm
    mean = torch.tensor(plan.mean, device=plan.device).view(1, -1, 1, 1) if plan.is_image else None
    std = torch.tensor(plan.std, device=plan.device).view(1, -1, 1, 1) if plan.is_image else None
    for start in range(0, stop, batch_size):
        index = order[start:min(start + batch_size, stop)]
        x = split.x[index].to(plan.device, non_blocking=True)
        y = split.y[index].to(plan.device, non_blocking=True)
        if plan.is_image:
            x = x.float().div_(255.0)
            if train and plan.augment is not None:
                x = augment(x, plan.augment, generator)
            x = (x - mean) / std
            if plan.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        yield x, y


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
