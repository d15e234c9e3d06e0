"""A sweep's checkpoints on disk: superseded ones pruned once Ray's saved state has moved past them, and
the list of epochs each checkpoint carries (what its trial reported, for a resume to backfill MLflow)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the file in each checkpoint listing every epoch its trial reported: [{"step": n, "time": ms, "metrics": {...}}]
REPORTED_FILE = "reported.json"
#: how often Ray Tune saves the experiment state a resume starts from (TUNE_GLOBAL_CHECKPOINT_S overrides)
STATE_SAVE_S = 5
#: how long a superseded checkpoint outlives its successor: Ray saves its experiment state every
#: STATE_SAVE_S, so by then the state a resume would read names the successor
PRUNE_GRACE_S = 30.0
#: how often a running trial's superseded checkpoints are looked for
PRUNE_EVERY_S = 5.0


def prune_checkpoints(trial_folder: Path, keep: set[Path], grace_s: float) -> list[Path]:
    """Delete a trial's checkpoints except those in `keep` and those superseded less than `grace_s` ago."""
    found = sorted(trial_folder.glob("checkpoint_*"), key=lambda p: p.name)
    now, deleted = time.time(), []
    for older, newer in itertools.pairwise(found):
        if older in keep:
            continue
        try:
            if now - newer.stat().st_mtime < grace_s:
                continue
            shutil.rmtree(older)
        except OSError:
            continue  # already gone, or its successor vanished: nothing to do
        deleted.append(older)
    return deleted


def read_reported(folder: Path) -> list[dict[str, Any]]:
    """The epochs a checkpoint says its trial reported ([] for a checkpoint written without the list)."""
    path = folder / REPORTED_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("could not read %s: %s", path, exc)
        return []
    return entries if isinstance(entries, list) else []
