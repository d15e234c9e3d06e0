"""The decoded-image cache: each dataset's images decoded once into a uint8 file on disk, which every
trial, resume, `hpsweep train` and `hpsweep promote` memory-maps read-only.

A cache is a folder named by its key, a hash of the decode settings (image size, colour) and of every
file's path, size and modification time: a changed, added or removed file gives a new key, so a stale
cache is never read. A cache is built in a folder beside its final place and renamed into it when
complete; a build that dies leaves only that folder, which the next build removes. The page cache holds
the mapped file once per machine, however many trials read it, and a dataset larger than memory is paged
in as batches are read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsweep.storage import process_alive
from hpsweep.train.data.decode import Fail, decode_into, progress_log, survey

log = logging.getLogger(__name__)

CACHE_VERSION = 2  #: 2: JPEGs larger than the image size decode at a reduced scale first
IMAGES_FILE, META_FILE = "images.u8", "meta.json"
BUILD_PREFIX = ".build-"


@dataclass(frozen=True)
class CachedImages:
    """One complete cache: `array()` maps its images read-only, uint8 [N, C, H, W]."""

    folder: Path
    shape: tuple[int, int, int, int]
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def array(self) -> np.ndarray:
        return np.memmap(self.folder / IMAGES_FILE, dtype=np.uint8, mode="r", shape=self.shape)


def cache_key(paths: Sequence[Path], size: int | None, color: str) -> str:
    digest = hashlib.sha256(f"hpsweep-images-v{CACHE_VERSION}|{size}|{color}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def cached_images(paths: Sequence[Path], size: int | None, color: str, root: Path, fail: Fail) -> CachedImages:
    """The images of `paths` from their cache under `root`, decoding them into it first when it is
    missing or damaged."""
    key = cache_key(paths, size, color)
    if (found := open_cache(root / key, len(paths))) is not None:
        os.utime(found.folder / META_FILE)  # last used, for `hpsweep data cache`
        log.info("reading %d decoded images from the cache %s", len(paths), found.folder)
        return found
    meta = {"images": len(paths), "size": size, "color": color, "source": _common_folder(paths)}
    found_shape = survey(paths, size, color, fail)

    def fill(out: np.ndarray) -> None:
        decode_into(out, paths, found_shape, size, fail)

    return build_cache(root, key, found_shape.shape, meta, fill, fail)


def build_cache(root: Path, key: str, shape: tuple[int, int, int, int], meta: dict[str, Any],
                fill: Callable[[np.ndarray], None], fail: Fail) -> CachedImages:
    """Write a cache: `fill` writes the images into the mapped file, which lands at root/key only once
    complete. Another process that finished the same cache first wins; this copy is then dropped."""
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_builds(root)
    needed, free = int(np.prod(shape)), shutil.disk_usage(root).free
    if needed > free:
        raise fail("data", f"the decoded images need {needed / 1e9:.1f} GB but {root} has {free / 1e9:.1f} GB "
                   f"free: set HPSWEEP_CACHE to a folder with room")
    building = root / f"{BUILD_PREFIX}{socket.gethostname()}-{os.getpid()}-{key}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    started = time.perf_counter()
    try:
        out = np.memmap(building / IMAGES_FILE, dtype=np.uint8, mode="w+", shape=shape)
        fill(out)
        out.flush()
        del out
        seconds = time.perf_counter() - started
        meta = {**meta, "version": CACHE_VERSION, "shape": list(shape), "decode_s": round(seconds, 2),
                "created": time.time()}
        (building / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _discard_damaged(root / key)
        try:
            os.rename(building, root / key)
        except OSError:  # the same cache appeared meanwhile (another sweep built it)
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if seconds > 1:
        progress_log.info("decoded %s images (%.1f GB) in %.0f s into the cache %s", f"{shape[0]:,}",
                          needed / 1e9, seconds, root / key)
    found = open_cache(root / key, shape[0])
    assert found is not None, f"the cache {root / key} was just built"
    return found


def open_cache(folder: Path, images: int | None = None) -> CachedImages | None:
    """The cache in `folder`, or None when it is missing, from another version, or damaged (its metadata
    unreadable or its image file not exactly the size the metadata gives)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        shape = tuple(int(n) for n in meta["shape"])
        complete = (folder / IMAGES_FILE).stat().st_size == int(np.prod(shape))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if meta.get("version") != CACHE_VERSION or len(shape) != 4 or not complete:
        if folder.exists():
            log.warning("the cache %s is damaged or outdated; it is rebuilt", folder)
        return None
    if images is not None and shape[0] != images:
        return None
    return CachedImages(folder, shape, meta)  # type: ignore[arg-type]


def list_caches(root: Path) -> list[CachedImages]:
    """Every complete cache under root, most recently used first."""
    if not root.is_dir():
        return []
    found = [c for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
             if (c := open_cache(p)) is not None]
    return sorted(found, key=lambda c: (c.folder / META_FILE).stat().st_mtime, reverse=True)


def clear_caches(root: Path, keys: Sequence[str] = ()) -> list[Path]:
    """Remove the caches named by key (a unique prefix is enough), or every cache and leftover build."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir()]
    if keys:
        folders = [p for p in folders if any(p.name.startswith(k) for k in keys)]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return folders


def remove_dead_builds(root: Path) -> None:
    """Remove the build folders that processes of this machine left when they died mid-build."""
    host = socket.gethostname()
    for folder in root.glob(f"{BUILD_PREFIX}{host}-*"):
        pid = folder.name[len(f"{BUILD_PREFIX}{host}-"):].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _discard_damaged(folder: Path) -> None:
    """Move a damaged cache out of the way (renamed first, so no reader finds it half-deleted)."""
    if folder.exists() and open_cache(folder) is None:
        doomed = folder.with_name(f"{BUILD_PREFIX}{socket.gethostname()}-{os.getpid()}-damaged-{folder.name}")
        os.rename(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _common_folder(paths: Sequence[Path]) -> str:
    try:
        return os.path.commonpath([str(p.parent) for p in paths])
    except ValueError:
        return ""
