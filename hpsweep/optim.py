"""Optimizer and LR-schedule registries.

Each entry declares, by name, the hyperparameters it takes and their domains. The sweep
language builds its branch schemas from these declarations, so a parameter given to the
wrong branch (momentum for adam) is an error, and a new optimizer is one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsweep.params import Domain

if TYPE_CHECKING:
    import torch

_REAL01 = Domain("float", ge=0, lt=1)
_DECAY = Domain("float", gt=0, le=1)


@dataclass(frozen=True)
class Declared:
    """A hyperparameter of one branch: its domain, and its default unless it must be given."""

    domain: Domain
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class BranchDecl:
    """One option of a branch hyperparameter (an optimizer, or an LR schedule)."""

    name: str
    help: str
    params: Mapping[str, Declared] = field(default_factory=dict)


# Every optimizer may override the sweep-wide lr and weight_decay, so the learning rate can be
# searched per optimizer (SGD and Adam want very different ranges).
_OVERRIDES = {
    "lr": Declared(Domain("float", gt=0, help="learning rate for this optimizer (default: space.lr)")),
    "weight_decay": Declared(Domain("float", ge=0, help="weight decay (default: space.weight_decay)")),
}
_BETAS = {
    "beta1": Declared(Domain("float", ge=0, lt=1, help="first Adam beta"), 0.9),
    "beta2": Declared(Domain("float", ge=0, lt=1, help="second Adam beta"), 0.999),
}

OPTIMIZERS: dict[str, BranchDecl] = {
    decl.name: decl
    for decl in (
        BranchDecl("sgd", "stochastic gradient descent", {
            "momentum": Declared(_REAL01, 0.0),
            "nesterov": Declared(Domain("bool", help="Nesterov momentum (needs momentum > 0)"), False),
            **_OVERRIDES,
        }),
        BranchDecl("adam", "Adam", {**_BETAS, **_OVERRIDES}),
        BranchDecl("adamw", "Adam with decoupled weight decay", {**_BETAS, **_OVERRIDES}),
        BranchDecl("rmsprop", "RMSprop", {
            "momentum": Declared(_REAL01, 0.0),
            "alpha": Declared(Domain("float", gt=0, lt=1, help="smoothing constant"), 0.99),
            **_OVERRIDES,
        }),
        BranchDecl("adagrad", "Adagrad", {
            "lr_decay": Declared(Domain("float", ge=0, help="learning-rate decay per step"), 0.0),
            **_OVERRIDES,
        }),
    )
}

_WARMUP = {"warmup_epochs": Declared(Domain("int", ge=0, help="epochs of linear warmup from lr/10"), 0)}

SCHEDULERS: dict[str, BranchDecl] = {
    decl.name: decl
    for decl in (
        BranchDecl("none", "constant learning rate", dict(_WARMUP)),
        BranchDecl("step", "multiply lr by gamma every step_size epochs", {
            "step_size": Declared(Domain("int", ge=1, help="epochs between decays"), required=True),
            "gamma": Declared(_DECAY, 0.1),
            **_WARMUP,
        }),
        BranchDecl("multistep", "multiply lr by gamma at each milestone epoch", {
            "milestones": Declared(Domain("int_list", ge=1, help="epochs at which lr decays"), required=True),
            "gamma": Declared(_DECAY, 0.1),
            **_WARMUP,
        }),
        BranchDecl("exponential", "multiply lr by gamma every epoch", {
            "gamma": Declared(_DECAY, 0.9),
            **_WARMUP,
        }),
        BranchDecl("cosine", "cosine decay over the run", {
            "min_lr_factor": Declared(Domain("float", ge=0, lt=1, help="final lr as a fraction of lr"), 0.0),
            **_WARMUP,
        }),
        BranchDecl("cosine_warm_restarts", "cosine decay restarted every T_0 epochs (T_0 * T_mult after)", {
            "T_0": Declared(Domain("int", ge=1, help="epochs until the first restart"), required=True),
            "T_mult": Declared(Domain("int", ge=1, help="growth of the period after each restart"), 1),
            **_WARMUP,
        }),
        BranchDecl("plateau", "multiply lr by factor when the sweep metric stalls", {
            "factor": Declared(Domain("float", gt=0, lt=1), 0.1),
            "patience": Declared(Domain("int", ge=0, help="epochs without improvement before decaying"), 2),
            **_WARMUP,
        }),
        # one-cycle has its own warm-up phase, so it takes no warmup_epochs
        BranchDecl("onecycle", "one-cycle policy peaking at lr * max_lr_factor", {
            "max_lr_factor": Declared(Domain("float", ge=1, help="peak lr as a multiple of lr"), 10.0),
            "pct_start": Declared(Domain("float", gt=0, lt=1, help="fraction of the run spent rising"), 0.3),
        }),
    )
}


# ---------------------------------------------------------------- builders


def build_optimizer(
    net: torch.nn.Module, head_names: set[str], name: str, params: Mapping[str, Any],
    lr: float, weight_decay: float, head_lr_multiplier: float,
) -> torch.optim.Optimizer:
    """The named optimizer over two parameter groups: the backbone at lr, the head at lr x multiplier."""
    import torch

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
