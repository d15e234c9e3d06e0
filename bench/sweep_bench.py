"""`hpsweep run` against the bare loop: how much of the machine's time reaches training."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import Outcome, interleaved, listed, median, round_ratios, scratch_folder, timed, tree_memory
from bench.loop_bench import CONFIG
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.sweep.quiet import quiet
from hpsweep.train.data import prepare
from hpsweep.train.trial import run_trial


def _spec(folder: Path, trials: int, epochs: int) -> tuple[SweepSpec, dict[str, Any]]:
    raw = {"name": "bench-sweep", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
           "model": {"name": "cnn"}, "train": {"epochs": epochs, "metric": "val_accuracy", "precision": "fp32"},
           "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": os.cpu_count() or 1},
           # label smoothing is searched (the validator wants a search) but costs the same in every trial
           "space": {"lr": CONFIG["lr"], "batch_size": CONFIG["batch_size"],
                     "label_smoothing": {"uniform": [0.0, 0.01]}},
           "resources": {"cpu": 1}}
    return validate_data(raw, str(folder / "bench.yaml"), base_dir=folder), raw


#: seconds a bare trial of the harness benchmark aims at (its epochs are set from a timed epoch)
TRIAL_S = 4.0


def _bare_trial_s(spec: SweepSpec, data: Any) -> float:
    """One trial of the shared loop with one thread, as a one-CPU trial of the sweep gets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return timed(lambda: run_trial(spec, data, {**CONFIG, "label_smoothing": 0.005}))
    finally:
        torch.set_num_threads(threads)


#: what a process of `_by_hand`'s pool holds: the sweep's spec and its prepared data
_HELD: dict[str, Any] = {}


def _hold(folder: str, trials: int, epochs: int) -> None:
    """A pool process's set-up, not timed: the spec and data, as a sweep's trial worker holds them."""
    spec = _spec(Path(folder), trials, epochs)[0]
    _HELD.update(spec=spec, data=prepare(spec))


def _held_trial(_: int) -> float:
    return _bare_trial_s(_HELD["spec"], _HELD["data"])


def _by_hand(pool: Any, trials: int) -> float:
    """Wall time of the trials run by hand as the sweep runs them, one process per CPU taking the next
    trial when it is free, so that they compete for the machine as the sweep's trials do."""
    return timed(lambda: pool.map(_held_trial, range(trials), chunksize=1))


def _bare_epoch_s(one_epoch: SweepSpec, data: Any) -> float:
    _bare_trial_s(one_epoch, data)  # warm-up
    return median([_bare_trial_s(one_epoch, data) for _ in range(3)])


def _timed_sweep(spec: SweepSpec, raw: dict[str, Any], folder: Path, number: int) -> float:
    """Wall time of `hpsweep run`'s sweep (planning excluded), in its own results folder."""
    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    plan = plan_sweep(spec, raw, storage=str(folder / f"results-{number}"), uri=f"sqlite:///{folder / 'mlflow.db'}")
    started = time.perf_counter()
    outcome = run_sweep(spec, plan, "bench")
    assert len(outcome.trials) == spec.num_trials and not outcome.failed
    return time.perf_counter() - started


