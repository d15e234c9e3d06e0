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


def _main_thread() -> bool:
    """Python runs signal handlers on the main thread, and only it may set them."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handling(handlers: dict[int, Any]) -> Iterator[None]:
    """Install `handlers` (signal -> handler) for the block and put the previous ones back after it;
    nothing is installed off the main thread."""
    if not _main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in handlers}
    for number, handler in handlers.items():
        signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does (Python's default for SIGTERM is to
    die on the spot, leaving runs RUNNING and Ray's processes to their own devices)."""
    INTERRUPT["signal"] = None
    with _handling({signal.SIGTERM: _raise_interrupt}):
        yield


def hold_terminate() -> None:
    """Put terminate_as_interrupt's handler back: Ray's start installs its own for SIGTERM (it prints a
    stack dump and aborts the process, exit 134). Only from the main thread, inside that block."""
    if _main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def deferred_interrupt(second_raises: bool = True) -> Iterator[dict[str, Any]]:
    """For a short step that must not be cut in half (creating the sweep's parent run): the first Ctrl-C
    or SIGTERM is noted in the yielded dict ("signal") and acted on by the caller after the step; a second
    one raises at once (a tracking server that does not answer must not hold the command) unless
    `second_raises` is off, for a step that a raise would crash rather than stop (see `importing`)."""
    heard: dict[str, Any] = {"signal": None}

    def note(signum: int, frame: Any) -> None:
        if heard["signal"] is not None and second_raises:
            _raise_interrupt(signum, frame)
        heard["signal"] = INTERRUPT["signal"] = signum

    with _handling({signal.SIGINT: note, signal.SIGTERM: note}):
        yield heard


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around importing torch and what imports it: a KeyboardInterrupt raised while torch's extension runs
    Python code on its behalf cannot unwind through C++ and aborts the process (exit 134, "terminate called
    after throwing an instance of 'pybind11::error_already_set'"). Ctrl-C and SIGTERM are held until the
    imports are done (a few seconds) and then raised."""
    with deferred_interrupt(second_raises=False) as heard:
        yield
    if heard["signal"] is not None:
        raise KeyboardInterrupt


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
    if not _main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        INTERRUPT["signal"] = signum
        log.warning("interrupted: saving the sweep's state (Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        stop_gracefully()

    def too_early(signum: int, frame: Any) -> None:
        INTERRUPT["relay"] = True  # Ray's handler is not in place yet: pass it on from the loop

    saved = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        with _handling({signal.SIGINT: on_interrupt, signal.SIGTERM: on_interrupt, signal.SIGUSR1: too_early}):
            yield
    finally:
        if saved is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved


def stop_gracefully() -> None:
    """Stop the running sweep as a first Ctrl-C does (its state saved, the open runs closed KILLED,
    resumable): Ray Tune stops gracefully on SIGUSR1."""
    INTERRUPT["requested"] = True
    os.kill(os.getpid(), signal.SIGUSR1)


def relay_interrupt() -> None:
    """Called from inside Ray Tune's loop: pass on an interrupt that came before Ray could hear it."""
    if INTERRUPT["relay"]:
        INTERRUPT["relay"] = False
        os.kill(os.getpid(), signal.SIGUSR1)
