"""Checkpoints: everything a trial needs to continue exactly where it stopped, loaded as tensors only."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from hpsweep.errors import CheckpointError
from hpsweep.storage import process_alive

CHECKPOINT_FILE = "checkpoint.pt"
#: a checkpoint is staged for Ray in a temporary folder named after the machine and the process writing it
STAGING_PREFIX = "hpsweep-checkpoint-"

log = logging.getLogger(__name__)


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


@contextmanager
def staging_folder() -> Iterator[Path]:
    """A temporary folder for one checkpoint on its way to Ray, removed when the report returns. Its name
    holds this process's id and host, so that a folder left by a worker killed meanwhile (kill -9, the
    kernel's OOM killer, its driver killed while the trial waited at a report) is known for an orphan."""
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-{socket.gethostname()}-") as folder:
        yield Path(folder)


def remove_orphaned_staging(root: Path | None = None) -> list[Path]:
    """Remove the staging folders under `root` (the temporary folder by default) that were made on this
    host by a process that no longer runs; folders of live processes, of other hosts sharing the folder,
    or not named by `staging_folder` are left alone. Returns the folders removed."""
    root = Path(tempfile.gettempdir()) if root is None else root
    host, removed = socket.gethostname(), []
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        pid, _, rest = folder.name.removeprefix(STAGING_PREFIX).partition("-")
        if not pid.isdigit() or not rest.startswith(f"{host}-") or process_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d checkpoint folder(s) left in %s by killed trials", len(removed), root)
    return removed
