"""Importing the heavy libraries (torch and its compiler front end, Ray Tune, MLflow) with Python's cyclic
garbage collector paused.

Those imports create millions of objects, and every full collection they trigger on the way walks all
the objects that exist by then: 6-7 full collections per process. Paused, a trial worker's imports took
2.9-3.0 s of CPU instead of 3.4-3.8 s, and the driver's 3.3-3.6 s instead of 4.3 s (the 2-core machine;
one process at a time). Afterwards what was imported is moved to the collector's permanent generation
(`gc.freeze`), so later collections, while trials train, skip it too; it lives as long as the process
anyway.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting still frees what it can),
    then freeze what exists and resume it, if it was running."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if running:
            gc.enable()
