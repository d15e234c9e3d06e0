"""A lower bound, measured, on the demo sweep's peak memory for any sweep run by Ray Tune on this machine,
against the plain Optuna script (bench/peer_optuna.py) that issue 27's memory goal compares with.

Ray Tune runs each trial in a Ray worker process of its own, apart from the driver, and a local Ray has
processes of its own. So any tool built on it holds at least what the script holds (torch, MLflow,
Optuna, the data and the models, which the script keeps in one process), plus:
- Ray: its processes (GCS, raylet, agents) as a sweep's `ray.init` starts them, the way hpsweep does,
  and the driver's import of Ray Tune, measured as what they add to the memory of a process that holds
  the script's imports;
- for each trial at once beyond the first, a worker process holding torch and Ray Tune that has taken
  one optimizer step (every trial does): the tree's growth when one such Ray actor runs. The first
  trial's process is not counted, as if the script's own process were it.
Floor = script + Ray + (trials at once - 1) x worker, each round. Loose (no data, model or Ray worker
of the first trial counted), so a sweep tool on Ray Tune cannot go below it."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Outcome, interleaved, listed, measured, median, scratch_folder, tree_memory
from bench.peer_bench import AT_ONCE, REPO, demo_command, script_command

SETTLE_S = 5.0  #: how long Ray's agents are given to finish starting before they are measured


def _idle_workers() -> int:
    """How many of this process's Ray workers are idle (started by Ray ahead of any task)."""
    import psutil

    idle = 0
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # one may end while it is read
            idle += any(part.startswith("ray::IDLE") for part in process.cmdline())
    return idle


def _child(settle_s: float) -> None:
    """In a process of its own: prints what Ray and one more trial process add, in MB, as JSON."""
    import bench.peer_optuna  # noqa: F401 -- the script's imports: what the script's process holds

    base = tree_memory("pss")
    import ray
    import ray.tune  # a sweep's driver runs Ray Tune

    from hpsweep.sweep.ray_session import RaySession

    session = RaySession(verbose=False, preload=([], 0))  # started as a sweep starts it, no idle workers kept
    try:
        session.wait()
        time.sleep(settle_s)
        deadline = time.monotonic() + 30.0  # the workers Ray starts as the driver connects, ended once idle
        while _idle_workers():
            if time.monotonic() > deadline:
                raise RuntimeError("Ray kept idle workers: they would be counted as Ray's own memory")
            time.sleep(0.5)
        with_ray = tree_memory("pss")

        @ray.remote(num_cpus=1)
        class TrialProcess:
            def step(self) -> None:
                import ray.tune  # noqa: F401 -- a trial's process runs Ray Tune's trainable
                import torch

                model = torch.nn.Linear(8, 2)
                optimizer = torch.optim.Adam(model.parameters())
                model(torch.randn(4, 8)).sum().backward()
                optimizer.step()  # its first step imports torch's compiler front end, as a trial's does

        worker = TrialProcess.remote()  # type: ignore[attr-defined]
        ray.get(worker.step.remote())
        time.sleep(1.0)
        with_worker = tree_memory("pss")
    finally:
        session.close()
    print(json.dumps({"ray": (with_ray - base) / 1e6, "worker": (with_worker - with_ray) / 1e6}))


def memory_floor(quick: bool) -> Outcome:
    """The floor ÷ the script's peak, each round; hpsweep's peak against the floor beside it (not run in
    quick mode, where the peer benchmark already runs it)."""
    trials, repeats = (AT_ONCE, 1) if quick else (12, 3)
    folder = scratch_folder()
    runs = itertools.count(1)
    parts: dict[str, list[float]] = {"ray": [], "worker": []}

    def peak(name: str, command: Callable[[Path], list[str]]) -> float:
        where = folder / f"{name}-{next(runs)}"
        where.mkdir()
        return measured(command(where), REPO if name == "script" else where)[1]  # sampled every 0.5 s

    def costs() -> float:
        done = subprocess.run([sys.executable, "-c", f"from bench.floor_bench import _child; _child({SETTLE_S})"],
                              cwd=REPO, capture_output=True, text=True, check=True)
        found = json.loads(done.stdout.strip().splitlines()[-1])
        for key in parts:
            parts[key].append(found[key])
        return found["ray"] + (AT_ONCE - 1) * found["worker"]

    sides = {"script": lambda: peak("script", lambda where: script_command(where, trials)), "costs": costs}
    if not quick:
        sides["hpsweep"] = lambda: peak("hpsweep", lambda where: demo_command(where, trials))
    values = interleaved(sides, repeats, warm_up=False)
    floors = [s + c for s, c in zip(values["script"], values["costs"], strict=True)]
    ratios = [f / s for f, s in zip(floors, values["script"], strict=True)]
    ratio = median(ratios)
    beside = ("" if quick else f"; hpsweep's peak {median(values['hpsweep']):,.0f} MB, "
              f"{median([h / f for h, f in zip(values['hpsweep'], floors, strict=True)]):.2f}x the floor")
    return Outcome("lower bound on a Ray Tune sweep's peak memory / plain Optuna script", ratio, "<= 1.3",
                   ratio <= 1.3,
                   f"{trials} trials, {AT_ONCE} at a time: the script {median(values['script']):,.0f} MB + Ray "
                   f"{median(parts['ray']):,.0f} MB (its processes, the driver's Ray Tune) + {AT_ONCE - 1} x a "
                   f"trial's process {median(parts['worker']):,.0f} MB (torch, Ray Tune, an optimizer step) = "
                   f"{median(floors):,.0f} MB (medians of PSS); each round's ratio {listed(ratios)}{beside}")
