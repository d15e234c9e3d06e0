"""What every benchmark shares: interleaved timing, the machine's description, the results table."""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Outcome:
    name: str
    ratio: float
    goal: str
    met: bool
    detail: str  #: the two sides' medians and units, and anything reported apart


def interleaved(sides: dict[str, Callable[[], float]], repeats: int, warm_up: bool = True) -> dict[str, list[float]]:
    """Run each side once per round, in turn, for `repeats` rounds; every value each returned. A first,
    unrecorded round pays what only the first call pays (lazy imports, allocator, thread pools)."""
    if warm_up:
        for side in sides.values():
            side()
    values: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(repeats):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))  # neither side always goes first
        for name in order:
            values[name].append(sides[name]())
    return values


def median(values: list[float]) -> float:
    return statistics.median(values)


def round_ratios(values: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    """Each round's ratio of two sides of `interleaved`. The two sides of one round ran back to back, so a
    machine that slows down or speeds up between rounds moves both alike and leaves the ratio be; the
    ratio of the two sides' medians, taken apart, mixes rounds that ran at different speeds."""
    return [top / bottom for top, bottom in zip(values[numerator], values[denominator], strict=True)]


def listed(ratios: list[float]) -> str:
    return ", ".join(f"{ratio:.3f}" for ratio in ratios)


def scratch_folder() -> Path:
    """A new temporary folder for a benchmark's sweeps, removed when the benchmark process exits: an
    outcome may still read the sweep's MLflow store after the sweep, and Ray's processes write into it
    until `ray.shutdown`. Without this every `make bench` left a few hundred MB behind."""
    folder = Path(tempfile.mkdtemp(prefix="hpsweep-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def tree_memory(kind: str = "rss", root: int | None = None) -> int:
    """Bytes of memory of a process (this one by default) and every process under it (Ray's processes
    included): `rss` resident, or `pss` proportional (a page shared by n processes counts 1/n in each,
    so the tree holds each page of a mapped file or of Ray's object store once)."""
    import psutil

    top = psutil.Process(root)
    total = 0
    for process in [top, *top.children(recursive=True)]:
        try:
            total += getattr(process.memory_full_info() if kind == "pss" else process.memory_info(), kind)
        except psutil.Error:
            continue
    return total


def stop_ray_start(*processes: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Stop `ray start --block` commands, each begun in a session of its own. SIGTERM goes to the command
    alone, which then stops its node's processes itself (about 2 s on a 2-core machine); sent to its whole
    session, it took 33 s to exit. Whatever of a session is still there after `timeout_s` is killed."""
    import signal

    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measured(argv: list[str], cwd: Path | None = None, every_s: float | None = 0.5,
             env: dict[str, str] | None = None) -> tuple[float, float, float, float]:
    """Run a command to its end: (wall s, peak PSS of its process tree in MB sampled every `every_s` (0
    with None: not sampled), start time, end time). Reading every process's memory map costs CPU and
    stalls a process that maps memory meanwhile: sampling slows the side it measures. RuntimeError with
    the end of its stderr when it fails."""
    started = time.time()
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a full pipe would stall the command
        child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors, text=True,
                                 env=None if env is None else {**os.environ, **env})
        peak = 0
        while every_s is not None and child.poll() is None:
            peak = max(peak, tree_memory("pss", child.pid))
            time.sleep(every_s)
        child.wait()
        ended = time.time()
        if child.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed: {errors.read()[-2000:]}")
    return ended - started, peak / 1e6, started, ended


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}; {os.cpu_count()} CPUs; torch {torch.__version__} with {torch.get_num_threads()} threads "
            f"(interop {torch.get_num_interop_threads()}); {gpu}")


def write_results(outcomes: list[Outcome], path: Path, command: str, quick: bool) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}`{' (quick mode: tiny sizes, one repeat; not a measurement)' if quick else ''} "
        f"on {time.strftime('%Y-%m-%d')}.",
        "",
        f"Machine: {machine()}.",
        "",
        "| benchmark | ratio | goal | met | measured |",
        "|---|---|---|---|---|",
        *[f"| {o.name} | {o.ratio:.3f} | {o.goal} | {'yes' if o.met else 'no'} | {o.detail} |" for o in outcomes],
        "",
    ]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return text
