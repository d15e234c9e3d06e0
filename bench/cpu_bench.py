"""The shared loop on a CPU: the demo's CNN in channels_last against NCHW, and under the C allocator's
thresholds that fit() sets against glibc's own (and against the 1 MB threshold it set before); and the
demo sweep's memory with the C allocator's arenas capped in the Ray it starts, against glibc's default."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.common import Outcome, interleaved, listed, measured, median, round_ratios
from bench.loop_bench import _train, sweep_spec
from bench.peer_bench import AT_ONCE, demo_command
from hpsweep.sweep.ray_session import MALLOC_ARENAS
from hpsweep.train.data import prepare

REPO = Path(__file__).resolve().parent.parent
#: the demo's largest batch: its activations are 4 MB, where a low allocator threshold costs the most
BATCH = 128


def _epoch_s(spec: Any, data: Any, nhwc: bool) -> float:
    """The median epoch time of one fit of the demo's CNN on the CPU, NHWC or NCHW."""
    return statistics.median(_train(spec, data, {"batch_size": BATCH}, device=torch.device("cpu"), nhwc_on_cpu=nhwc))


def channels_last(quick: bool) -> Outcome:
    epochs, repeats = (1, 1) if quick else (4, 5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial of the demo runs (resources.cpu: 1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            spec = sweep_spec(Path(folder), epochs, image_size=16)
            data = prepare(spec)
            values = interleaved({"nhwc": lambda: _epoch_s(spec, data, True),
                                  "nchw": lambda: _epoch_s(spec, data, False)}, repeats)
    finally:
        torch.set_num_threads(threads)
    ratios = round_ratios(values, "nhwc", "nchw")
    ratio = median(ratios)
    return Outcome("CNN epoch on CPU, channels_last / NCHW", ratio, "<= 0.9", ratio <= 0.9,
                   f"the demo's CNN at 16x16, batch {BATCH}, one thread: {median(values['nhwc']):.3f} s vs "
                   f"{median(values['nchw']):.3f} s per epoch (medians); each round's ratio {listed(ratios)}")


def _child(thresholds: str, epochs: int) -> None:
    """In a process of its own (the allocator's thresholds hold for the whole process): print the median
    epoch time under `thresholds`: hpsweep's (what fit() sets), glibc's defaults, or 1 MB fixed."""
    import ctypes

    from hpsweep.train import device

    if thresholds != "hpsweep":
        device._HOST_MEMORY["set"] = True  # fit() then leaves the allocator as it is
    if thresholds == "1mb":
        ctypes.CDLL("libc.so.6").mallopt(device._M_MMAP_THRESHOLD, 1 << 20)  # as fit() set it before
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        spec = sweep_spec(Path(folder), epochs, image_size=16)
        print(json.dumps(_epoch_s(spec, prepare(spec), nhwc=True)))


def allocator(quick: bool) -> Outcome:
    epochs, repeats = (1, 1) if quick else (4, 5)

    def side(thresholds: str) -> float:
        done = subprocess.run([sys.executable, "-c", f"from bench.cpu_bench import _child; _child({thresholds!r}, "
                               f"{epochs})"], cwd=REPO, capture_output=True, text=True, check=True)
        return float(done.stdout.strip().splitlines()[-1])

    values = interleaved({name: lambda name=name: side(name) for name in ("hpsweep", "glibc", "1mb")}, repeats,
                         warm_up=not quick)
    ratios = round_ratios(values, "hpsweep", "glibc")
    ratio = median(ratios)
    before = median(round_ratios(values, "1mb", "glibc"))
    return Outcome("CNN epoch on CPU, hpsweep's allocator thresholds / glibc's", ratio, "<= 1.05", ratio <= 1.05,
                   f"the demo's CNN, batch {BATCH}, one thread, a process per fit: "
                   f"{median(values['hpsweep']):.3f} s vs {median(values['glibc']):.3f} s per epoch (medians); "
                   f"each round's ratio {listed(ratios)}; the 1 MB threshold set before: {before:.2f}")


def arenas(quick: bool) -> Outcome:
    """The demo sweep's peak memory (PSS of its process tree) with the Ray it starts capped at
    ray_session.MALLOC_ARENAS glibc arenas per process, against glibc's default of 8 per core (given as
    MALLOC_ARENA_MAX, which the cap leaves alone)."""
    trials, repeats = (AT_ONCE, 1) if quick else (12, 3)
    walls: dict[str, list[float]] = {"capped": [], "glibc": []}

    def side(name: str) -> float:
        glibc = {"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))}
        with tempfile.TemporaryDirectory() as folder:
            wall, peak, _, _ = measured(demo_command(Path(folder), trials), Path(folder),
                                        env=glibc if name == "glibc" else None)
        walls[name].append(wall)
        return peak

    values = interleaved({name: lambda name=name: side(name) for name in walls}, repeats, warm_up=False)
    ratios = round_ratios(values, "capped", "glibc")
    ratio = median(ratios)
    time_ratio = median([c / g for c, g in zip(walls["capped"], walls["glibc"], strict=True)])
    return Outcome(f"demo sweep peak memory, {MALLOC_ARENAS} malloc arenas / glibc's default", ratio, "<= 0.98",
                   ratio <= 0.98,
                   f"{trials} trials, {AT_ONCE} at a time: peak PSS {median(values['capped']):,.0f} MB vs "
                   f"{median(values['glibc']):,.0f} MB (medians); each round's ratio {listed(ratios)}; "
                   f"wall time ratio {time_ratio:.3f}")
