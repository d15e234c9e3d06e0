"""In-process benchmarks of the shared loop: against a hand-written loop, image files against tensors,
a frozen-backbone epoch against a full one, and the cost of logging each epoch to MLflow."""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import Outcome, interleaved, listed, median, round_ratios, timed
from hpsweep.search.space import SearchSpace
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.train.data import prepare
from hpsweep.train.device import resolve_precision
from hpsweep.train.loop import fit
from hpsweep.train.trial import build_net, loop_settings

CONFIG = {"lr": 0.003, "batch_size": 64}


def sweep_spec(folder: Path, epochs: int, model: str = "cnn", source: str = "sklearn_digits", freeze: bool = False,
               precision: str = "auto", **data: Any) -> SweepSpec:
    return validate_data({
        "name": "bench", "trainable": "image_classifier",
        "data": {"source": source, **data}, "model": {"name": model},
        # auto: fp32 on a CPU; on a GPU, autocast to bf16 (fp16 where bf16 is missing), as sweeps run
        "train": {"epochs": epochs, "metric": "val_accuracy", "precision": precision},
        "search": {"algorithm": "random", "num_trials": 1},
        "space": {"lr": CONFIG["lr"], "batch_size": CONFIG["batch_size"],
                  **({"freeze_epochs": {"choice": [0, 1]}} if freeze else {})},
    }, "bench", base_dir=folder)


def _train(spec: SweepSpec, data: Any, config: dict[str, Any] | None = None, *, device: torch.device | None = None,
           nhwc_on_cpu: bool | None = None) -> list[float]:
    """Epoch times of one fit of the shared loop (on `device`, else the GPU if any; `nhwc_on_cpu` overrides
    the net's own choice of layout on a CPU)."""
    times: list[float] = []
    params = SearchSpace.of(spec).resolve({**CONFIG, **(config or {})})
    net = build_net(spec, data, params)
    if nhwc_on_cpu is not None:
        net.nhwc_on_cpu = nhwc_on_cpu
    fit(net, data.for_search(), params, loop_settings(spec), device=device,
        on_epoch=lambda report: times.append(report.metrics["epoch_time_s"]))
    return times


