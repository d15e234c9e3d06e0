"""Ray Tune's trial schedulers, built from `search.scheduler`."""

from __future__ import annotations

import logging
from typing import Any

from hpsweep.spec.params import param_extremes
from hpsweep.spec.sweep_spec import SweepSpec

log = logging.getLogger(__name__)


def build_scheduler(spec: SweepSpec) -> Any:
    """The trial scheduler. Grace periods cover the frozen-backbone epochs: a trial whose backbone is still
    frozen is behind by design, and stopping it then would judge it before it has really started."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    chosen, epochs = spec.search.scheduler, spec.train.epochs
    grace = grace_period(spec)
    if chosen.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace,
                             reduction_factor=chosen.reduction_factor)
    if chosen.name == "hyperband":
        limit = spec.search.max_concurrent
        if limit is not None and limit < spec.num_trials:
            # Ray counts a bracket as full only while its trials live, so a trial started after others
            # have ended joins the first bracket, whose trials all run to the end (ray-project/ray#12536)
            log.warning("scheduler hyperband with search.max_concurrent %d below num_trials %d stops few or "
                        "no trials early: Ray Tune puts trials started after others have ended into its "
                        "first bracket, which runs every trial to the end; leave max_concurrent unset or use "
                        "asha", limit, spec.num_trials)
        return HyperBandScheduler(time_attr="training_iteration", max_t=epochs,
                                  reduction_factor=chosen.reduction_factor)
    if chosen.name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=grace,
                                  min_samples_required=chosen.min_samples_required)
    return FIFOScheduler()


def grace_period(spec: SweepSpec) -> int:
    """Epochs every trial runs before a scheduler may stop it: the sweep's grace period, raised to
    one past the most frozen epochs any trial can draw."""
    asked = getattr(spec.search.scheduler, "grace_period", 1)
    frozen = 0
    if "freeze_epochs" in spec.space.model_fields_set:
        frozen = int(param_extremes(spec.space.freeze_epochs)[1] or 0)
    grace = min(spec.train.epochs, max(asked, frozen + 1))
    if grace != asked:
        log.info("grace period raised to %d so no trial is stopped while its backbone is frozen", grace)
    return grace
