"""The live view of a running sweep: what a person reads at a glance, at any number of trials.

On a terminal, one block that rich redraws in place: the counts of trials by state, the running trials,
and the best few. It never grows past the terminal's height or width, so it never scrolls, whether the
sweep has 10 trials or 10,000. Elsewhere (a CI log, a pipe), plain lines: one per finished trial for small
sweeps, a count every 5% of the trials for large ones.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from hpsweep.contract import FAILED_REASONS, StopReason, state_words, trial_run_name

#: sweeps of up to this many trials get a plain line per finished trial; larger ones a count every 5%
PLAIN_LINE_PER_TRIAL = 100
BEST_SHOWN = 3
REDRAW_S = 0.2  #: the fastest a terminal is redrawn (the last state is always drawn)


@dataclass
class _Trial:
    number: int
    params: dict[str, Any]
    epoch: int = 0
    value: float | None = None
    state: str = "running"  #: running, or the StopReason it ended with


@dataclass
class Layout:
    """What the view shows in its height: the counts, running trials (`more` not shown), the best few."""

    summary: str
    running: list[_Trial]
    more: int
    best: list[_Trial]


@dataclass
class LiveView:
    """Turns the sweep's progress events into the view; `update` for each event, `close` at the end."""

    metric: str
    mode: str
    total: int
    live: bool
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    trials: dict[int, _Trial] = field(default_factory=dict)
    drawn_at: float = 0.0
    reported: int = 0  #: finished trials already counted in a plain line
    scheduler: str = ""  #: the trial scheduler's name, for the trials it pruned
    began: float = field(default_factory=time.monotonic)
    _live: Any = field(default=None, repr=False)  #: rich's Live, once the first view is drawn

    def update(self, event: Any) -> None:
        trial = self.trials.setdefault(event.trial, _Trial(event.trial, dict(event.params)))
        if event.event == "start":  # a new trial, or one that resumes or is retried
            trial.state = "running"
        trial.epoch = max(trial.epoch, event.epoch)
        trial.value = event.value if event.value is not None else trial.value
        if event.event == "end":
            trial.state = str(event.status)
        if self.live:
            if event.event == "end" or time.monotonic() - self.drawn_at >= REDRAW_S:
                self._draw()
        elif event.event == "end":
            self._plain(trial)

    def note(self, line: str) -> None:
        """A line about the sweep itself (what start-up is doing), kept above the live block."""
        if self._live is not None:  # rich prints it above the live block
            self._live.console.print(line, highlight=False, markup=False, soft_wrap=True)
            return
        self._write_line(line)

    def close(self) -> None:
        if self.live and self.trials:
            self._draw()
        if self._live is not None:
            self._live.stop()  # the last view stays on screen, the cursor below it
            self._live = None
        elif self.total > PLAIN_LINE_PER_TRIAL and self.reported < self._finished():
            self._write_line(self.summary())
        self.stream.flush()

    # ------------------------------------------------------------ what is shown

    def _finished(self) -> int:
        return sum(t.state != "running" for t in self.trials.values())

    def best(self) -> list[_Trial]:
        ranked = [t for t in self.trials.values() if t.value is not None and math.isfinite(t.value)
                  and t.state not in FAILED_REASONS]
        return sorted(ranked, key=lambda t: (-t.value if self.mode == "max" else t.value, t.number))  # type: ignore

    def summary(self, with_best: bool = True) -> str:
        """`trials 12/120 done, 2 running, 3 pruned, 1 failed; best val_accuracy 0.9876 (trial-007)`:
        pruned trials are those the trial scheduler stopped early."""
        states = [t.state for t in self.trials.values()]
        pruned = sum(s == StopReason.SCHEDULER for s in states)
        failed = sum(s in FAILED_REASONS for s in states)
        text = (f"trials {self._finished()}/{self.total} done, {states.count('running')} running, "
                f"{pruned} pruned, {failed} failed")
        best = self.best()
        if best and with_best:
            text += f"; best {self.metric} {best[0].value:.4g} ({trial_run_name(best[0].number)})"
        return text + self._timing()

    def _timing(self) -> str:
        """`; 1m05s elapsed, about 3m left`: the time left from the pace of the trials finished so far."""
        elapsed, done = time.monotonic() - self.began, self._finished()
        text = f"; {_duration(elapsed)} elapsed"
        if 0 < done < self.total:
            text += f", about {_duration(elapsed * (self.total - done) / done)} left"
        return text

    def _row(self, trial: _Trial) -> str:
        """The trial as one plain line (CI logs): `trial-007  finished, 8 epochs  0.9861  lr=0.003 ...`."""
        name, state, value, params = self._cells(trial)
        return f"{name}  {state:<26} {value:>10}  {params}"

    def _cells(self, trial: _Trial) -> tuple[str, str, str, str]:
        value = f"{trial.value:.4g}" if trial.value is not None else "-"
        params = "  ".join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in trial.params.items())
        return trial_run_name(trial.number), state_words(trial.state, trial.epoch, self.scheduler), value, params

    def layout(self, height: int) -> Layout:
        """What fits in `height` lines: the counts, the running trials that fit (the rest counted), the
        best few (left out when even they do not fit)."""
        best = self.best()[:BEST_SHOWN]
        running = [t for t in self.trials.values() if t.state == "running"]
        room = max(0, height - 1 - (1 + len(best) if best else 0) - 1)
        shown: list[_Trial] = []
        if running and room > 0:
            shown = running[:room] if len(running) <= room else running[:room - 1]
        used = 1 + (1 + len(shown) + (len(shown) < len(running)) if shown else 0)
        fits = bool(best) and used + 1 + len(best) <= height
        return Layout(self.summary(with_best=False), shown, len(running) - len(shown) if shown else 0,
                      best if fits else [])

    def renderable(self, height: int, width: int) -> Any:
        """The view as rich renders it: the counts in bold, the trials in aligned columns, the best in green."""
        from rich.console import Group
        from rich.padding import Padding
        from rich.table import Table
        from rich.text import Text

        def table(trials: list[_Trial], first_style: str = "") -> Padding:
            rows = [self._cells(trial) for trial in trials]
            widths = [max(len(r[column]) for r in rows) for column in range(3)]
            grid = Table.grid(padding=(0, 2))
            for column, justify in enumerate(("left", "left", "right")):  # these keep their width...
                grid.add_column(justify=justify, no_wrap=True, width=widths[column])
            # ...and the parameters give way (rich would otherwise shrink every column alike)
            grid.add_column(no_wrap=True, overflow="ellipsis", max_width=max(1, width - 2 - sum(widths) - 6))
            for index, cells in enumerate(rows):
                grid.add_row(*cells, style=first_style if index == 0 else "")
            return Padding(grid, (0, 0, 0, 2))

        shown = self.layout(height)
        parts: list[Any] = [Text(shown.summary, style="bold", no_wrap=True, overflow="ellipsis")]
        if shown.running:
            parts += [Text("running:", style="dim"), table(shown.running)]
            if shown.more:
                parts.append(Text(f"  ... and {shown.more} more", style="dim"))
        if shown.best:
            parts += [Text(f"best {self.metric}:", style="dim"), table(shown.best, first_style="green")]
        return Group(*parts)

    # ------------------------------------------------------------ writing

    def _draw(self) -> None:
        """Redraw through rich's Live, cropped to the terminal (asked each time: it may be resized), one line
        short of its height and width so that the block never scrolls and never leaves rows in the scrollback."""
        from rich.console import Console
        from rich.live import Live

        columns, rows = self._size()
        width, height = max(10, columns - 1), max(1, rows - 1)  # a full last column makes some terminals wrap
        if self._live is None:
            console = Console(file=self.stream, force_terminal=True, width=width, height=height)
            self._live = Live(console=console, auto_refresh=False, vertical_overflow="crop",
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._live.console.size = (width, height)
        self._live.update(self.renderable(height, width), refresh=True)
        self.drawn_at = time.monotonic()

    def _size(self) -> tuple[int, int]:
        """The terminal's (columns, rows): the one this view writes to."""
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, ValueError, OSError):
            size = shutil.get_terminal_size((100, 24))
        return size.columns, size.lines

    def _plain(self, trial: _Trial) -> None:
        if self.total <= PLAIN_LINE_PER_TRIAL:
            self._write_line(self._row(trial))
            return
        finished = self._finished()
        step = max(1, math.ceil(self.total * 0.05))
        if finished // step > self.reported // step or finished == self.total:
            self.reported = finished
            self._write_line(self.summary())

    def _write_line(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
