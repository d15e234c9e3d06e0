"""ASHA + TPE against full-budget random search: how many trial-epochs each spends before its best-so-far
validation accuracy reaches a target, on the same seeds."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from bench.common import Outcome, median, scratch_folder
from hpsweep.spec import validate_data
from hpsweep.spec.sections import Asha
from hpsweep.track.records import TrialRecord

#: a wide space, as a first sweep on a new problem has: most learning rates train badly or not at all
SPACE: dict[str, Any] = {
    "lr": {"loguniform": [1.0e-5, 1.0]},
    "batch_size": {"choice": [16, 32, 64, 128, 256]},
    "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.0, 0.99]}}}},
    "dropout": {"uniform": [0.0, 0.7]},
}
#: the target is what the top tenth of the random side's trials reach: a configuration a person would keep
TARGET_QUANTILE = 0.9
#: how close to the target (accuracy) the trials a search with foresight runs end: the bound pruning has
FORESIGHT = (0.01, 0.02, 0.05)
#: ASHA settings replayed over random search's trials: hpsweep's defaults and those around them
ASHA_DEFAULT = (float(Asha.model_fields["reduction_factor"].default), int(Asha.model_fields["grace_period"].default))
REPLAY_REDUCTION_FACTORS = (2.0, 3.0, 4.0, 5.0)
REPLAY_GRACE_PERIODS = (1, 2, 3, 4)


def _raw(algorithm: str, scheduler: str, trials: int, epochs: int, seed: int) -> dict[str, Any]:
    return {
        "name": f"bench-search-{algorithm}-{seed}",
        "trainable": "image_classifier",
        # a large validation split, so that one image is 0.14 points and "within 0.5 points" means something
        "data": {"source": "sklearn_digits", "split": {"train": 0.6, "val": 0.4, "test": 0.0}},
        "model": {"name": "mlp", "hidden_sizes": [64]},
        "train": {"epochs": epochs, "metric": "val_accuracy", "seed": seed, "precision": "fp32"},
        # one trial at a time: the order of the trials, and so the count, does not depend on timing
        "search": {
            "algorithm": algorithm,
            "num_trials": trials,
            "max_concurrent": 1,
            "seed": seed,
            "scheduler": {"name": scheduler},
        },
        "space": SPACE,
        "resources": {"cpu": os.cpu_count() or 1},
    }


def _reached_at(record: TrialRecord, target: float, metric: str) -> int | None:
    """The trial's first epoch (counted from 1) whose metric reaches `target`; None when none does."""
    for number, epoch in enumerate(record.history, 1):
        if float(epoch.get(metric, float("-inf"))) >= target:
            return number
    return None


def _before_target(records: list[TrialRecord], target: float, metric: str) -> tuple[list[TrialRecord], int | None]:
    """The trials, in the order they ran, before the first whose metric reaches `target`, and the epoch
    (counted from 1) at which that one reached it; all the trials and None when none does."""
    before: list[TrialRecord] = []
    for record in sorted(records, key=lambda r: r.number):
        reached = _reached_at(record, target, metric)
        if reached is not None:
            return before, reached
        before.append(record)
    return before, None


def epochs_to_target(records: list[TrialRecord], target: float, metric: str = "val_accuracy") -> int | None:
    """Trial-epochs spent, trial after trial in the order they ran, up to and including the first epoch
    whose metric reaches `target`; None when no epoch does."""
    before, reached = _before_target(records, target, metric)
    return None if reached is None else sum(len(r.history) for r in before) + reached


def trials_to_target(records: list[TrialRecord], target: float, metric: str = "val_accuracy") -> int | None:
    """How many trials ran, in their order, up to and including the first that reaches `target`."""
    before, reached = _before_target(records, target, metric)
    return None if reached is None else len(before) + 1


