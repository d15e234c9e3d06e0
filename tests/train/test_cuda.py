"""The shared loop's CUDA paths: autocast (bf16, and fp16 with a gradient scaler), channels_last for
convolutional models, frozen-backbone epochs and checkpoints that move between GPU and CPU.
These need a GPU and are skipped without one (CI has none); run them on a GPU machine with
`pytest tests/train/test_cuda.py --noconftest` (no Ray or MLflow needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from hpsweep.search.space import SearchSpace
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.train.data import prepare
from hpsweep.train.loop import fit
from hpsweep.train.loop_api import EpochReport
from hpsweep.train.trial import build_net, loop_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _spec(tmp_path: Path, precision: str, model: str = "cnn", epochs: int = 3, **data: Any) -> SweepSpec:
    return validate_data(
        {
            "name": "cuda",
            "trainable": "image_classifier",
            "data": {"source": "sklearn_digits", **data},
            "model": {"name": model},
            "train": {"epochs": epochs, "metric": "val_accuracy", "precision": precision},
            "search": {"num_trials": 1},
            "space": {"lr": 0.003, "batch_size": 64, "freeze_epochs": 0},
        },
        "cuda.yaml",
        base_dir=tmp_path,
    )


def _fit(
    spec: SweepSpec,
    config: dict[str, Any] | None = None,
    on_epoch: Any = None,
    resume: dict[str, Any] | None = None,
    device: str | None = None,
) -> tuple[Any, Any]:
    data = prepare(spec)
    params = SearchSpace.of(spec).resolve({"lr": 0.003, "batch_size": 64, **(config or {})})
    net = build_net(spec, data, params)
    result = fit(
        net,
        data.for_search(),
        params,
        loop_settings(spec),
        on_epoch=on_epoch,
        resume=resume,
        device=torch.device(device) if device else None,
    )
    return net, result


def test_auto_precision_trains_a_cnn_in_bf16_with_channels_last_weights(tmp_path):
    seen: list[torch.dtype] = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        net, result = _fit(_spec(tmp_path, "auto"))
    finally:
        handle.remove()
    assert next(net.parameters()).is_cuda
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert torch.bfloat16 in seen  # convolutions ran under autocast
    assert result.best_value > 0.9, result.history


def test_fp16_scales_the_loss_and_stays_finite(tmp_path):
    _, result = _fit(_spec(tmp_path, "fp16"))
    assert result.status == "completed"
    assert all(math.isfinite(h["val_loss"]) for h in result.history)
    assert result.best_value > 0.9, result.history


def test_a_frozen_epoch_on_the_gpu_leaves_the_backbone_untouched(tmp_path):
    spec = _spec(tmp_path, "auto", model="resnet18", epochs=2, image_size=32)
    snapshots: list[dict[str, torch.Tensor]] = []

    def remember(report: EpochReport) -> None:
        snapshots.append({k: v.detach().clone() for k, v in report.state()["model"].items()})

    _fit(spec, {"freeze_epochs": 1}, on_epoch=remember)
    initial = build_net(spec, prepare(spec), SearchSpace.of(spec).resolve({"lr": 0.003, "batch_size": 64}))
    start = {k: v.detach().cpu() for k, v in initial.state_dict().items()}
    backbone = [k for k in start if k.startswith("backbone.") and k.endswith(".weight")]
    head = [k for k in start if not k.startswith("backbone.") and k.endswith(".weight")]
    after_frozen, after_full = snapshots
    assert all(torch.equal(after_frozen[k].cpu(), start[k]) for k in backbone)
    assert any(not torch.equal(after_frozen[k].cpu(), start[k]) for k in head)
    assert any(not torch.equal(after_full[k].cpu(), start[k]) for k in backbone)


def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    spec = _spec(tmp_path, "auto", epochs=2)
    states: list[dict[str, Any]] = []
    _fit(spec, on_epoch=lambda report: states.append(report.state()) if report.epoch == 1 else None)
    _, resumed = _fit(spec, resume=states[0], device="cpu")
    assert resumed.epochs_run == 2 and resumed.best_value > 0.8


def test_augmented_batches_are_cropped_and_flipped_on_the_gpu(tmp_path):
    spec = _spec(tmp_path, "auto", epochs=5, image_size=16,
                 augment={"random_resized_crop": True, "horizontal_flip": True})
    net, result = _fit(spec)
    assert next(net.parameters()).is_cuda
    assert result.best_value > 0.7, result.history  # flipped digits are hard: well above chance (0.1) is enough
