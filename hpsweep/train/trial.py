"""One trial, start to finish: spec + flat config -> typed params -> model -> the shared loop.

Ray trainables and `hpsweep train` both come through here, so a sweep's trial and a debugging run
train the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hpsweep.search.space import SearchSpace, TrialParams
from hpsweep.spec.data_sources import IMAGE_SOURCES
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.spec.yamlio import parse_scalar
from hpsweep.train.data.base import DataError, PreparedData
from hpsweep.train.loop import fit
from hpsweep.train.loop_api import EpochReport, FitResult, LoopSettings, reported_metrics
from hpsweep.train.models import Net, build_model
from hpsweep.train.trainable import Trainable, data_mismatch, uses_data


def loop_settings(spec: SweepSpec) -> LoopSettings:
    augment = spec.data.augment if isinstance(spec.data, IMAGE_SOURCES) and spec.data.augment.active else None
    return LoopSettings(epochs=spec.train.epochs, objectives=tuple(zip(spec.train.metrics(), spec.train.modes(),
                                                                       strict=True)),
                        patience=spec.train.patience, precision=spec.train.precision, seed=spec.train.init_seed(),
                        augment=augment)


def check_metrics(spec: SweepSpec, data: PreparedData) -> None:
    """`train.metric` must be something the loop reports for this data (checked before training)."""
    available = reported_metrics(data)
    for name in spec.train.metrics():
        if name not in available:
            raise DataError(spec.source, "train.metric", f"{name!r} is not reported for this data; "
                            f"choose from: {', '.join(available)}")


def prepare_for(spec: SweepSpec, trainable: Trainable, cache: Path | None = None) -> PreparedData | None:
    """The sweep's data, decoded and checked once for every trial, or None for a trainable that reads its
    own; DataError (exit 2) when it is unusable, when train.metric is not reported for it, or when the
    trainable cannot take it. Runs before anything trains."""
    if not uses_data(trainable):
        return None
    from hpsweep.train.data import prepare

    data = prepare(spec, cache)
    check_metrics(spec, data)
    if (why := data_mismatch(trainable, data)) is not None:
        raise DataError(spec.source, "trainable", why)
    return data


def build_net(spec: SweepSpec, data: PreparedData, params: TrialParams,
              pretrained: Mapping[str, torch.Tensor] | None = None) -> Net:
    torch.manual_seed(spec.train.init_seed())  # the same seed initialises every trial's model the same way
    return build_model(architecture(spec, params), data.input_shape, data.num_outputs, dropout=params.dropout,
                       hidden_sizes=list(spec.model.hidden_sizes), pretrained=spec.model.pretrained,
                       base_dir=spec.base_dir, state=pretrained)


def architecture(spec: SweepSpec, params: TrialParams) -> str:
    """The trial's model: its own when the sweep searches architectures, else the sweep's."""
    return params.model or spec.model.names()[0]


def run_trial(spec: SweepSpec, data: PreparedData, config: Mapping[str, Any], *,
              on_epoch: Callable[[EpochReport], None] | None = None, resume: dict[str, Any] | None = None,
              device: torch.device | None = None, pretrained: Mapping[str, torch.Tensor] | None = None
              ) -> tuple[Net, FitResult]:
    """Train one configuration on the train split and validate on val; the test split is never passed on.
    `pretrained`: weights already read for a models:/ or file `model.pretrained` (else they are read here)."""
    params = SearchSpace.of(spec).resolve(config)
    net = build_net(spec, data, params, pretrained)
    result = fit(net, data.for_search(), params, loop_settings(spec), on_epoch=on_epoch, resume=resume,
                 device=device)
    return net, result


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs (values read as YAML scalars) replace config entries; switching a branch
    drops the old option's parameters."""
    out = dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value (got {item!r})")
        out[key.strip()] = parse_scalar(raw)
    for kind in ("optimizer", "scheduler"):
        chosen = out.get(kind)
        for key in [k for k in out if k.startswith(f"{kind}.") and not k.startswith(f"{kind}.{chosen}.")]:
            del out[key]
    return out
