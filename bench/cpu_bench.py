"""The shared loop on a CPU: the demo's CNN in channels_last against NCHW."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.common import Outcome, interleaved, listed, median, round_ratios
from bench.loop_bench import CONFIG, sweep_spec
from hpsweep.search.space import SearchSpace
from hpsweep.train.data import prepare
from hpsweep.train.loop import fit
from hpsweep.train.trial import build_net, loop_settings

#: the demo's largest batch
BATCH = 128


def _epoch_s(spec: Any, data: Any, nhwc: bool) -> float:
    """The median epoch time of one fit of the demo's CNN on one thread, NHWC or NCHW."""
    times: list[float] = []
    params = SearchSpace.of(spec).resolve({**CONFIG, "batch_size": BATCH})
    net = build_net(spec, data, params)
    net.nhwc_on_cpu = nhwc
    fit(net, data.for_search(), params, loop_settings(spec), device=torch.device("cpu"),
        on_epoch=lambda report: times.append(report.metrics["epoch_time_s"]))
    return statistics.median(times)


def channels_last(quick: bool) -> Outcome:
    epochs, repeats = (1, 1) if quick else (4, 5)
    torch.set_num_threads(1)  # as a trial of the demo runs (resources.cpu: 1)
    with tempfile.TemporaryDirectory() as folder:
        spec = sweep_spec(Path(folder), epochs, image_size=16)
        data = prepare(spec)
        values = interleaved({"nhwc": lambda: _epoch_s(spec, data, True),
                              "nchw": lambda: _epoch_s(spec, data, False)}, repeats)
    torch.set_num_threads(os.cpu_count() or 1)
    ratios = round_ratios(values, "nhwc", "nchw")
    ratio = median(ratios)
    return Outcome("CNN epoch on CPU, channels_last / NCHW", ratio, "<= 0.9", ratio <= 0.9,
                   f"the demo's CNN at 16x16, batch {BATCH}, one thread: {median(values['nhwc']):.3f} s vs "
                   f"{median(values['nchw']):.3f} s per epoch (medians); each round's ratio {listed(ratios)}")
