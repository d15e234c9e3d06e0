"""Trials that span several workers (`resources.workers`): data-parallel training with one process group.

Ray Tune reserves a trial's workers together, as one placement group of `workers` bundles of
`cpu`/`gpu` each, so a trial starts only when all of them can. The trial's own process is rank 0: it
runs the trainable and is the only one that reports to Ray Tune (metrics and checkpoints take the path
of a single-worker trial, so schedulers, resumes and the driver's MLflow records are unchanged). The
other ranks are Ray actors in the placement group's other bundles, running the same trainable, whose
reports go nowhere. The shared loop finds the process group and trains data-parallel (train.distributed).

A worker that fails or dies breaks the group's next collective step, rank 0 raises the worker's error,
and Ray Tune retries the trial from its latest checkpoint (search.max_failures). Rank 0 ending for any
reason (done, stopped by a scheduler, failed) ends the other workers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from hpsweep.errors import Problem, SpecError
from hpsweep.spec.sweep_spec import SweepSpec

log = logging.getLogger(__name__)

#: the module whose import loads what every trial's process imports, whatever its trainable
PRELOAD_MODULE = "hpsweep.sweep.preload"
#: how long a collective step waits for a worker that neither answers nor dies (a lost node)
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def trial_resources(spec: SweepSpec) -> Any:
    """What Ray Tune reserves for each trial: one bundle per worker, packed onto as few nodes as possible."""
    from ray import tune

    res = spec.resources
    if res.workers == 1:
        return {"cpu": res.cpu, "gpu": res.gpu}
    bundle = {"CPU": res.cpu, **({"GPU": res.gpu} if res.gpu else {})}
    return tune.PlacementGroupFactory([bundle] * res.workers, strategy="PACK")


def trial_preload(spec: SweepSpec) -> tuple[list[str], int]:
    """What a trial's worker process imports (torch and its compiler front end, Ray Tune's function
    trainable, hpsweep's trial side, the trainable's module: about 3 s here) and how many such processes
    the sweep runs at once on this machine. A Ray started for the sweep starts that many workers ahead
    of time with those modules loaded, while the driver prepares the data and opens MLflow, and keeps
    no more idle."""
    from hpsweep.train.trainable import trainable_module

    cpus, res = os.cpu_count() or 1, spec.resources
    at_once = min(math.floor(cpus / res.cpu + 1e-9), spec.num_trials * res.workers, cpus)
    if spec.search.max_concurrent:
        at_once = min(at_once, spec.search.max_concurrent * res.workers)
    modules = [PRELOAD_MODULE]
    if (module := trainable_module(spec.trainable)) is not None:
        modules.append(module)
    return modules, max(1, at_once)


def check_fits(spec: SweepSpec, nodes: list[dict[str, float]]) -> None:
    """SpecError (exit 2) when the cluster's live `nodes` (their total resources) could never hold one trial's
    workers; otherwise Ray Tune would wait for them for ever."""
    res = spec.resources
    need = {"CPU": res.cpu, "GPU": res.gpu}

    def fitting(node: dict[str, float]) -> int:
        return min(math.floor(node.get(kind, 0.0) / amount + 1e-9) for kind, amount in need.items() if amount)

    room = sum(fitting(node) for node in nodes)
    if room >= res.workers:
        return
    per_worker = f"{res.cpu:g} CPU" + (f" and {res.gpu:g} GPU" if res.gpu else "")
    largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
    has = f"{largest.get('CPU', 0):g} CPU" + (f" and {largest.get('GPU', 0):g} GPU" if res.gpu else "")
    what = f"{res.workers} workers of {per_worker} each" if res.workers > 1 else f"a trial of {per_worker}"
    raise SpecError(spec.source, [Problem("resources", f"{what} can never run here: this cluster holds "
                                          f"{room} such worker(s) (its largest node has {has})")])


def cluster_nodes() -> list[dict[str, float]]:
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


@contextlib.contextmanager
def data_parallel(spec: SweepSpec, run_rank: Callable[..., Any], args: tuple[Any, ...],
                  resume: dict[str, Any] | None) -> Iterator[None]:
    """Start the trial's other workers, each calling `run_rank(rank, world, address, *args, resume)`, and
    join their process group as rank 0 for the block; the workers end with it."""
    import ray
    import torch.distributed as dist
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    world, res = spec.resources.workers, spec.resources
    address = f"tcp://{ray.util.get_node_ip_address()}:{_free_port()}"
    group = get_current_placement_group()
    remote = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_restarts=0)(_Rank)
    actors = [remote.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        group, placement_group_bundle_index=rank)).remote() for rank in range(1, world)]
    resume_ref = ray.put(resume) if resume is not None else None
    runs = [actor.run.remote(run_rank, rank, world, address, *args, resume_ref)
            for rank, actor in enumerate(actors, start=1)]
    try:
        join_group(rank=0, world=world, address=address, gpu=res.gpu > 0)
        try:
            yield
        except Exception as exc:  # a worker's failure breaks rank 0's next step: raise what the worker had
            if (error := _worker_error(runs, wait_s=5.0)) is None:
                raise
            raise error from exc
        if (error := _worker_error(runs, wait_s=COLLECTIVE_TIMEOUT.total_seconds())) is not None:
            raise error
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if dist.is_initialized():
            dist.destroy_process_group()


def join_group(rank: int, world: int, address: str, gpu: bool) -> None:
    """Join the trial's process group (NCCL between GPUs, gloo between CPUs)."""
    import torch.distributed as dist

    if dist.is_initialized():  # left by an earlier trial of a reused actor that did not end cleanly
        dist.destroy_process_group()
    dist.init_process_group("nccl" if gpu else "gloo", init_method=address, rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT)


def _worker_error(runs: list[Any], wait_s: float) -> BaseException | None:
    """The first error among the workers' runs that end within `wait_s`: what a worker raised, or that it died."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    done, _ = ray.wait(runs, num_returns=len(runs), timeout=wait_s)
    for rank, run in enumerate(runs, start=1):
        if run not in done:
            continue
        try:
            failure = ray.get(run)
        except RayTaskError as exc:
            return exc.as_instanceof_cause()
        except RayActorError as exc:
            return RuntimeError(f"worker {rank} of the trial died: {str(exc).splitlines()[0]}")
        if failure is not None:
            return failure
    return None


class _Rank:
    """One of a trial's workers other than rank 0 (a Ray actor in the trial's placement group)."""

    def run(self, run_rank: Callable[..., Any], rank: int, world: int, address: str,
            *args: Any) -> BaseException | None:
        """Train as `rank`; on an error, leave the group (which fails the others' next step) and return it."""
        import torch.distributed as dist

        try:
            run_rank(rank, world, address, *args)
            return None
        except Exception as exc:
            log.error("worker %d of the trial failed: %s: %s", rank, type(exc).__name__, exc)
            return exc
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])
