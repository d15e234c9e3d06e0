"""Building the optimizers and LR schedules that `hpsweep.spec.options` declares, for the shared loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def build_optimizer(
    net: torch.nn.Module, head_names: set[str], name: str, params: Mapping[str, Any],
    lr: float, weight_decay: float, head_lr_multiplier: float,
) -> torch.optim.Optimizer:
    """The named optimizer over two parameter groups: the backbone at lr, the head at lr x multiplier."""
    head = [p for n, p in net.named_parameters() if n in head_names]
    backbone = [p for n, p in net.named_parameters() if n not in head_names]
    groups = [{"params": backbone, "lr": lr, "name": "backbone"},
              {"params": head, "lr": lr * head_lr_multiplier, "name": "head"}]
    groups = [g for g in groups if g["params"]]
    if head_lr_multiplier == 1.0:  # one group: each group is another pass of the step's Python and kernels
        groups = [{"params": backbone + head, "lr": lr, "name": "all"}]
    kw: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    match name:
        case "sgd":
            return _fused(torch.optim.SGD, groups, momentum=params["momentum"], nesterov=params["nesterov"], **kw)
        case "adam":
            return _fused(torch.optim.Adam, groups, betas=(params["beta1"], params["beta2"]), **kw)
        case "adamw":
            return _fused(torch.optim.AdamW, groups, betas=(params["beta1"], params["beta2"]), **kw)
        case "rmsprop":
            return torch.optim.RMSprop(groups, alpha=params["alpha"], momentum=params["momentum"], **kw)
        case "adagrad":
            return _fused(torch.optim.Adagrad, groups, lr_decay=params["lr_decay"], **kw)
    raise ValueError(f"unknown optimizer {name!r}")


def _fused(cls: type[torch.optim.Optimizer], groups: list[dict[str, Any]], **kw: Any) -> torch.optim.Optimizer:
    """The optimizer's fused kernel where PyTorch has one for these parameters' device, else its default.

    A fused step updates every parameter of a group in one kernel instead of a dozen per group: small
    models on a GPU are bound by kernel launches, so this is most of the step's cost there (bench: loop
    efficiency), and on a CPU it is a few percent faster too.
    """
    try:
        return cls(groups, fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device, dtype or optimizer
        return cls(groups, **kw)


class LRSchedule:
    """The named LR schedule with its optional linear warm-up, stepped by the loop.

    Epoch-based schedules step after each epoch; one-cycle steps after each batch; plateau steps
    on the sweep metric. The warm-up rises linearly from lr/10 to lr over `warmup_epochs`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, name: str, params: Mapping[str, Any], *,
                 epochs: int, steps_per_epoch: int, mode: str) -> None:
        from torch.optim import lr_scheduler as S

        self.name = name
        self.warmup_epochs = int(params.get("warmup_epochs") or 0)
        self.per_batch = name == "onecycle"
        span = max(1, epochs - self.warmup_epochs)  # epochs the main schedule runs for
        main: Any
        match name:
            case "none":
                main = S.LambdaLR(optimizer, lambda _: 1.0)
            case "step":
                main = S.StepLR(optimizer, params["step_size"], gamma=params["gamma"])
            case "multistep":
                milestones = [m - self.warmup_epochs for m in params["milestones"] if m > self.warmup_epochs]
                main = S.MultiStepLR(optimizer, milestones, gamma=params["gamma"])
            case "exponential":
                main = S.ExponentialLR(optimizer, gamma=params["gamma"])
            case "cosine":
                floor = [g["lr"] * params["min_lr_factor"] for g in optimizer.param_groups]
                main = S.CosineAnnealingLR(optimizer, T_max=span, eta_min=min(floor))
            case "cosine_warm_restarts":
                main = S.CosineAnnealingWarmRestarts(optimizer, T_0=params["T_0"], T_mult=params["T_mult"])
            case "plateau":
                main = S.ReduceLROnPlateau(optimizer, mode=mode, factor=params["factor"], patience=params["patience"])
            case "onecycle":
                peaks = [g["lr"] * params["max_lr_factor"] for g in optimizer.param_groups]
                main = S.OneCycleLR(optimizer, max_lr=peaks, total_steps=epochs * steps_per_epoch,
                                    pct_start=params["pct_start"])
            case _:
                raise ValueError(f"unknown scheduler {name!r}")
        self.main = main
        self.warmup = None
        if self.warmup_epochs:
            # LinearLR is created last so it sets the starting lr; the main schedule takes over after.
            self.warmup = S.LinearLR(optimizer, start_factor=0.1, total_iters=self.warmup_epochs)
        self.epoch = 0

    def after_batch(self) -> None:
        if self.per_batch:
            self.main.step()

    def after_epoch(self, metric: float) -> None:
        self.epoch += 1
        if self.warmup is not None and self.epoch <= self.warmup_epochs:
            self.warmup.step()
        elif self.name == "plateau":
            self.main.step(metric)
        elif not self.per_batch:
            self.main.step()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "main": self.main.state_dict(),
                "warmup": self.warmup.state_dict() if self.warmup is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.main.load_state_dict(state["main"])
        if self.warmup is not None and state.get("warmup") is not None:
            self.warmup.load_state_dict(state["warmup"])
