"""Seeded train/validation/test splits, stratified by class for classification."""

from __future__ import annotations

import torch

from hpsweep.spec.data_sources import Split as SplitSpec


def split_indices(labels: torch.Tensor, fractions: SplitSpec, seed: int, stratify: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors for train, val and test. Stratified splits keep each class's share in every split;
    rounding never leaves a split of a class empty when the class has at least three examples."""
    generator = torch.Generator().manual_seed(seed)
    groups = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)] if stratify \
        else [torch.arange(len(labels))]
    parts: list[list[torch.Tensor]] = [[], [], []]
    for group in groups:
        group = group[torch.randperm(len(group), generator=generator)]
        n = len(group)
        n_test = _share(n, fractions.test)
        n_val = _share(n, fractions.val)
        n_val = min(n_val, max(0, n - n_test - 1))
        parts[0].append(group[n_test + n_val:])
        parts[1].append(group[n_test:n_test + n_val])
        parts[2].append(group[:n_test])
    train, val, test = (torch.sort(torch.cat(p)).values for p in parts)
    return train, val, test


def _share(n: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    return max(1, round(n * fraction)) if n >= 3 else 0
