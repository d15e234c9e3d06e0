"""Ctrl-C during a sweep: the first asks Ray Tune to stop gracefully, a second stops at once."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


#: set by the first Ctrl-C during a sweep; read by the stopper Ray Tune polls (module state, so the
#: copy of the stopper Ray makes still sees it)
INTERRUPT = {"requested": False}


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[None]:
    """The first Ctrl-C asks Ray Tune to stop the sweep (trials stop, state is saved, runs are closed);
    a second one stops at once. Ray's own handler is switched off so the runner knows it happened."""
    import signal
    import threading

    INTERRUPT["requested"] = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: Any) -> None:
        INTERRUPT["requested"] = True
        log.warning("interrupted: stopping the sweep (Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    saved = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if saved is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved


def _stopper_base() -> type:
    from ray.tune.stopper import Stopper

    return Stopper


class InterruptStopper(_stopper_base()):  # type: ignore[misc]
    """Stops the whole sweep once Ctrl-C was pressed; never a single trial."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return bool(INTERRUPT["requested"])
