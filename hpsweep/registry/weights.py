"""The weights `model.pretrained` names, read once on the driver and handed to every trial, so that
workers need no access to the MLflow registry or to the driver's files."""

from __future__ import annotations

from pathlib import Path

import torch

from hpsweep.registry.model_format import registry_state_dict
from hpsweep.train.models import file_state


def pretrained_state(pretrained: str | None, base_dir: Path | None = None) -> dict[str, torch.Tensor] | None:
    """The weights of a `models:/...` URI or a state-dict file (None for no weights, or ImageNet's, which
    every worker reads from its own torch hub cache)."""
    if not pretrained or pretrained == "imagenet":
        return None
    if pretrained.startswith("models:/"):
        return registry_state_dict(pretrained)
    return file_state(pretrained, base_dir)
