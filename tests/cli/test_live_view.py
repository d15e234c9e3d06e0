"""The live view of a sweep at any size: in a small real terminal it redraws in place and never leaves
rows behind in the scrollback; without a terminal it writes a bounded number of plain lines."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios
import threading

import pyte

from hpsweep.cli.live import LiveView
from hpsweep.sweep.live import Progress


def _events(trials: int, at_once: int, epochs: int = 3):
    """A sweep's events: `at_once` trials running together, every third stopped early by the scheduler."""
    for first in range(1, trials + 1, at_once):
        group = range(first, min(trials, first + at_once - 1) + 1)
        for n in group:
            yield Progress("start", n, {"lr": 0.001 * n, "batch_size": 64})
        for epoch in range(1, epochs + 1):
            for n in group:
                yield Progress("epoch", n, {"lr": 0.001 * n, "batch_size": 64}, epoch, value=0.5 + n / 10_000)
        for n in group:
            stop = "scheduler" if n % 3 == 0 else "completed"
            yield Progress("end", n, {"lr": 0.001 * n, "batch_size": 64}, epochs, 0.5 + n / 10_000, stop)


def _screen_through_a_pty(rows: int, columns: int, trials: int, at_once: int) -> pyte.HistoryScreen:
    """Run the view on the slave side of a real pseudo-terminal of `rows` x `columns` and replay what
    reached the master side in a terminal emulator that keeps its scrollback."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with os.fdopen(slave, "w", encoding="utf-8") as stream:
        stream.write("starting sweep big: 1000 trials\n")
        view = LiveView("val_accuracy", "max", trials, live=True, stream=stream, scheduler="asha")
        for event in _events(trials, at_once):
            view.update(event)
        view.close()
    reader.join(timeout=10)
    os.close(master)
    screen = pyte.HistoryScreen(columns, rows, history=100_000)
    pyte.ByteStream(screen).feed(bytes(received).replace(b"\n", b"\r\n"))
    return screen


def test_a_thousand_trials_redraw_in_place_in_a_small_terminal():
    screen = _screen_through_a_pty(rows=15, columns=80, trials=1000, at_once=40)
    history = ["".join(screen.history.top[i][x].data for x in range(80)).rstrip()
               for i in range(len(screen.history.top))]
    shown = [line.rstrip() for line in screen.display]
    every = [line for line in history + shown if line]
    assert every[0] == "starting sweep big: 1000 trials"
    summaries = [line for line in every if line.startswith("trials ")]
    assert [line.split(";")[0] for line in summaries] == ["trials 1000/1000 done, 0 running, 333 pruned, 0 failed"]
    rows = [line for line in every if line.startswith("  trial-")]
    assert len(rows) == len(set(rows)) <= 14  # no row left behind, the block within the terminal's height
    assert all(len(line) < 80 for line in every)  # never wider than the terminal: no wrapped lines
    assert "best val_accuracy:" in shown and "  trial-1000  finished, 3 epochs" in "\n".join(shown)
    assert "  trial-999  pruned (asha, epoch 3)" in "\n".join(shown)  # the state words a person knows


def test_the_running_trials_that_do_not_fit_are_counted():
    view = LiveView("val_loss", "min", 100, live=True, stream=io.StringIO())
    for n in range(1, 31):
        view.update(Progress("start", n, {"lr": 0.01}))
    block = view.block(height=10)
    assert len(block) == 10 and block[0].startswith("trials 0/100 done, 30 running")
    assert block[-1] == "  ... and 23 more" and len([line for line in block if line.startswith("  trial-")]) == 7


def test_without_a_terminal_a_large_sweep_writes_a_line_every_5_percent():
    out = io.StringIO()
    view = LiveView("val_accuracy", "max", 1000, live=False, stream=out)
    for event in _events(1000, at_once=40):
        view.update(event)
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].startswith("trials 50/1000 done")
    assert lines[-1].startswith("trials 1000/1000 done, 0 running, 333 pruned, 0 failed; best val_accuracy 0.6 "
                                "(trial-1000); 0s elapsed")
    small = io.StringIO()
    view = LiveView("val_accuracy", "max", 12, live=False, stream=small)
    for event in _events(12, at_once=4):
        view.update(event)
    assert [line.split()[0] for line in small.getvalue().splitlines()] == [f"trial-{n:03d}" for n in range(1, 13)]


def test_the_summary_says_the_time_spent_and_the_time_left_at_the_pace_so_far():
    import time

    view = LiveView("val_accuracy", "max", 100, live=False, stream=io.StringIO(), began=time.monotonic() - 150)
    for event in _events(25, at_once=5):
        view.update(event)
    assert view.summary().endswith("; 2m30s elapsed, about 7m30s left")
