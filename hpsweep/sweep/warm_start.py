"""A new sweep's start from earlier ones (search.warm_start): which data it ran on, and what it borrows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from hpsweep.contract import WARM_START_FILE
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.sweep.plan import SweepPlan
from hpsweep.track.tracker import SweepTracker
from hpsweep.track.warm import WarmStart, gather
from hpsweep.train.data.base import PreparedData


def data_fingerprint(spec: SweepSpec, data: PreparedData | None) -> str:
    """The data's fingerprint (its examples and labels); for a trainable that reads its own data, one of
    the sweep's `data` settings, all hpsweep knows of it."""
    if data is not None:
        return data.fingerprint()
    settings = json.dumps(spec.data.model_dump(mode="json"), sort_keys=True)
    return "settings-" + hashlib.sha256(settings.encode()).hexdigest()[:16]


def warm_start(spec: SweepSpec, plan: SweepPlan, tracker: SweepTracker, say: Callable[[str], None]
               ) -> WarmStart | None:
    """What a new sweep borrows from earlier ones (search.warm_start), said and recorded on its parent run.
    A resumed sweep borrows nothing again: Ray Tune restores its sampler with what it borrowed."""
    if not spec.search.warm_start or plan.resuming:
        return None
    warm = gather(tracker.client, spec, tracker.parent_id, tracker.fingerprint)
    say(warm.describe())
    tracker.client.log_param(tracker.parent_id, "search.warm_start", ",".join(warm.sweeps) or "none")
    tracker.client.log_text(tracker.parent_id, warm.as_json(), WARM_START_FILE)
    return warm