def spent_before_target(records: list[TrialRecord], target: float, epochs: int,
                        metric: str = "val_accuracy") -> tuple[int, int]:
    """Of the trial-epochs spent before the trial that first reaches `target`: those in trials that ran
    all `epochs` (the scheduler let them through every rung) and those in trials it stopped early."""
    before, _ = _before_target(records, target, metric)
    ran = sum(len(r.history) for r in before if len(r.history) >= epochs)
    return ran, sum(len(r.history) for r in before) - ran


def expected_epochs_to_target(records: list[TrialRecord], target: float,
                              metric: str = "val_accuracy") -> float | None:
    """`epochs_to_target` averaged over every order the trials could have run in. Random search's trials
    are independent draws, so each order was as likely as the one that ran: a trial that never reaches
    the target comes before the first that does with chance 1 / (hits + 1), and that first one is any of
    the hits alike. None when no trial reaches the target."""
    hits, missed = [], 0
    for record in records:
        reached = _reached_at(record, target, metric)
        if reached is None:
            missed += len(record.history)
        else:
            hits.append(reached)
    if not hits:
        return None
    return missed / (len(hits) + 1) + sum(hits) / len(hits)


def foresight_epochs_to_target(records: list[TrialRecord], target: float, within: float,
                                metric: str = "val_accuracy") -> int | None:
    """`epochs_to_target` for a search that knew in advance which trials end within `within` of `target`
    and ran only those, each for all its epochs, in the same order: what pruning could save at best if
    it told apart, from their first epochs, trials that end that close to each other."""
    near = [r for r in records if _reached_at(r, target - within, metric) is not None]
    return epochs_to_target(near, target, metric)


