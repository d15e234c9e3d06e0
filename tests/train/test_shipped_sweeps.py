"""Every shipped sweep resolves its first trial and builds that trial's model, optimizer and schedule, and
the model takes a batch of the shape its data gives (as LitGPT's config-hub test does for its configs).

No data is read: the input shape follows from the sweep's data section (image size and colour, or a
table's width), so sweeps whose data is not on this machine are checked too. ImageNet weights are not
loaded (they are not on this machine); the architecture is the same with or without them."""

from __future__ import annotations

import pytest
import torch

from conftest import SWEEPS
from hpsweep.search.samplers import first_configs
from hpsweep.search.space import SearchSpace
from hpsweep.spec import load_spec
from hpsweep.spec.data_sources import IMAGE_SOURCES, SklearnDigits
from hpsweep.train.models import build_model, head_parameter_names
from hpsweep.train.optim import LRSchedule, build_optimizer
from hpsweep.train.trial import architecture

SHIPPED = sorted(SWEEPS.glob("*.yaml"))


def _shape_and_outputs(spec) -> tuple[tuple[int, ...], int]:
    data = spec.data
    if not isinstance(data, IMAGE_SOURCES):
        return (len(data.features or []) or 10,), (1 if data.task == "regression" else 3)
    channels = 3 if data.color == "rgb" or (data.color == "auto" and spec.model.pretrained == "imagenet") else 1
    side = data.image_size or (8 if isinstance(data, SklearnDigits) else 32)
    classes = len(getattr(data, "classes", None) or getattr(data, "class_names", None) or range(10))
    return (channels, side, side), classes


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_first_trial_builds_its_model_optimizer_and_schedule(path):
    spec = load_spec(path)
    config = first_configs(spec, 1)[0]
    params = SearchSpace.of(spec).resolve(config)
    shape, outputs = _shape_and_outputs(spec)
    pretrained = spec.model.pretrained if spec.model.pretrained in (None, "imagenet") else None
    net = build_model(architecture(spec, params), shape, outputs, dropout=params.dropout,
                      hidden_sizes=list(spec.model.hidden_sizes),
                      pretrained=None if pretrained == "imagenet" else pretrained)
    optimizer = build_optimizer(net, head_parameter_names(net), params.optimizer.name, params.optimizer.params,
                                params.lr, params.weight_decay, params.head_lr_multiplier)
    LRSchedule(optimizer, params.scheduler.name, params.scheduler.params, epochs=spec.train.epochs,
               steps_per_epoch=10, mode=spec.train.modes()[0])
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros((2, *shape))).shape == (2, outputs)
