"""The demo sweep (sweeps/digits_cnn.yaml: 12 trials, 2 at a time, TPE, ASHA) against what a user would
write instead on one machine, taking turns, each a process of its own measured from its start to its
exit: the plain Optuna + MLflow script (bench/peer_optuna.py) and the same sweep by hand on Ray Tune
(bench/peer_tune.py). hpsweep runs twice per round: starting its own Ray, and joining a Ray that
`ray start` left running (started once, before the rounds). Measured: wall time, peak memory of the
process tree (hpsweep with its own Ray, whose processes are all in its tree), and for hpsweep its
start-up (command start to the first trial training) and tail (last epoch to exit)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from bench.common import (
    Outcome,
    interleaved,
    listed,
    measured,
    median,
    round_ratios,
    scratch_folder,
    stop_ray_start,
)
from hpsweep.sweep.workers import PRELOAD_MODULE  # what docs/running.md has `ray start` load

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "sweeps" / "digits_cnn.yaml"
BIN = Path(sys.executable).parent
DEMO_SWEEP = yaml.safe_load(DEMO.read_text())
AT_ONCE = DEMO_SWEEP["search"]["max_concurrent"]


def _trial_spans(uri: str) -> list[tuple[float, float, float]]:
    """Each trial's (start of its first epoch, when it reported its last, seconds spent in its epochs), from
    the MLflow record: each epoch's metrics carry the time the trial reported them, in milliseconds, and
    how long the epoch took."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEMO_SWEEP["name"])
    spans = []
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        epochs = sorted(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step)
        spans.append((epochs[0].timestamp / 1000 - epochs[0].value, epochs[-1].timestamp / 1000,
                      sum(m.value for m in epochs)))
    return sorted(spans)


def per_trial_overhead(spans: list[tuple[float, float, float]], at_once: int) -> tuple[float, float]:
    """(Seconds a trial slot spends between one trial's last epoch and the next trial's first, and inside
    trials outside their epochs), per trial. A trial takes the slot freed last before it began; the first
    `at_once` trials open the slots (their wait is start-up), and a slot's idle end is the sweep's tail."""
    slots: list[float] = []
    between = inside = 0.0
    for start, end, work in spans:
        if len(slots) < at_once:
            slots.append(end)
        else:
            freed = [i for i, free_at in enumerate(slots) if free_at <= start]
            slot = max(freed, key=lambda i: slots[i]) if freed else min(range(len(slots)), key=lambda i: slots[i])
            between += max(0.0, start - slots[slot])
            slots[slot] = end
        inside += max(0.0, end - start - work)
    return between / len(spans), inside / len(spans)


def demo_command(where: Path, trials: int) -> list[str]:
    """`hpsweep run` of the demo sweep with `trials` trials, its results and MLflow record in `where`."""
    return [str(BIN / "hpsweep"), "run", str(DEMO), "--trials", str(trials), "--storage", str(where / "results"),
            "--tracking-uri", f"sqlite:///{where / 'mlflow.db'}"]


def script_command(where: Path, trials: int) -> list[str]:
    """The plain Optuna script's run of `trials` trials, its MLflow record in `where` (run it from REPO)."""
    return [sys.executable, "-m", "bench.peer_optuna", f"sqlite:///{where / 'mlflow.db'}", str(trials)]


#: what docs/running.md has `ray start --system-config` give: the preload, and as many idle workers kept
#: as the demo runs trials at once
SYSTEM_CONFIG = {"preload_python_modules": [PRELOAD_MODULE], "num_workers_soft_limit": AT_ONCE}