def harness_overhead(quick: bool) -> list[Outcome]:
    """N identical trials: `hpsweep run`'s wall time against the same trials run by hand, bare loops in
    one process per CPU (each trial gets one CPU, as in the sweep), so that both sides pay what trials
    running side by side cost each other; the same trials timed alone, one after the other, are
    reported too. Ray's start is timed apart: a sweep pays it once."""
    import ray

    trials, repeats = (2, 1) if quick else (8, 3)
    concurrency = min(trials, os.cpu_count() or 1)
    folder = scratch_folder()
    data = prepare(_spec(folder, trials, 1)[0])
    # trials of about TRIAL_S on this machine, whatever its speed: the goal is stated for 2-10 s trials
    epochs = 1 if quick else max(2, round(TRIAL_S / _bare_epoch_s(_spec(folder, trials, 1)[0], data)))
    spec, raw = _spec(folder, trials, epochs)
    ray_start = timed(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                                       logging_level=logging.ERROR))
    pool = multiprocessing.get_context("spawn").Pool(concurrency, _hold, (str(folder), trials, epochs))
    try:
        def bare() -> float:
            return sum(_bare_trial_s(spec, data) for _ in range(trials))

        counter = iter(range(1000))
        tiny, tiny_raw = _spec(folder, concurrency, 1)

        def sweep(spec: SweepSpec = spec, raw: dict[str, Any] = raw) -> float:
            return _timed_sweep(spec, raw, folder, next(counter))

        # the fixed start-up: a sweep of one one-epoch trial per CPU (worker start, data, MLflow, the model)
        values = interleaved({"bare": bare, "by hand": lambda: _by_hand(pool, trials), "sweep": sweep,
                              "startup": lambda: sweep(tiny, tiny_raw)}, repeats,
                             warm_up=not quick)  # quick mode only checks that it runs
    finally:
        pool.terminate()
        ray.shutdown()
    ideal = median(values["by hand"])
    wall, startup = median(values["sweep"]), median(values["startup"])
    per_trial_s = median(values["bare"]) / trials
    # each round's own figures, so that a machine that changes speed between rounds moves both sides alike
    rounds = list(zip(values["sweep"], values["startup"], values["by hand"], values["bare"], strict=True))
    ratios = [(sweep - start) / by_hand for sweep, start, by_hand, _ in rounds]
    ratio = median(ratios)
    costs = [(sweep - start - by_hand) / trials for sweep, start, by_hand, _ in rounds]
    cost = median(costs)
    alone = median([(sweep - start) / (bare / concurrency) for sweep, start, _, bare in rounds])
    contention = median([by_hand / (bare / concurrency) for _, _, by_hand, bare in rounds])
    goal = "<= 1.20 (2-10 s trials)" if per_trial_s < 30 else "<= 1.10 (trials >= 30 s)"
    limit = 1.20 if per_trial_s < 30 else 1.10
    detail = (f"{trials} CNN trials of {epochs} epochs, {per_trial_s:.1f} s bare, {concurrency} at a time: "
              f"sweep {wall:.1f} s (ratio {wall / ideal:.2f} with its start-up) vs the same trials by hand, "
              f"{concurrency} processes taking turns, {ideal:.1f} s; fixed start-up {startup:.1f} s "
              f"(a {concurrency}-trial, 1-epoch sweep) and Ray's start {ray_start:.1f} s reported apart "
              f"(medians); ratio: the median of each round's ({listed(ratios)}); against each trial's time "
              f"alone on the machine divided by {concurrency}: {alone:.3f} ({concurrency} trials at once "
              f"by hand took {contention:.3f} times that)")
    return [Outcome("harness overhead", ratio, goal, ratio <= limit, detail),
            Outcome("per-trial cost", cost, "<= 0.25 s per trial", cost <= 0.25,
                    f"(sweep wall - start-up - the same trials by hand) / trials, in seconds, from the same "
                    f"run: the median of each round's ({listed(costs)})")]


def _peak_rss(fn: Any) -> float:
    """Peak resident memory of the process tree while `fn` runs, sampled every 0.1 s, in MiB."""
    import threading

    peak, done = [tree_memory()], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], tree_memory())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], tree_memory()) / 2**20


def memory(quick: bool) -> Outcome:
    """Peak memory of the whole process tree: `hpsweep run` against a bare Ray Tune sweep of the same
    trials (the same loop reporting each epoch to Tune; no MLflow, no checkpoints, no searcher)."""
    import ray
    from ray import tune

    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    trials, epochs, repeats = (2, 1, 1) if quick else (6, 6, 3)
    folder = scratch_folder()
    spec, raw = _spec(folder, trials, epochs)
    data = prepare(spec)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    counter = iter(range(1000))
    try:
        def bare_trial(config: dict[str, Any], data: Any) -> None:
            run_trial(spec, data, {**CONFIG, "label_smoothing": config["label_smoothing"]},
                      on_epoch=lambda report: tune.report(dict(report.metrics)))

        def bare() -> None:
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(bare_trial, data=data), {"cpu": 1}),
                param_space={"label_smoothing": tune.uniform(0.0, 0.01)},
                tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=os.cpu_count(),
                                            reuse_actors=True),
                run_config=tune.RunConfig(storage_path=str(folder / f"bare-{next(counter)}"), verbose=0))
            with quiet():
                tuner.fit()

        def ours() -> None:
            plan = plan_sweep(spec, raw, storage=str(folder / f"results-{next(counter)}"),
                              uri=f"sqlite:///{folder / 'mlflow.db'}")
            run_sweep(spec, plan, "bench")

        values = interleaved({"hpsweep": lambda: _peak_rss(ours), "bare": lambda: _peak_rss(bare)}, repeats,
                             warm_up=not quick)  # quick mode only checks that it runs
    finally:
        ray.shutdown()
    mine, base = median(values["hpsweep"]), median(values["bare"])
    ratio = median(round_ratios(values, "hpsweep", "bare"))
    return Outcome("memory", ratio, "<= 1.15", ratio <= 1.15,
                   f"peak resident memory of the process tree (driver, Ray, workers), {trials} CNN trials: "
                   f"hpsweep {mine:,.0f} MiB vs bare Ray Tune {base:,.0f} MiB")


