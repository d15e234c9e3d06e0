"""Ctrl-C during a sweep: the first stops it the way Ray Tune stops an interrupted experiment (its state
saved with the running trials still unfinished, so the sweep can resume); a second stops at once."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: set by the first Ctrl-C of a sweep. `relay` is set while Ray Tune has not yet installed its own
#: handler, so the request is passed on again once the sweep's loop runs.
INTERRUPT = {"requested": False, "relay": False}


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[None]:
    """Route the first Ctrl-C to Ray Tune's own graceful stop (it listens on SIGUSR1 too) while noting
    that it happened; Ray's SIGINT handler is switched off so that the runner can tell."""
    INTERRUPT.update(requested=False, relay=False)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_int, previous_usr1 = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)

    def on_interrupt(signum: int, frame: Any) -> None:
        INTERRUPT["requested"] = True
        log.warning("interrupted: saving the sweep's state (Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGUSR1)

    def too_early(signum: int, frame: Any) -> None:
        INTERRUPT["relay"] = True  # Ray's handler is not in place yet: pass it on from the loop

    saved = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGUSR1, too_early)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGUSR1, previous_usr1)
        if saved is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved


def relay_interrupt() -> None:
    """Called from inside Ray Tune's loop: pass on an interrupt that came before Ray could hear it."""
    if INTERRUPT["relay"]:
        INTERRUPT["relay"] = False
        os.kill(os.getpid(), signal.SIGUSR1)
