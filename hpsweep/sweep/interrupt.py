"""Ctrl-C during a sweep: the first stops it the way Ray Tune stops an interrupted experiment (its state
saved with the running trials still unfinished, so the sweep can resume); a second stops at once.

SIGTERM, which schedulers, containers and `docker compose stop` send, is taken the same way; the
command then exits with 143 instead of 130 (INTERRUPT["signal"] says which came)."""

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
INTERRUPT: dict[str, Any] = {"requested": False, "relay": False, "signal": None}


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does (Python's default for SIGTERM is to
    die on the spot, leaving runs RUNNING and Ray's processes to their own devices)."""
    INTERRUPT["signal"] = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def hold_terminate() -> None:
    """Put terminate_as_interrupt's handler back: Ray's start installs its own for SIGTERM (it prints a
    stack dump and aborts the process, exit 134). Only from the main thread, inside that block."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[dict[str, Any]]:
    """For a short step that must not be cut in half (creating the sweep's parent run): the first Ctrl-C
    or SIGTERM is noted in the yielded dict ("signal") and acted on by the caller after the step; a second
    one raises at once (a tracking server that does not answer must not hold the command)."""
    heard: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield heard
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def note(signum: int, frame: Any) -> None:
        if heard["signal"] is not None:
            _raise_interrupt(signum, frame)
        heard["signal"] = INTERRUPT["signal"] = signum

    for number in previous:
        signal.signal(number, note)
    try:
        yield heard
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _raise_interrupt(signum: int, frame: Any) -> None:
    INTERRUPT["signal"] = signum
    raise KeyboardInterrupt


def exit_code(default: int) -> int:
    """143 for a sweep ended by SIGTERM (128 + 15, as a shell reports it), else `default`."""
    return 128 + signal.SIGTERM if INTERRUPT["signal"] == signal.SIGTERM else default


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[None]:
    """Route the first Ctrl-C to Ray Tune's own graceful stop (it listens on SIGUSR1 too) while noting
    that it happened; Ray's SIGINT handler is switched off so that the runner can tell."""
    INTERRUPT.update(requested=False, relay=False)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}

    def on_interrupt(signum: int, frame: Any) -> None:
        INTERRUPT.update(requested=True, signal=signum)
        log.warning("interrupted: saving the sweep's state (Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        os.kill(os.getpid(), signal.SIGUSR1)

    def too_early(signum: int, frame: Any) -> None:
        INTERRUPT["relay"] = True  # Ray's handler is not in place yet: pass it on from the loop

    saved = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, on_interrupt)
    signal.signal(signal.SIGUSR1, too_early)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if saved is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved


def stop_gracefully() -> None:
    """Stop the running sweep from inside Ray Tune's loop as a first Ctrl-C would (its state saved, the
    open runs closed KILLED, resumable)."""
    INTERRUPT["requested"] = True
    os.kill(os.getpid(), signal.SIGUSR1)


def relay_interrupt() -> None:
    """Called from inside Ray Tune's loop: pass on an interrupt that came before Ray could hear it."""
    if INTERRUPT["relay"]:
        INTERRUPT["relay"] = False
        os.kill(os.getpid(), signal.SIGUSR1)