@contextmanager
def started_ray(settle_s: float = 5.0) -> Iterator[dict[str, str]]:
    """`ray start --head` as docs/running.md shows it, under a Ray temp folder of its own; the environment in
    which hpsweep joins it, `settle_s` after Ray wrote its address."""
    temp = tempfile.mkdtemp(prefix="hb", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {"RAY_TMPDIR": temp}
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--port=0",
                             f"--num-cpus={os.cpu_count()}", "--include-dashboard=false", "--disable-usage-stats",
                             f"--system-config={json.dumps(SYSTEM_CONFIG)}"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while not (Path(temp) / "ray" / "ray_current_cluster").exists():
            if head.poll() is not None:
                raise RuntimeError("ray start failed")
            time.sleep(0.5)
        time.sleep(settle_s)  # its agents finish starting: a user's `ray start` ran long before the sweep
        yield env
    finally:
        stop_ray_start(head)
        shutil.rmtree(temp, ignore_errors=True)


def peer_optuna(quick: bool) -> list[Outcome]:
    """Timed rounds, then memory rounds: sampling every process's memory map slows the side it samples
    (the kernel walks its page tables and holds its memory-map lock), most while several processes
    import torch at once, which is how a sweep starts; so the timed runs are not sampled. Quick mode, which
    only checks that every side runs, samples its one timed round instead."""
    folder = scratch_folder()
    trials, rounds = (AT_ONCE, 1) if quick else (12, 4)
    phases: dict[str, list[float]] = {"start-up": [], "tail": [], "joined start-up": [], "between trials": [],
                                      "inside trials": []}
    memory: dict[str, list[float]] = {"hpsweep": [], "peer": []}
    runs = itertools.count(1)

    def sweep(joining: bool, sample: bool = False) -> float:
        where = folder / f"hpsweep-{next(runs)}"
        where.mkdir()
        argv = demo_command(where, trials)
        # the Ray a joining run finds runs only around it: a second, idle Ray on the machine cost the
        # runs that start their own about 2 s of start-up here
        with started_ray(1.0 if quick else 5.0) if joining else contextlib.nullcontext(None) as env:
            wall, peak, started, ended = measured(argv, where, env=env, every_s=0.5 if sample else None)
        if sample:
            memory["hpsweep"].append(peak)
            if not quick:  # slowed by the sampling: a memory round's times are not recorded
                return wall
        spans = _trial_spans(f"sqlite:///{where / 'mlflow.db'}")
        phases["joined start-up" if joining else "start-up"].append(spans[0][0] - started)
        if not joining:
            phases["tail"].append(ended - max(end for _, end, _ in spans))
            between, inside = per_trial_overhead(spans, at_once=AT_ONCE)
            phases["between trials"].append(between)
            phases["inside trials"].append(inside)
        return wall

    def peer(sample: bool = False) -> float:
        where = folder / f"peer-{next(runs)}"
        where.mkdir()
        wall, peak, _, _ = measured(script_command(where, trials), REPO, every_s=0.5 if sample else None)
        if sample:
            memory["peer"].append(peak)
        return wall

    def tune() -> float:
        where = folder / f"tune-{next(runs)}"
        where.mkdir()
        return measured([sys.executable, "-m", "bench.peer_tune", f"sqlite:///{where / 'mlflow.db'}",
                         str(where / "results"), str(trials)], REPO, every_s=None)[0]

    # no warm-up round: each side is a new process every time, and the first round warms the file cache
    values = interleaved({"hpsweep": lambda: sweep(False, sample=quick), "peer": lambda: peer(sample=quick),
                          "tune": tune, "joined": lambda: sweep(True)}, rounds, warm_up=False)
    if not quick:
        interleaved({"hpsweep": lambda: sweep(False, sample=True), "peer": lambda: peer(sample=True)}, 2,
                    warm_up=False)
    return _outcomes(values, memory, phases, trials)


def _outcomes(values: dict[str, list[float]], memory: dict[str, list[float]], phases: dict[str, list[float]],
              trials: int) -> list[Outcome]:
    wall, joined = median(round_ratios(values, "hpsweep", "peer")), median(round_ratios(values, "joined", "peer"))
    tune = median(round_ratios(values, "hpsweep", "tune"))
    peaks = median([h / p for h, p in zip(memory["hpsweep"], memory["peer"], strict=True)])
    start, tail, joined_start = (median(phases[k]) for k in ("start-up", "tail", "joined start-up"))
    overheads = [b + i for b, i in zip(phases["between trials"], phases["inside trials"], strict=True)]
    overhead = median(overheads)
    times = ", ".join(f"{name} {median(v):.1f} s" for name, v in values.items())
    return [
        Outcome("demo sweep wall time / plain Optuna script", wall, "<= 1.0", wall <= 1.0,
                f"{trials} trials of the demo CNN, 2 at a time, TPE, ASHA vs successive halving; medians: {times} "
                f"(joined: hpsweep joining a running `ray start`); each round's ratio "
                f"{listed(round_ratios(values, 'hpsweep', 'peer'))}"),
        Outcome("demo sweep wall time, joining a running Ray / plain Optuna script", joined, "<= 1.0", joined <= 1.0,
                f"each round's ratio {listed(round_ratios(values, 'joined', 'peer'))}"),
        Outcome("demo sweep wall time / Ray Tune by hand", tune, "<= 0.8", tune <= 0.8,
                f"Tuner + OptunaSearch + ASHA + MLflowLoggerCallback; each round's ratio "
                f"{listed(round_ratios(values, 'hpsweep', 'tune'))}"),
        Outcome("demo sweep peak memory / plain Optuna script", peaks, "<= 1.3", peaks <= 1.3,
                f"peak PSS of each process tree (hpsweep's own Ray included): hpsweep "
                f"{median(memory['hpsweep']):,.0f} MB, the script {median(memory['peer']):,.0f} MB (medians)"),
        Outcome("demo sweep start-up (s)", start, "<= 8 s", start <= 8,
                f"command start to the first trial training; each run {listed(phases['start-up'])}"),
        Outcome("demo sweep start-up joining a running Ray (s)", joined_start, "<= 8 s", joined_start <= 8,
                f"each run {listed(phases['joined start-up'])}"),
        Outcome("demo sweep tail (s)", tail, "<= 3 s", tail <= 3,
                f"last epoch reported to exit, report and best model written; each run {listed(phases['tail'])}"),
        Outcome("demo sweep per-trial overhead (s)", overhead, "<= 0.2 s", overhead <= 0.2,
                f"time a trial slot ({AT_ONCE} run at once) spends outside epochs from its first trial's first epoch "
                f"to its last trial's last, per trial (from the epochs' times in MLflow): between trials "
                f"{median(phases['between trials']):.3f} s, inside trials (between epochs: reports, checkpoints) "
                f"{median(phases['inside trials']):.3f} s (medians); each run {listed(overheads)}"),
    ]
