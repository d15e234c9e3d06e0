"""The live view of a sweep at any size: in a small real terminal it redraws in place and never leaves
rows behind in the scrollback; without a terminal it writes a bounded number of plain lines."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import termios
import threading

import pyte
import pytest

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
        stream.write("starting sweep big\n")
        view = LiveView("val_accuracy", "max", trials, live=True, stream=stream, scheduler="asha")
        for index, event in enumerate(_events(trials, at_once)):
            view.update(event)
            if index == 100:  # a line about the sweep itself, printed while the view is on screen
                view.note("Ray: up in 4.0 s")
        view.close()
    reader.join(timeout=10)
    os.close(master)
    screen = pyte.HistoryScreen(columns, rows, history=100_000)
    pyte.ByteStream(screen).feed(bytes(received).replace(b"\n", b"\r\n"))
    return screen


@pytest.mark.parametrize(("rows", "columns", "trials"), [(15, 80, 1000), (4, 30, 200), (60, 200, 300)])
def test_many_trials_redraw_in_place_at_any_terminal_size(rows, columns, trials):
    screen = _screen_through_a_pty(rows=rows, columns=columns, trials=trials, at_once=40)
    history = ["".join(screen.history.top[i][x].data for x in range(columns)).rstrip()
               for i in range(len(screen.history.top))]
    shown = [line.rstrip() for line in screen.display]
    every = [line for line in history + shown if line]
    assert every[0] == "starting sweep big"
    assert every.count("Ray: up in 4.0 s") == 1  # once, above the view
    summaries = [line for line in every if line.startswith("trials ")]
    assert len(summaries) == 1 and summaries[0].startswith(f"trials {trials}/{trials} done, 0 running"[:columns - 2])
    table = [line for line in every if line.startswith("  trial-")]
    assert len(table) == len(set(table)) <= rows - 1  # no row left behind, the block within the terminal's height
    assert all(len(line) < columns for line in every)  # never wider than the terminal: no wrapped lines
    if rows >= 8:
        assert "best val_accuracy:" in shown
        assert any(re.match(r"  trial-\d+  +finished, 3 epochs +0\.\d+  +lr=", line) for line in shown)
        assert any(re.match(r"  trial-\d+  +pruned \(asha, epoch 3\) +0\.\d+  +lr=", line) for line in shown)


def test_the_running_trials_that_do_not_fit_are_counted():
    from rich.console import Console

    view = LiveView("val_loss", "min", 100, live=True, stream=io.StringIO())
    for n in range(1, 31):
        view.update(Progress("start", n, {"lr": 0.01}))
    out = io.StringIO()
    Console(file=out, width=60, height=10, color_system=None).print(view.renderable(10, 60))
    block = [line.rstrip() for line in out.getvalue().splitlines()]
    assert len(block) == 10 and block[0].startswith("trials 0/100 done, 30 running")
    assert block[-1] == "  ... and 23 more" and len([line for line in block if line.startswith("  trial-")]) == 7
    assert all(re.fullmatch(r"  trial-0\d\d  running, epoch 0  +-  lr=0.01", line) for line in block[2:9])


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