def _hand_loop(spec: SweepSpec, data: Any) -> None:
    """What a PyTorch tutorial writes: normalised float tensors on the device, shuffled slices, Adam, cross
    entropy, accuracy on the validation split after each epoch; fp32 throughout."""
    device = _device()
    params = SearchSpace.of(spec).resolve(CONFIG)
    net = build_net(spec, data, params).to(device)
    mean, std = torch.as_tensor(data.mean).view(1, -1, 1, 1), torch.as_tensor(data.std).view(1, -1, 1, 1)
    x_train, y_train = ((data.train.x.float() / 255 - mean) / std).to(device), data.train.y.to(device)
    x_val, y_val = ((data.val.x.float() / 255 - mean) / std).to(device), data.val.y.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=CONFIG["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(spec.train.epochs):
        net.train()
        order = torch.randperm(len(x_train), device=device)
        for start in range(0, len(order), CONFIG["batch_size"]):
            batch = order[start:start + CONFIG["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(net(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            correct = sum((net(x_val[i:i + 256]).argmax(1) == y_val[i:i + 256]).sum().item()
                          for i in range(0, len(x_val), 256))
        _ = correct / len(x_val)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def loop_efficiency(quick: bool) -> Outcome:
    # a GPU runs an epoch of the digits in a few dozen milliseconds: more epochs there, so that each
    # side runs for seconds and the ratio is not lost in the noise of short timings
    epochs, repeats = (1, 1) if quick else (5 if _device().type == "cpu" else 40, 5)
    with tempfile.TemporaryDirectory() as folder:
        spec = sweep_spec(Path(folder), epochs, precision="fp32")  # the loop's cost, not autocast's: see amp
        data = prepare(spec)
        images = len(data.for_search().train) * epochs
        values = interleaved({"hpsweep": lambda: timed(lambda: (_train(spec, data), _sync())),
                              "hand": lambda: timed(lambda: (_hand_loop(spec, data), _sync()))}, repeats)
    ours, hand = images / median(values["hpsweep"]), images / median(values["hand"])
    ratios = round_ratios(values, "hand", "hpsweep")  # throughput is the inverse of the time
    ratio = median(ratios)
    return Outcome("loop efficiency", ratio, ">= 0.97", ratio >= 0.97,
                   f"CNN on digits, {epochs} epochs on {_device().type}: shared loop {ours:,.0f} img/s, "
                   f"hand-written {hand:,.0f} img/s (medians); ratio: the median of each round's "
                   f"({listed(ratios)})")


def data_path(quick: bool) -> Outcome:
    """Images per second of a sweep's training from a folder of image files against the same images as
    pre-decoded tensors. A sweep decodes its files once, on the driver, and every trial trains from the
    decoded tensors; so one side is the decoding plus the sweep's fits, the other the fits alone. The
    same numbers give the ratio for a single training run as well."""
    from hpsweep.train.data.digits import export_digits

    epochs, trials, repeats = (1, 1, 1) if quick else (5, 8, 3)
    single: dict[str, list[float]] = {"files": [], "tensors": []}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        export_digits(root / "digits", "folders")
        specs = {"files": sweep_spec(root, epochs, source="image_folder", path="digits"),
                 "tensors": sweep_spec(root, epochs)}

        def run(side: str) -> float:
            started = time.perf_counter()
            data = prepare(specs[side])  # decoding the files is this side's cost
            decoded = time.perf_counter() - started
            fits = [timed(lambda: (_train(specs[side], data), _sync())) for _ in range(trials)]
            images = len(data.for_search().train) * epochs
            single[side].append(images / (decoded + fits[0]))
            return images * trials / (decoded + sum(fits))

        values = interleaved({"files": lambda: run("files"), "tensors": lambda: run("tensors")}, repeats)
    ours, base = median(values["files"]), median(values["tensors"])
    ratios = round_ratios(values, "files", "tensors")
    ratio = median(ratios)
    one = median(round_ratios({side: runs[-repeats:] for side, runs in single.items()}, "files", "tensors"))
    return Outcome("data path", ratio, ">= 0.95", ratio >= 0.95,
                   f"1,797 digit PNGs (image_folder) {ours:,.0f} img/s vs scikit-learn's tensors {base:,.0f} img/s "
                   f"over a sweep of {trials} trials of {epochs} epochs, decoding included (once per sweep), "
                   f"each round's ratio {listed(ratios)}; "
                   f"a single {epochs}-epoch run, decoding included: {one:.3f}")


def frozen_phase(quick: bool) -> Outcome:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as folder:
        spec = sweep_spec(Path(folder), 2, model="resnet18", freeze=True, image_size=32)
        data = prepare(spec)
        ratios, frozen, full = [], [], []
        if not quick:  # quick mode only checks that it runs: a ResNet-18 fit is its slowest part
            _train(spec, data, {"freeze_epochs": 1})  # warm-up, not recorded
        for _ in range(repeats):  # one fit: epoch 1 frozen, epoch 2 full, on the same warm process
            first, second = _train(spec, data, {"freeze_epochs": 1})
            ratios.append(first / second)
            frozen.append(first)
            full.append(second)
    ratio = median(ratios)
    return Outcome("frozen phase", ratio, "<= 0.45", ratio <= 0.45,
                   f"ResNet-18 at 32x32 on digits: frozen epoch {median(frozen):.2f} s, "
                   f"full epoch {median(full):.2f} s")


class _Turns:
    """Two fits in two threads that take turns, one epoch each: this machine's speed drifts by more than
    the 1% at stake within a minute, and epoch by epoch both sides see the same drift."""

    def __init__(self) -> None:
        self.cond, self.turn = threading.Condition(), 0

    def wait(self, me: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == me)

    def give(self, me: int) -> None:
        with self.cond:
            self.turn = 1 - me
            self.cond.notify_all()


def _fit_by_turns(spec: SweepSpec, data: Any, turns: _Turns, me: int, spent: list[float],
                  log: Callable[[Any], None] | None) -> None:
    """One fit that runs only while it holds the turn; `spent[me]` adds up the time it held it,
    what its epoch reports cost included."""
    params = SearchSpace.of(spec).resolve(CONFIG)
    net = build_net(spec, data, params)
    turns.wait(me)
    started = time.perf_counter()

    def on_epoch(report: Any) -> None:
        nonlocal started
        if log is not None:
            log(report)
        spent[me] += time.perf_counter() - started
        turns.give(me)
        turns.wait(me)
        started = time.perf_counter()

    fit(net, data.for_search(), params, loop_settings(spec), on_epoch=on_epoch)
    turns.give(me)  # the other side's last epoch waits for this


def tracking_overhead(quick: bool) -> Outcome:
    """Epoch time with each epoch's metrics going to MLflow as a sweep's driver sends them (held, and
    written in one batch every flush_s) against without, over trials long enough for two such writes.
    The two trials take turns epoch by epoch. The write at a trial's end is a cost per trial, not per
    epoch: it is timed apart (and the harness benchmark's per-trial cost includes it)."""
    from hpsweep.track.records import flush_interval
    from hpsweep.track.tracker import SweepTracker

    repeats = 1 if quick else 5
    with tempfile.TemporaryDirectory() as folder:
        one = sweep_spec(Path(folder), 1)
        data = prepare(one)
        # a trial waits while the other has its turn, so its wall time is twice its training: writing
        # every 2 x flush_s of wall time keeps the sweep's number of epochs per write
        flush_s = flush_interval()
        tracker = SweepTracker(one, "bench-1", "name: bench\n", f"sqlite:///{Path(folder) / 'mlflow.db'}",
                               flush_s=2 * flush_s)
        epochs = 2
        if not quick:  # quick mode only checks that the benchmark runs: no need to size its trials
            _train(one, data)  # warm-up
            epoch_s = median([_train(one, data)[0] for _ in range(3)])
            epochs = max(5, math.ceil(2 * flush_s / epoch_s) + 1)
        spec = sweep_spec(Path(folder), epochs)
        counter, ends, inside = iter(range(1_000_000)), [], []

        def pair(round_: int) -> tuple[float, float]:
            trial, spent, in_tracker = f"t{next(counter)}", [0.0, 0.0], [0.0]
            tracker.start_trial(trial, CONFIG)

            def log(report: Any) -> None:
                in_tracker[0] += timed(lambda: tracker.log_result(trial, report.metrics))

            turns = _Turns()
            turns.turn = round_ % 2  # neither side always goes first
            sides = [threading.Thread(target=_fit_by_turns, args=(spec, data, turns, 0, spent, log)),
                     threading.Thread(target=_fit_by_turns, args=(spec, data, turns, 1, spent, None))]
            for side in sides:
                side.start()
            for side in sides:
                side.join()
            inside.append(in_tracker[0] / epochs)
            # the trial's last write, until it is in MLflow (the tracker's writer thread sends it)
            ends.append(timed(lambda: (tracker.flush(), tracker.wait())))
            tracker.finish_trial(trial)
            return spent[0] / epochs, spent[1] / epochs

        pair(0)  # warm-up
        pairs = [pair(round_) for round_ in range(repeats)]
        tracker.wait()  # the last trial's end is written before its folder goes
    ratio = median([logged / bare for logged, bare in pairs])
    ours, base = median([p[0] for p in pairs]), median([p[1] for p in pairs])
    return Outcome("tracking overhead", ratio, "<= 1.01", ratio <= 1.01,
                   f"CNN epoch on digits, two trials of {epochs} epochs taking turns epoch by epoch, one with "
                   f"each epoch's metrics held and written to MLflow (SQLite) in the same process every "
                   f"{flush_s:g} s of training, as a sweep's driver writes them: {ours * 1000:.1f} ms vs without "
                   f"{base * 1000:.1f} ms (ratios of the {repeats} pairs: "
                   f"{', '.join(f'{a / b:.3f}' for a, b in pairs)}); time inside the tracker "
                   f"{median(inside) * 1000:.2f} ms an epoch; the "
                   f"write at a trial's end, a cost per trial, timed apart: {median(ends) * 1000:.0f} ms")


def mixed_precision(quick: bool) -> list[Outcome]:
    """On a GPU: a ResNet-18 epoch of the shared loop with precision auto (autocast to bf16, channels_last)
    against the same loop in fp32. Nothing to measure without a GPU."""
    if not torch.cuda.is_available():
        return []
    repeats = 1 if quick else 5
    with tempfile.TemporaryDirectory() as folder:
        auto = sweep_spec(Path(folder), 4, model="resnet18", image_size=224)
        fp32 = sweep_spec(Path(folder), 4, model="resnet18", image_size=224, precision="fp32")
        data = prepare(auto)

        def epoch(spec: SweepSpec) -> float:  # the first epoch pays for cuDNN's choices and is left out
            return median(_train(spec, data, {"batch_size": 128})[1:])

        values = interleaved({"auto": lambda: epoch(auto), "fp32": lambda: epoch(fp32)}, repeats)
    ours, base = median(values["auto"]), median(values["fp32"])
    ratio = median(round_ratios(values, "auto", "fp32"))
    return [Outcome("mixed precision (GPU)", ratio, "< 1 (faster than fp32)", ratio < 1,
                    f"ResNet-18 at 224x224, batch 128, on digits, {torch.cuda.get_device_name(0)}: autocast to "
                    f"{resolve_precision('auto', torch.device('cuda'))} with channels_last {ours:.3f} s per "
                    f"epoch vs fp32 {base:.3f} s")]