def concurrent_tracking(quick: bool) -> Outcome:
    """Eight trials at once against one SQLite file: every epoch of every trial must reach MLflow, with
    no 'database is locked' anywhere (the driver is the only writer)."""
    import ray
    from mlflow import MlflowClient

    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    trials, epochs = 8, (2 if quick else 5)
    folder = scratch_folder()
    raw = {"name": "bench-concurrent", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
           "model": {"name": "mlp"}, "train": {"epochs": epochs, "metric": "val_accuracy"},
           "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": trials},
           "space": {"lr": {"loguniform": [1.0e-3, 1.0e-2]}}, "resources": {"cpu": 0.25}}
    spec = validate_data(raw, str(folder / "bench.yaml"), base_dir=folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "database is locked" in record.getMessage():
                seen.append(record.getMessage())

    handler = Catch()
    logging.getLogger().addHandler(handler)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        outcome = run_sweep(spec, plan_sweep(spec, raw, storage=str(folder / "results"), uri=uri), "bench")
    finally:
        ray.shutdown()
        logging.getLogger().removeHandler(handler)
    client = MlflowClient(uri)
    logged = sum(len(client.get_metric_history(r.run_id, "val_accuracy")) for r in outcome.trials.values())
    expected = sum(len(r.history) for r in outcome.trials.values())
    missing = expected - logged
    return Outcome("tracking at 8 concurrent trials", float(len(seen) + abs(missing)), "0 errors", not seen and
                   not missing, f"{trials} trials at once on one SQLite file: {logged} of {expected} epoch results "
                   f"in MLflow, {len(seen)} 'database is locked'")


def fractional_gpu(quick: bool) -> list[Outcome]:
    """On a GPU: the same small trials as a sweep with `resources.gpu: 0.25` (four share the GPU) against
    `resources.gpu: 1` (one at a time). Small models leave most of a GPU idle, so sharing it should finish
    the sweep sooner. Nothing to measure without a GPU."""
    if not torch.cuda.is_available():
        return []
    import ray

    trials, epochs, repeats = (4, 1, 1) if quick else (8, 12, 3)
    folder = scratch_folder()
    specs = {}
    for side, gpu in (("shared", 0.25), ("whole", 1)):
        _, raw = _spec(folder, trials, epochs)
        raw = {**raw, "train": {**raw["train"], "precision": "auto"}, "resources": {"cpu": 1, "gpu": gpu},
               "search": {**raw["search"], "max_concurrent": trials}}
        specs[side] = (validate_data(raw, str(folder / f"{side}.yaml"), base_dir=folder), raw)
    counter = iter(range(1000))

    def sweep(side: str) -> float:
        return _timed_sweep(*specs[side], folder, next(counter))

    ray.init(num_cpus=os.cpu_count(), num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        values = interleaved({"shared": lambda: sweep("shared"), "whole": lambda: sweep("whole")}, repeats,
                             warm_up=not quick)  # quick mode only checks that it runs
    finally:
        ray.shutdown()
    shared, whole = median(values["shared"]), median(values["whole"])
    ratio = median(round_ratios(values, "shared", "whole"))
    return [Outcome("fractional GPUs", ratio, "< 1 (faster than a GPU per trial)", ratio < 1,
                    f"{trials} CNN trials of {epochs} epochs on one {torch.cuda.get_device_name()}: "
                    f"resources.gpu 0.25 (4 at once) {shared:.1f} s vs resources.gpu 1 (1 at once) {whole:.1f} s")]