def replay_asha(records: list[TrialRecord], target: float, epochs: int, reduction_factor: float = ASHA_DEFAULT[0],
                grace_period: int = ASHA_DEFAULT[1], metric: str = "val_accuracy",
                rank_by: tuple[str, str] | None = None) -> int | None:
    """`epochs_to_target` had Ray Tune's own ASHA scheduler watched these trials, one at a time in the
    order they ran: each trial's recorded epochs go to it one by one until it says stop. Over random
    search's full-budget trials this is ASHA without TPE, on the very configurations and learning curves
    random search drew, so it tells the scheduler's share of a saving from the sampler's. `rank_by`, a
    (metric, mode) pair: what ASHA compares trials by at its rungs, when not `metric` itself."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    ranked, mode = rank_by or (metric, "max")
    missing = float("-inf") if mode == "max" else float("inf")
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=ranked, mode=mode, max_t=epochs,
                              grace_period=grace_period, reduction_factor=reduction_factor)
    watched = []
    for record in sorted(records, key=lambda r: r.number):
        trial = SimpleNamespace(trial_id=str(record.number))  # all the scheduler reads of a trial
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
        ran = len(record.history)
        for step, epoch in enumerate(record.history, 1):
            result = {"training_iteration": step, ranked: float(epoch.get(ranked, missing))}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:  # type: ignore[arg-type]
                ran = step
                break
        watched.append(replace(record, history=record.history[:ran]))
    return epochs_to_target(watched, target, metric)


#: the key `with_final_best` adds
FINAL_BEST = "final_best"


def with_final_best(records: list[TrialRecord], metric: str = "val_accuracy") -> list[TrialRecord]:
    """The trials with every epoch also holding `FINAL_BEST`, the best `metric` the trial ends with: ranked
    by it, ASHA judges each trial at each rung as if it knew from its first epoch how the trial ends."""
    knowing = []
    for record in records:
        final = max((float(e.get(metric, float("-inf"))) for e in record.history), default=float("-inf"))
        knowing.append(replace(record, history=[{**e, FINAL_BEST: final} for e in record.history]))
    return knowing


def counted(cost: int | None, budget: int) -> int:
    """A side's trial-epochs to the target; one that never reached it counts its whole budget and one
    more epoch: a lower bound."""
    return cost if cost is not None else budget + 1


def pooled_interval(pairs: list[tuple[float, float]], level: float = 0.9, draws: int = 10_000,
                    seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval over seeds for sum(first) / sum(second): the seeds are redrawn with
    replacement `draws` times, and the central `level` of the pooled ratios is returned."""
    rng = random.Random(seed)
    ratios = sorted(
        sum(a for a, _ in drawn) / sum(b for _, b in drawn)
        for drawn in (rng.choices(pairs, k=len(pairs)) for _ in range(draws))
    )
    tail = int((1 - level) / 2 * draws)
    return ratios[tail], ratios[draws - 1 - tail]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_efficiency(quick: bool, seeds: tuple[int, ...] = tuple(range(1, 11))) -> Outcome:
    """Per seed, both sides run the same number of trials on the same data split and sampler seed (TPE's
    start-up trials then draw the same configurations random search does). The target is set from the
    random side's own trials, so random search always reaches it; ASHA + TPE has to.

    Ten seeds, because one seed's count depends on where random search's first hit happens to fall (25
    to 638 trial-epochs on seeds 1-15): five seeds gave 0.37 on seeds 1-5, 0.55 on 6-10, 0.79 on 11-15."""
    import ray

    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    trials, epochs = (4, 3) if quick else (40, 27)
    seeds = (0,) if quick else seeds
    folder = scratch_folder()
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    def sweep(algorithm: str, scheduler: str, seed: int) -> list[TrialRecord]:
        raw = _raw(algorithm, scheduler, trials, epochs, seed)
        spec = validate_data(raw, str(folder / "bench.yaml"), base_dir=folder)
        outcome = run_sweep(spec, plan_sweep(spec, raw, storage=str(folder / "results"), uri=uri), "bench")
        return list(outcome.trials.values())

    costs: dict[str, list[int]] = {"random": [], "tpe": []}
    expected: list[float] = []
    foresight: dict[float, int] = dict.fromkeys(FORESIGHT, 0)
    gaps, notes, ran, stopped = [], [], 0, 0
    early = 0  # seeds on which random search reached the target within TPE's start-up trials
    settings = [(rf, grace) for rf in REPLAY_REDUCTION_FACTORS for grace in REPLAY_GRACE_PERIODS if grace <= epochs]
    replayed: dict[tuple[float, int], int] = dict.fromkeys(settings, 0)
    by_loss = 0  # ASHA alone at the defaults, comparing trials by validation loss instead of accuracy
    # ASHA alone comparing trials by the best accuracy each ends with: perfect ranking at every rung
    oracle: dict[tuple[float, int], int] = dict.fromkeys(settings, 0)
    # TPE's start-up trials, drawn at random as random search draws them: hpsweep's count for this many trials
    startup = validate_data(_raw("tpe", "asha", trials, epochs, 0), "bench.yaml").startup_trials or 0
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        for turn, seed in enumerate(seeds):
            runs = [("random", "fifo"), ("tpe", "asha")]
            found = {
                algorithm: sweep(algorithm, scheduler, seed)
                for algorithm, scheduler in (runs if turn % 2 == 0 else reversed(runs))
            }
            best = {name: max(r.best or 0.0 for r in records) for name, records in found.items()}
            target = _quantile([r.best or 0.0 for r in found["random"]], TARGET_QUANTILE)
            spent = {name: epochs_to_target(records, target) for name, records in found.items()}
            total = {name: sum(len(r.history) for r in records) for name, records in found.items()}
            costs["tpe"].append(counted(spent["tpe"], total["tpe"]))
            costs["random"].append(spent["random"] or 1)
            expected.append(expected_epochs_to_target(found["random"], target) or 1.0)
            knowing = with_final_best(found["random"])
            for rf, grace in settings:
                replayed[(rf, grace)] += counted(replay_asha(found["random"], target, epochs, rf, grace),
                                                 total["random"])
                oracle[(rf, grace)] += counted(replay_asha(knowing, target, epochs, rf, grace,
                                                           rank_by=(FINAL_BEST, "max")), total["random"])
            by_loss += counted(replay_asha(found["random"], target, epochs, rank_by=("val_loss", "min")),
                               total["random"])
            early += (trials_to_target(found["random"], target) or trials + 1) <= startup
            for within in FORESIGHT:
                foresight[within] += foresight_epochs_to_target(found["random"], target, within) or 1
            if spent["tpe"] is not None:
                before = spent_before_target(found["tpe"], target, epochs)
                ran, stopped = ran + before[0], stopped + before[1]
            gaps.append(100 * (best["random"] - best["tpe"]))
            reached = f"{spent['tpe']}" if spent["tpe"] is not None else f"not reached in {total['tpe']}"
            notes.append(
                f"seed {seed}: target {target:.3f}, {reached} vs {spent['random']} trial-epochs "
                f"({expected[-1]:.0f} over every order), best {best['tpe']:.3f} vs {best['random']:.3f}, "
                f"budget {total['tpe']} vs {total['random']}"
            )
            logging.getLogger(__name__).info(notes[-1])
    finally:
        ray.shutdown()
    # the expected cost to reach the target, pooled over seeds: one lucky early hit by random search on
    # one seed moves a per-seed ratio a lot, a sum much less
    ratio, gap = sum(costs["tpe"]) / sum(costs["random"]), median(gaps)
    low, high = pooled_interval(list(zip(costs["tpe"], costs["random"], strict=True)))
    over_orders = sum(costs["tpe"]) / sum(expected)
    default = replayed[ASHA_DEFAULT]
    best_rf, best_grace = min(settings, key=lambda setting: replayed[setting])
    best_ratio = replayed[(best_rf, best_grace)] / sum(costs["random"])
    factors = ", ".join(f"{rf:g}" for rf in REPLAY_REDUCTION_FACTORS)
    alone = (f"ASHA alone, Ray Tune's ASHA scheduler replayed over random search's own trials in their order: "
             f"{default} ({default / sum(costs['random']):.3f}) at hpsweep's defaults (reduction factor "
             f"{ASHA_DEFAULT[0]:g}, grace period {ASHA_DEFAULT[1]}), at best {best_ratio:.3f} over reduction "
             f"factors {factors} and grace periods up to {max(grace for _, grace in settings)} (reduction "
             f"factor {best_rf:g}, grace period {best_grace}); at the defaults comparing trials by validation "
             f"loss instead of accuracy: {by_loss} ({by_loss / sum(costs['random']):.3f}); comparing them by the "
             f"best accuracy each trial ends with (ranking known in advance, so no early signal could rank "
             f"better): {oracle[ASHA_DEFAULT]} ({oracle[ASHA_DEFAULT] / sum(costs['random']):.3f}) at the "
             f"defaults, at best {min(oracle.values()) / sum(costs['random']):.3f} over the same settings")
    known = ", ".join(f"{100 * within:.0f} point{'' if round(100 * within) == 1 else 's'} {count} "
                      f"({count / sum(costs['random']):.2f})"
                      for within, count in foresight.items())
    return Outcome(
        "search efficiency",
        ratio,
        "<= 0.33 (aim 0.25), best within 0.5 points",
        ratio <= 0.33 and gap <= 0.5,
        f"trial-epochs to the target summed over {len(seeds)} seeds: {sum(costs['tpe'])} vs "
        f"{sum(costs['random'])} (90% bootstrap interval over seeds {low:.2f}-{high:.2f}; against random "
        f"search's count averaged over every order of its trials, {sum(expected):.0f}: {over_orders:.3f}); "
        f"running only random search's trials known in advance to end within so many points of the target: "
        f"{known}; {alone}; random search reached the target within its first {startup} trials, which TPE draws "
        f"alike (its start-up trials), on {early} of {len(seeds)} seeds; "
        f"MLP on digits, {trials} trials of up to {epochs} epochs per side, one at a "
        f"time; target: the "
        f"{TARGET_QUANTILE:.0%} quantile of random search's trial bests; median best-accuracy gap "
        f"{gap:+.2f} points (random minus ASHA + TPE); of ASHA + TPE's count, {ran} trial-epochs went to "
        f"trials ASHA let through every rung and {stopped} to trials it "
        f"stopped, before the trial that reached the target; " + "; ".join(notes),
    )
