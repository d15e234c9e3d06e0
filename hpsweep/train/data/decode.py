"""Decoding image files into one uint8 array [N, C, H, W], in memory or straight into a cache file.

A survey reads every file's header first (size and colour mode, without decoding), so the array can be
allocated once and any file that is not an image is found before decoding starts. Decoding runs on
threads (Pillow releases the GIL while it decodes and resizes) and writes each image into its row; a
file that fails is counted, and the error names how many failed and the first few.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: seconds per image above which decoding runs on threads (bench/RESULTS.md: data path)
THREADED_DECODE_S = 0.25e-3
_CHUNK = 64
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_NAMED = 3  #: unreadable files named in the error; all are counted
PROGRESS_AFTER_S, PROGRESS_EVERY_S = 3.0, 5.0

Fail = Callable[[str, str], Exception]  #: (field path, message) -> the error to raise
progress_log = logging.getLogger("hpsweep.progress")  #: the CLI shows this logger's INFO lines


@dataclass(frozen=True)
class Survey:
    """What the headers say: the array the images decode into."""

    shape: tuple[int, int, int, int]
    modes: tuple[str | None, ...]  #: the mode each image decodes in ("L" or "RGB")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))


def survey(paths: Sequence[Path], size: int | None, color: str, fail: Fail, workers: int | None = None) -> Survey:
    """Read every header; raise `fail` naming the unreadable files (all counted) or two images that differ
    in size when no data.image_size makes them equal."""
    with ThreadPoolExecutor(max_workers=workers or _cpus()) as pool:
        headers = list(pool.map(_header, paths, chunksize=_CHUNK))
    _raise_unreadable(paths, [h if isinstance(h, str) else None for h in headers], fail)
    if size is None:
        first = headers[0]
        for path, header in zip(paths, headers, strict=True):
            if header[1] != first[1]:  # type: ignore[index]
                (w0, h0), (w, h) = first[1], header[1]  # type: ignore[index,misc]
                raise fail("data.image_size", f"images differ in size ({paths[0].name} is {w0}x{h0}, "
                           f"{path} is {w}x{h}): set data.image_size")
    width, height = (size, size) if size is not None else headers[0][1]  # type: ignore[index,misc]
    fixed = {"grey": "L", "rgb": "RGB"}.get(color)
    modes = tuple(fixed or ("L" if h[0] in _GREY_MODES else "RGB") for h in headers)  # type: ignore[index]
    channels = 3 if "RGB" in modes else 1
    return Survey((len(paths), channels, height, width), modes)


def decode_into(out: np.ndarray, paths: Sequence[Path], found: Survey, size: int | None, fail: Fail,
                workers: int | None = None) -> None:
    """Decode every image into its row of `out` (shape found.shape). Grey images of a colour dataset are
    written to every channel, which is what converting them to RGB gives."""
    errors: list[str | None] = [None] * len(paths)

    def load(start: int) -> int:  # a chunk per task: tiny images cost less than a task's overhead
        for i in range(start, min(start + _CHUNK, len(paths))):
            errors[i] = _decode(paths[i], found.modes[i], size, out, i)
        return min(_CHUNK, len(paths) - start)

    # The first chunk is decoded here and timed: threads pay off only where decoding itself outweighs the
    # Python around it, as for photos; small PNGs decode faster on one thread.
    started = time.perf_counter()
    done = load(0)
    per_image = (time.perf_counter() - started) / max(1, done)
    threads = (workers or _cpus()) if per_image >= THREADED_DECODE_S else 1
    meter = _Progress(len(paths), started)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for count in pool.map(load, range(_CHUNK, len(paths), _CHUNK)):
            done += count
            meter.update(done)
    _raise_unreadable(paths, errors, fail)


def decode_images(paths: Sequence[Path], size: int | None, color: str, fail: Fail) -> np.ndarray:
    """Every image decoded into memory: uint8 [N, C, H, W], resized to size x size when given.

    Colour 'auto' keeps grey datasets grey (one channel) and turns any colour dataset into RGB."""
    found = survey(paths, size, color, fail)
    out = np.empty(found.shape, dtype=np.uint8)
    decode_into(out, paths, found, size, fail)
    return out


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _header(path: Path) -> tuple[str, tuple[int, int]] | str:
    """(mode, (width, height)) from the file's header, or why it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return _reason(exc)


def _decode(path: Path, mode: str | None, size: int | None, out: np.ndarray, row: int) -> str | None:
    try:
        with Image.open(path) as image:
            if size is not None:  # a JPEG much larger than `size` decodes at 1/2, 1/4 or 1/8 scale, not whole
                image.draft(mode, (size, size))
            image = image.convert(mode)
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return _reason(exc)
    if pixels.shape[:2] != out.shape[2:]:
        return f"is {pixels.shape[1]}x{pixels.shape[0]}, not {out.shape[3]}x{out.shape[2]} like the others"
    out[row] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return None


def _reason(exc: Exception) -> str:
    return str(exc).split(":")[0].strip() or type(exc).__name__


def _raise_unreadable(paths: Sequence[Path], errors: Sequence[str | None], fail: Fail) -> None:
    bad = [(path, why) for path, why in zip(paths, errors, strict=True) if why is not None]
    if not bad:
        return
    named = ", ".join(f"{path} ({why})" for path, why in bad[:_NAMED])
    more = f" and {len(bad) - _NAMED:,} more" if len(bad) > _NAMED else ""
    raise fail("data", f"{len(bad):,} of {len(paths):,} images cannot be read: {named}{more}")


class _Progress:
    """INFO lines on hpsweep.progress for a decode that takes more than a few seconds: count, rate, ETA."""

    def __init__(self, total: int, started: float) -> None:
        self.total, self.started, self.shown = total, started, started + PROGRESS_AFTER_S - PROGRESS_EVERY_S

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.shown < PROGRESS_EVERY_S or done >= self.total:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        progress_log.info("decoding images: %s of %s (%.0f images/s, about %.0f s left)", f"{done:,}",
                          f"{self.total:,}", rate, (self.total - done) / max(rate, 1e-9))
