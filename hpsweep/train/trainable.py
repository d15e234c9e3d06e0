"""What a trainable is, and how one is found by name.

A trainable is a function `fn(config, context)`: `config` is the trial's flat hyperparameters (as
`hpsweep space` shows them) and `context` gives it the sweep, the data prepared once for the whole
sweep, and `report` to hand each epoch's metrics (and a checkpoint) to the sweep. A trainable that
reports by itself asks `context.checkpoint_due(...)` whether to pass its state. Trainables are
registered under the entry-point group `hpsweep.trainables` and named in sweep files by that name.

A trainable that reads its own data (not one of hpsweep's sources) sets `fn.uses_data = False`;
one that takes only images or only tables sets `fn.accepts = "image"` or `"table"`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol

from hpsweep.errors import UserError

if TYPE_CHECKING:
    from hpsweep.spec.sweep_spec import SweepSpec
    from hpsweep.train.data.base import PreparedData
    from hpsweep.train.loop_api import EpochReport


class Trainable(Protocol):
    def __call__(self, config: Mapping[str, Any], context: TrialContext) -> None: ...


Report = Callable[[Mapping[str, Any], "dict[str, Any] | None"], None]


@dataclass
class TrialContext:
    """Everything a trainable gets besides its hyperparameters."""

    spec: SweepSpec
    data: PreparedData | None
    report: Report  #: report(metrics, checkpoint_state=None), once per epoch
    resume_state: dict[str, Any] | None = None  #: the latest checkpoint when the trial is resumed
    cpus: float = 1.0
    pretrained: dict[str, Any] | None = None  #: model.pretrained's weights, read once for the sweep
    #: seconds between checkpoints of epochs that are neither best nor last (0: every epoch)
    checkpoint_every: float = 0.0
    #: False for a data-parallel trial's workers other than rank 0: their reports go nowhere
    reports: bool = True
    _checkpointed_at: float = field(default_factory=time.monotonic, init=False, repr=False)
    _best_confusion: list[list[int]] | None = field(default=None, init=False, repr=False)

    def checkpoint_due(self, is_best: bool, last: bool) -> bool:
        """Whether this epoch's state should go with its report: always for a best epoch (the sweep keeps
        the best checkpoint) and the last one, otherwise once `checkpoint_every` has passed since the
        previous checkpoint. A resumed trial repeats the epochs after its latest checkpoint, so this
        bounds the training a crash or a Ctrl-C costs, while short epochs do not pay for a checkpoint
        each (saving one and handing it to Ray Tune takes a few milliseconds)."""
        now = time.monotonic()
        if is_best or last or now - self._checkpointed_at >= self.checkpoint_every:
            self._checkpointed_at = now
            return True
        return False

    def on_epoch(self, report: EpochReport) -> None:
        """Adapter for the shared loop: metrics every epoch, the confusion matrix at a best epoch,
        the reason when training ends, and a checkpoint of the whole state when one is due. The last
        report repeats the best epoch's matrix, so Ray's last result for an ended trial holds it: a
        driver that dies before the trial's end reaches MLflow still finds it there on resume."""
        if not self.reports:
            return
        metrics: dict[str, Any] = dict(report.metrics)
        if report.is_best and report.confusion is not None:
            self._best_confusion = report.confusion.tolist()
            metrics["hpsweep_confusion"] = self._best_confusion
        if report.stop:
            metrics["hpsweep_stop"] = report.stop
            if self._best_confusion is not None:
                metrics["hpsweep_confusion"] = self._best_confusion
        metrics["hpsweep_best"] = report.is_best
        due = self.checkpoint_due(report.is_best, last=report.stop is not None)
        self.report(metrics, report.state() if due else None)


class UnknownTrainable(UserError, LookupError):
    pass


def _registered(name: str) -> EntryPoint | None:
    """The entry point of the trainable registered as `name`, or None."""
    return next((ep for ep in entry_points(group="hpsweep.trainables") if ep.name == name), None)


def load_trainable(name: str) -> Trainable:
    """The installed trainable registered as `name` (imported now, so only when a trial needs it)."""
    if (ep := _registered(name)) is None:
        raise UnknownTrainable(f"no trainable named {name!r} is installed")
    return ep.load()


def trainable_module(name: str) -> str | None:
    """The module the trainable registered as `name` lives in, without importing it (None if unknown)."""
    return ep.module if (ep := _registered(name)) is not None else None


def uses_data(trainable: Trainable) -> bool:
    return bool(getattr(trainable, "uses_data", True))


def data_mismatch(trainable: Trainable, data: PreparedData) -> str | None:
    """Why this trainable cannot take this data, or None."""
    accepts = getattr(trainable, "accepts", None)
    kind = "image" if data.is_image else "table"
    if accepts is not None and accepts != kind:
        return f"this trainable takes {accepts} data, but data.source gives a {kind}"
    return None
