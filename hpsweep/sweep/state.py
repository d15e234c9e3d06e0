"""A sweep's identity on disk, so that running it again resumes it.

Each sweep owns a folder in the results storage, named by its sweep id, holding Ray Tune's experiment
state and `hpsweep-sweep.json`: the sweep's name, fingerprint, the settings it ran with, how far it got
and how much of its time budget it used. A lock file in the same folder is held while a driver runs
the sweep, so two drivers never run it at once; the lock dies with its process, even on `kill -9`.

The fingerprint covers everything that decides what a trial is (data, model, space, training,
search algorithm and scheduler) and leaves out the budget (`search.num_trials`, `search.time_budget`)
and `train.checkpoint_every`, which may change between an interruption and the resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpsweep.errors import UserError
from hpsweep.spec.sweep_spec import SweepSpec

log = logging.getLogger(__name__)

STATE_FILE, LOCK_FILE = "hpsweep-sweep.json", ".hpsweep.lock"
#: fields that may change when a sweep resumes: how much it may spend and how often trials checkpoint,
#: not what it searches
RESUMABLE_FIELDS = (("search", "num_trials"), ("search", "time_budget"), ("train", "checkpoint_every"))
Status = Literal["running", "interrupted", "finished", "abandoned"]


class SweepBusy(UserError, RuntimeError):
    """Another process is running this sweep."""


class SweepChanged(UserError, ValueError):
    """The sweep file changed in a way that makes resuming its unfinished sweep unsafe."""


@dataclass
class SweepState:
    sweep_id: str
    name: str
    fingerprint: str
    settings: dict[str, Any]  #: the resolved sweep without its budget: what the fingerprint covers
    raw: dict[str, Any]  #: the sweep file as run (with --set applied): what `hpsweep resume NAME` reruns
    source: str
    base_dir: str
    tracking_uri: str
    status: Status = "running"
    num_trials: int = 0
    time_budget: float | None = None
    elapsed_s: float = 0.0  #: time spent running, over every start of the sweep
    starts: int = 0
    created: float = field(default_factory=time.time)

    @property
    def unfinished(self) -> bool:
        return self.status in ("running", "interrupted")

    def save(self, folder: Path) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{STATE_FILE}.partial"
        try:
            partial.write_text(json.dumps(asdict(self), indent=1, sort_keys=True), encoding="utf-8")
            os.replace(partial, folder / STATE_FILE)
        except OSError:  # a full disk: the previous file stays, no half-written one beside it
            partial.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, folder: Path) -> SweepState:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def settings_of(spec: SweepSpec) -> dict[str, Any]:
    """The resolved sweep (defaults filled in) minus the fields that may change on resume."""
    settings = spec.model_dump(mode="json", by_alias=True)
    for section, key in RESUMABLE_FIELDS:
        settings.get(section, {}).pop(key, None)
    return settings


def fingerprint(spec: SweepSpec) -> str:
    text = json.dumps(settings_of(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two resolved sweeps."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b, path = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{path}.")
        elif a != b:
            out.append(path)
    return out


def check_unchanged(state: SweepState, spec: SweepSpec) -> None:
    """Raise SweepChanged unless `spec` differs from the sweep's recorded settings only in its budget."""
    if fingerprint(spec) == state.fingerprint:
        return
    fields = changed_fields(state.settings, settings_of(spec)) or ["(settings)"]
    shown = ", ".join(fields[:6]) + (f" and {len(fields) - 6} more" if len(fields) > 6 else "")
    raise SweepChanged(
        f"{spec.source}: changed since sweep {state.sweep_id} was interrupted ({shown}); only "
        f"{', '.join('.'.join(f) for f in RESUMABLE_FIELDS)} may change on resume. Undo the change, or run with "
        f"--restart to abandon that sweep and start afresh")


def sweep_folders(root: Path, name: str) -> list[tuple[Path, SweepState]]:
    """The sweeps named `name` under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not (folder / STATE_FILE).is_file():
            continue
        try:
            state = SweepState.load(folder)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring %s: unreadable sweep state (%s)", folder / STATE_FILE, exc)
            continue
        if state.name == name:
            found.append((folder, state))
    return sorted(found, key=lambda item: item[1].created)


def unfinished_sweep(root: Path, name: str) -> tuple[Path, SweepState] | None:
    """The latest sweep named `name` that neither finished nor was abandoned."""
    unfinished = [item for item in sweep_folders(root, name) if item[1].unfinished]
    return unfinished[-1] if unfinished else None


@contextlib.contextmanager
def sweep_lock(folder: Path, sweep_id: str) -> Iterator[None]:
    """Held while a driver runs the sweep; SweepBusy if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SweepBusy(f"sweep {sweep_id} is being run by {holder}; wait for it or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
