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
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType


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


def import_without_gc(name: str) -> ModuleType:
    """Import module `name` inside `without_gc`. A module already imported (a second sweep in the same
    process) is returned as it is: nothing is paused, and nothing more is frozen, so the garbage that
    process made meanwhile stays collectable."""
    if (module := sys.modules.get(name)) is not None:
        return module
    with without_gc():
        return importlib.import_module(name)
