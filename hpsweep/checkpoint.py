"""Checkpoints: everything a trial needs to continue exactly where it stopped, loaded as tensors only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hpsweep.errors import CheckpointError

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], folder: Path) -> Path:
    """Write atomically (a crash mid-write leaves the previous file intact)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with weights_only=True: tensors, numbers, strings and containers only."""
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as exc:  # UnpicklingError for refused globals; RuntimeError for damaged files
        raise CheckpointError(f"refused to load {path}: it is not a plain-tensor checkpoint "
                              f"(a file that would run code when loaded is never unpickled): "
                              f"{type(exc).__name__}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path} is not an hpsweep checkpoint")
    return state
