"""The trial side of a sweep: what runs in a Ray worker for each trial.

The worker imports only what training needs (the spec, the trainable, torch, Ray's session): the
tracker, MLflow and the report stay on the driver.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpsweep.contract import RESULT_ERROR, RESULT_SCORE, RESULT_STOP, SEED_PARAM, StopReason
from hpsweep.spec.sweep_spec import SweepSpec, validate_data
from hpsweep.sweep.checkpoints import REPORTED_FILE, read_reported
from hpsweep.sweep.node_data import on_this_node
from hpsweep.sweep.workers import data_parallel, join_group
from hpsweep.track.records import epoch_metrics, epoch_step
from hpsweep.train.checkpoint import load_checkpoint, remove_orphaned_staging, save_checkpoint, staging_folder
from hpsweep.train.trainable import TrialContext, load_trainable

log = logging.getLogger(__name__)


def trial_entry(config: dict[str, Any], sweep: dict[str, Any], data: Any, pretrained: dict[str, Any] | None,
                fetch: list[Any] | None = None, data_ref: list[Any] | None = None) -> None:
    """Runs in a Ray worker: rebuild the spec, size torch to the trial's CPUs, run the trainable. `data` is
    the sweep's data as Ray's object store holds it (numpy arrays mapped in place; None for a trainable
    that reads its own): Tune resolves the object ref the driver handed it (node_data.share). With
    `resources.workers` above 1 this process is rank 0 of the trial's workers, and `data_ref` holds the
    object ref the other workers read the data by."""
    import torch
    from ray import tune

    remove_orphaned_staging()  # what workers killed on this machine while saving a checkpoint left behind
    spec = validate_data(sweep["raw"], sweep["source"], Path(sweep["base_dir"]))
    resume, reported = _resume_point()
    # HyperBand pauses trials at its rungs, and a paused trial continues from the checkpoint of its last
    # report (Ray's function trainables have no other way to save): with it, every epoch checkpoints.
    every = 0.0 if spec.search.scheduler.name == "hyperband" else spec.train.checkpoint_every
    context = TrialContext(spec, None, _reporter(spec, reported), resume, spec.resources.cpu, pretrained,
                           checkpoint_every=every)
    try:
        if spec.resources.workers == 1:
            _train(config, context, data, fetch)
        else:
            with data_parallel(spec, rank_entry, (config, sweep, data_ref, pretrained, fetch), resume):
                _train(config, context, data, fetch)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        # Retrying the same configuration would run out of memory again: end the trial with the reason
        # (the tracker marks it FAILED) instead of raising, which Ray would retry up to max_failures.
        from hpsweep.train.metrics import worst_value

        metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
        tune.report({metric: worst_value(metric, mode), RESULT_STOP: StopReason.OOM.value,
                     RESULT_ERROR: f"out of memory: {type(exc).__name__}: {exc}"[:2000]})


def rank_entry(rank: int, world: int, address: str, config: dict[str, Any], sweep: dict[str, Any],
               data_ref: list[Any] | None, pretrained: dict[str, Any] | None, fetch: list[Any] | None,
               resume: dict[str, Any] | None) -> None:
    """A trial's worker other than rank 0 (in its own Ray actor): the same trainable, reporting nothing."""
    import ray

    spec = validate_data(sweep["raw"], sweep["source"], Path(sweep["base_dir"]))
    join_group(rank, world, address, gpu=spec.resources.gpu > 0)
    data = ray.get(data_ref[0]) if data_ref else None
    context = TrialContext(spec, None, lambda metrics, state=None: None, resume, spec.resources.cpu, pretrained,
                           reports=False)
    _train(config, context, data, fetch)


def _train(config: dict[str, Any], context: TrialContext, data: Any, fetch: list[Any] | None) -> None:
    import torch

    torch.set_num_threads(max(1, math.floor(context.cpus)))  # no oversubscription when trials share CPUs
    context.data = on_this_node(data, fetch) if data is not None else None  # views of the node's one copy
    if (seed := config.get(SEED_PARAM)) is not None:  # a confirmation's trial: its own seed, the same splits
        config = {k: v for k, v in config.items() if k != SEED_PARAM}
        context.spec = context.spec.model_copy(update={"train": context.spec.train.model_copy(
            update={"trial_seed": int(seed)})})
    load_trainable(context.spec.trainable)(config, context)


def _resume_point() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The state of the trial's latest checkpoint and the epochs it had reported, when Ray resumes it."""
    from ray import tune

    if (checkpoint := tune.get_checkpoint()) is None:
        return None, []
    try:
        with checkpoint.as_directory() as folder:
            return load_checkpoint(Path(folder)), read_reported(Path(folder))
    except FileNotFoundError:
        # A driver killed with -9 can leave Ray's saved state naming a checkpoint that was replaced
        # since; the trial starts over (the tracker logs each repeated epoch once).
        log.warning("checkpoint %s is gone; the trial starts from its first epoch", checkpoint.path)
        return None, []


def _reporter(spec: SweepSpec, reported: list[dict[str, Any]]) -> Callable[..., None]:
    """The trial's `report(metrics, state=None)`: to Ray Tune, with a checkpoint when a state is given.
    Each checkpoint carries every epoch reported so far, which the driver may not have written yet."""
    from ray import tune

    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]

    def report(metrics: Any, state: dict[str, Any] | None = None) -> None:
        metrics = dict(metrics)
        if isinstance(metrics.get(metric), int | float):
            # nudged by epoch, so that among equal values the earliest epoch ranks first, as the loop's
            # best epoch does (Ray then keeps the checkpoint the tracker logs)
            nudge = 1e-9 * (len(reported) + 1)
            metrics[RESULT_SCORE] = float(metrics[metric]) - nudge if mode == "max" else float(metrics[metric]) + nudge
        reported.append({"step": epoch_step(metrics, len(reported) + 1), "time": int(time.time() * 1000),
                         "metrics": epoch_metrics(metrics)})
        if state is None:
            tune.report(metrics)
            return
        with staging_folder() as folder:
            save_checkpoint(state, folder)
            (folder / REPORTED_FILE).write_text(json.dumps(reported), encoding="utf-8")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    return report
