"""The data at scale: memory per node against the data's decoded size, decoding on every core against one,
and epochs read from the memory-mapped cache against epochs from tensors in memory."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import Outcome, interleaved, listed, measured, median, round_ratios, scratch_folder, timed
from bench.photos import photo_folder
from hpsweep.spec import validate_data
from hpsweep.train.data import prepare

IMAGE_SIZE = 128  #: photos decode to 128x128 RGB: 48 KiB each
CONCURRENCY = (1, 4, 8)


def _raw(name: str, images: Path, trials: int, epochs: int = 1) -> dict[str, Any]:
    return {"name": name, "trainable": "image_classifier",
            "data": {"source": "image_folder", "path": str(images), "image_size": IMAGE_SIZE,
                     "split": {"train": 0.8, "val": 0.2, "test": 0.0}},
            "model": {"name": "mlp", "hidden_sizes": [16]},
            "train": {"epochs": epochs, "metric": "val_accuracy", "precision": "fp32"},
            "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": trials},
            "space": {"lr": {"loguniform": [1.0e-3, 1.0e-2]}, "batch_size": 32},
            "resources": {"cpu": round((os.cpu_count() or 1) / trials, 3)}}


def _peak_sweep_pss(sweep: Path, folder: Path) -> float:
    """`hpsweep run` in a process of its own (it starts and stops its own Ray): the peak PSS of its
    process tree, in MB, sampled every 0.2 s."""
    hpsweep = Path(sys.executable).parent / "hpsweep"
    return measured([str(hpsweep), "run", str(sweep), "--storage", str(folder / "results"),
                     "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"], every_s=0.2)[1]


def data_memory(quick: bool) -> list[Outcome]:
    """Memory the data adds to a sweep ÷ its decoded size, at 1, 4 and 8 concurrent trials: the peak PSS of
    the sweep's whole process tree over the real photos minus over a small set of the same photos (same
    image size, batches and model), against the difference of their decoded sizes."""
    folder = scratch_folder()
    # the tiny set still fills every batch a trial makes, validation's included (up to 32 MB of floats,
    # 170 photos at this size): what a trial holds besides the data is then the same on both sides
    real_n, tiny_n = (400, 100) if quick else (8000, 1000)
    sets = {"real": photo_folder(folder / "real", real_n), "tiny": photo_folder(folder / "tiny", tiny_n, seed=1)}
    os.environ["HPSWEEP_CACHE"] = str(folder / "cache")  # the sweeps inherit it
    decoded = {}
    for side, images in sets.items():  # the caches are built first: what is measured is the sweep's holding
        data = prepare(validate_data(_raw(side, images, 1), str(folder / "x.yaml"), base_dir=folder))
        decoded[side] = data.nbytes() / 1e6
    added = decoded["real"] - decoded["tiny"]
    outcomes = []
    counter = iter(range(10_000))

    def peak(side: str, trials: int) -> float:
        name = f"{side}-{trials}-{next(counter)}"
        sweep = folder / f"{name}.yaml"
        # the small set's trials run as many epochs as make them last as long as the real set's one epoch,
        # so that on both sides every trial is under way, holding its model and batches, at the peak
        epochs = 1 if side == "real" else max(1, real_n // tiny_n)
        sweep.write_text(yaml.safe_dump(_raw(name, sets[side], trials, epochs)))
        return _peak_sweep_pss(sweep, folder)

    for trials in CONCURRENCY[:1] if quick else CONCURRENCY:
        # a sweep's peak moves by about 100 MB from run to run (Ray's processes, when each trial starts):
        # each side runs 3 times, taking turns, and the medians are compared
        values = interleaved({side: lambda side=side, trials=trials: peak(side, trials)
                                          for side in sets}, 1 if quick else 3,
                             warm_up=False)
        peaks = {side: median(found) for side, found in values.items()}
        ratio = (peaks["real"] - peaks["tiny"]) / added
        outcomes.append(Outcome(f"data memory, {trials} trials", ratio, "<= 1.2", ratio <= 1.2,
                                f"{real_n:,} photos at {IMAGE_SIZE}x{IMAGE_SIZE} ({decoded['real']:,.0f} MB decoded) "
                                f"vs {tiny_n:,} ({decoded['tiny']:,.0f} MB), {trials} trials at once, of one epoch "
                                f"vs {max(1, real_n // tiny_n)} epochs: "
                                f"peak PSS of the sweep's process tree {peaks['real']:,.0f} MB vs "
                                f"{peaks['tiny']:,.0f} MB (medians of {len(values['real'])} runs each: "
                                f"{_mb(values['real'])} vs {_mb(values['tiny'])}); the difference over the "
                                f"{added:,.0f} MB the data adds (cache built beforehand)"))
    return outcomes


def _mb(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def decode_throughput(quick: bool) -> Outcome:
    """Images decoded per second into an array, on every core against on one (photos, resized at decode)."""
    from hpsweep.train.data.decode import _cpus, decode_into, survey

    folder = scratch_folder()
    images = photo_folder(folder / "photos", 300 if quick else 3000)
    paths = sorted(images.rglob("*.jpg"))
    cores = _cpus()

    def fail(field: str, message: str) -> Exception:
        return ValueError(f"{field}: {message}")

    found = survey(paths, IMAGE_SIZE, "auto", fail)
    out = np.empty(found.shape, dtype=np.uint8)

    def rate(workers: int) -> float:
        return len(paths) / timed(lambda: decode_into(out, paths, found, IMAGE_SIZE, fail, workers=workers))

    values = interleaved({"all": lambda: rate(cores), "one": lambda: rate(1)}, 1 if quick else 3)
    ratio = median(round_ratios(values, "all", "one"))
    goal = 0.8 * cores
    return Outcome("decode on every core", ratio, f">= {goal:.1f} (0.8 x {cores} cores)", ratio >= goal,
                   f"{len(paths):,} JPEG photos (160-400 px) decoded and resized to {IMAGE_SIZE}x{IMAGE_SIZE}: "
                   f"{median(values['all']):,.0f} images/s on {cores} threads vs {median(values['one']):,.0f} on "
                   f"one (medians); each round's ratio {listed(round_ratios(values, 'all', 'one'))}")


def mapped_epoch(quick: bool) -> Outcome:
    """Epoch time with the images read from the memory-mapped cache ÷ from tensors in memory (warm page
    cache): the shared loop, an MLP on the photos, one thread per side, taking turns."""
    import torch

    from hpsweep.train.trial import run_trial

    folder = scratch_folder()
    images = photo_folder(folder / "photos", 400 if quick else 4000)
    os.environ["HPSWEEP_CACHE"] = str(folder / "cache")
    spec = validate_data(_raw("epoch", images, 1), str(folder / "x.yaml"), base_dir=folder)
    mapped = prepare(spec)
    in_memory = replace(mapped, train=mapped.train.in_memory(), val=mapped.val.in_memory(), cache=None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = {"lr": 0.003, "batch_size": 32}
    try:
        values = interleaved({side: lambda data=data: timed(lambda: run_trial(spec, data, config))
                              for side, data in (("mapped", mapped), ("memory", in_memory))}, 1 if quick else 5)
    finally:
        torch.set_num_threads(threads)
    ratio = median(round_ratios(values, "memory", "mapped"))
    return Outcome("mapped-cache epoch", ratio, ">= 0.95", ratio >= 0.95,
                   f"{len(mapped.train):,} training photos at {IMAGE_SIZE}x{IMAGE_SIZE}, an epoch with validation, "
                   f"MLP, batch 32, one thread: from the mapped cache {median(values['mapped']):.2f} s vs from "
                   f"tensors in memory {median(values['memory']):.2f} s; ratio (memory / mapped) of each round "
                   f"{listed(round_ratios(values, 'memory', 'mapped'))}")


