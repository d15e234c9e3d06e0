"""The demo sweep (sweeps/digits_cnn.yaml: 12 trials, 2 at a time, TPE, ASHA) against the plain Optuna +
MLflow script a user would write instead on one machine (bench/peer_optuna.py), taking turns, each a
process of its own measured from its start to its exit: wall time, peak memory of its process tree, and
for hpsweep its start-up (command start to the first trial training) and tail (last epoch to exit)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import yaml

from bench.common import Outcome, interleaved, listed, measured, median, round_ratios, scratch_folder

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "sweeps" / "digits_cnn.yaml"


def _trial_span(uri: str) -> tuple[float, float]:
    """(when the first trial began training, when the last epoch was reported), from the MLflow record:
    each epoch's metrics carry the time the trial reported them, in milliseconds."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(yaml.safe_load(DEMO.read_text())["name"])
    starts, ends = [], []
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        epochs = client.get_metric_history(run.info.run_id, "epoch_time_s")
        starts += [m.timestamp / 1000 - m.value for m in epochs if m.step == 1]
        ends += [m.timestamp / 1000 for m in epochs]
    return min(starts), max(ends)


def peer_optuna(quick: bool) -> list[Outcome]:
    folder = scratch_folder()
    hpsweep = str(Path(sys.executable).parent / "hpsweep")
    trials = 4 if quick else 12
    phases: dict[str, list[float]] = {"start-up": [], "tail": []}
    memory: dict[str, list[float]] = {"hpsweep": [], "peer": []}

    runs = itertools.count(1)

    def sweep() -> float:
        where = folder / f"hpsweep-{next(runs)}"
        where.mkdir()
        argv = [hpsweep, "run", str(DEMO), "--storage", str(where / "results"),
                "--tracking-uri", f"sqlite:///{where / 'mlflow.db'}"] + (["--set", f"search.num_trials={trials}"]
                                                                           if quick else [])
        wall, peak, started, ended = measured(argv, where)
        first, last = _trial_span(f"sqlite:///{where / 'mlflow.db'}")
        phases["start-up"].append(first - started)
        phases["tail"].append(ended - last)
        memory["hpsweep"].append(peak)
        return wall

    def peer() -> float:
        where = folder / f"peer-{next(runs)}"
        where.mkdir()
        wall, peak, _, _ = measured([sys.executable, str(REPO / "bench" / "peer_optuna.py"),
                                      f"sqlite:///{where / 'mlflow.db'}", str(trials)], where)
        memory["peer"].append(peak)
        return wall

    # no warm-up round: each side is a new process every time, and the first round warms the file cache
    values = interleaved({"hpsweep": sweep, "peer": peer}, 1 if quick else 4, warm_up=False)
    wall = median(round_ratios(values, "hpsweep", "peer"))
    peaks = median([h / p for h, p in zip(memory["hpsweep"], memory["peer"], strict=True)])
    start, tail = median(phases["start-up"]), median(phases["tail"])
    return [
        Outcome("demo sweep wall time / plain Optuna script", wall, "<= 1.0", wall <= 1.0,
                f"{trials} trials of the demo CNN, 2 at a time, TPE, ASHA vs successive halving: hpsweep run "
                f"{median(values['hpsweep']):.1f} s, the Optuna + MLflow script {median(values['peer']):.1f} s "
                f"(medians); each round's ratio {listed(round_ratios(values, 'hpsweep', 'peer'))}"),
        Outcome("demo sweep peak memory / plain Optuna script", peaks, "<= 1.3", peaks <= 1.3,
                f"peak PSS of each process tree: hpsweep {median(memory['hpsweep']):,.0f} MB, the script "
                f"{median(memory['peer']):,.0f} MB (medians)"),
        Outcome("demo sweep start-up (s)", start, "<= 8 s", start <= 8,
                f"command start to the first trial training; each run {listed(phases['start-up'])}"),
        Outcome("demo sweep tail (s)", tail, "<= 3 s", tail <= 3,
                f"last epoch reported to exit, report and best model written; each run {listed(phases['tail'])}"),
    ]
