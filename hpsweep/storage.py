"""Where hpsweep keeps files on disk: the results storage (Ray Tune state, checkpoints, reports) and the
decoded-data cache beside it. It imports nothing from the package, so every layer can ask."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORAGE = "hpsweep-results"
CACHE_ENV = "HPSWEEP_CACHE"
CACHE_FOLDER = "data-cache"


def results_root(storage: str | Path | None = None) -> Path:
    """The folder holding every sweep's Ray Tune state: --storage, $HPSWEEP_STORAGE or ./hpsweep-results."""
    location = str(storage or os.environ.get("HPSWEEP_STORAGE") or DEFAULT_STORAGE)
    if "://" in location and not location.startswith("file://"):
        raise ValueError(f"results storage must be a folder (on a cluster, one every node mounts), got {location}")
    return Path(location.removeprefix("file://")).expanduser().resolve()


def cache_root(storage: str | Path | None = None) -> Path:
    """The folder of decoded-data caches: $HPSWEEP_CACHE, else data-cache/ in the results storage."""
    if location := os.environ.get(CACHE_ENV):
        return Path(location).expanduser().resolve()
    return results_root(storage) / CACHE_FOLDER


MIN_FREE_ENV, MIN_FREE_MB = "HPSWEEP_MIN_FREE_MB", 256


def min_free_mb() -> float:
    """$HPSWEEP_MIN_FREE_MB as a number of megabytes; ValueError naming the variable when it is not one."""
    text = os.environ.get(MIN_FREE_ENV) or str(MIN_FREE_MB)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{MIN_FREE_ENV}: expected a number of megabytes >= 0, got {text!r}")
    return value


def short_of_space(folder: Path) -> str | None:
    """Why a sweep writing under `folder` should stop before its disk fills (Ray Tune writes its own
    state files in place: a full disk leaves them truncated and the sweep could not resume), or None.
    The reserve is $HPSWEEP_MIN_FREE_MB megabytes (256 by default; 0 turns the check off)."""
    import shutil

    reserve = min_free_mb()
    free = shutil.disk_usage(folder).free / 2**20
    if free >= reserve:
        return None
    return f"only {free:.0f} MB free under {folder} (hpsweep keeps {reserve:g} MB, {MIN_FREE_ENV})"


def process_alive(pid: int) -> bool:
    """Whether a process of this machine still runs: a folder named after a dead one is a leftover."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def unwritable(folder: Path) -> Path | None:
    """Where `folder` could not be created or written, without creating anything: the nearest existing
    ancestor when it is not a writable folder; None when the folder can be made and written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return None if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK) else existing
