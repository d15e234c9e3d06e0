"""The optimizers and LR schedules a sweep may name, each declaring its hyperparameters and their domains.

The sweep language builds its branch schemas from these declarations, so a parameter given to the
wrong branch (momentum for adam) is an error, and a new optimizer is one entry here (and one case in
`hpsweep.train.optim`, which builds them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsweep.spec.params import Domain

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
