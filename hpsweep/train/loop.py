"""THE train/validate loop: every trial of every sweep trains here.

Per epoch: (un)freeze the backbone, train, validate, track the best epoch, hand the metrics to
`on_epoch` (Ray Tune in a sweep, the console for `hpsweep train`), stop early or on divergence.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from hpsweep.contract import StopReason
from hpsweep.search.space import TrialParams
from hpsweep.train import distributed
from hpsweep.train import metrics as M
from hpsweep.train.batches import BatchPlan, batches, eval_batch_size
from hpsweep.train.data.base import PreparedData, Split
from hpsweep.train.device import RESIDENT_BYTES, normalised, resident, resolve_precision, return_freed_batches
from hpsweep.train.loop_api import EpochReport, FitResult, LoopSettings
from hpsweep.train.models import Net, head_parameter_names
from hpsweep.train.optim import LRSchedule, build_optimizer

log = logging.getLogger(__name__)


def fit(net: Net, data: PreparedData, params: TrialParams, settings: LoopSettings, *,
        on_epoch: Callable[[EpochReport], None] | None = None, resume: dict[str, Any] | None = None,
        device: torch.device | None = None) -> FitResult:
    """Train `net` on data.train, validate on data.val each epoch; resume from a checkpoint dict if given."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    group = distributed.current()  # the trial's workers, when the caller started a process group
    return_freed_batches()
    data = resident(data, device)
    amp_dtype = resolve_precision(settings.precision, device)
    # NHWC feeds the tensor cores' reduced-precision convolutions; in fp32 it only adds layout work, which
    # made a small CNN 8% slower on an H100 (bench/RESULTS-gpu.md). On a CPU, oneDNN's convolutions are
    # faster in NHWC for the nets that say so (bench/RESULTS-cpu.md)
    channels_last = net.is_conv and (amp_dtype is not None if device.type == "cuda"
                                     else device.type == "cpu" and net.nhwc_on_cpu)
    net = distributed.synchronised_norms(group, net, device).to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    plan = BatchPlan(data.is_image, data.mean, data.std, settings.augment if data.is_image else None,
                     device, channels_last)
    data, plan = normalised(data, plan)
    heads = head_parameter_names(net)
    optimizer = build_optimizer(net, heads, params.optimizer.name, params.optimizer.params, params.lr,
                                params.weight_decay, params.head_lr_multiplier)
    steps = math.ceil(len(data.train) / params.batch_size)
    schedule = LRSchedule(optimizer, params.scheduler.name, params.scheduler.params, epochs=settings.epochs,
                          steps_per_epoch=steps, mode=settings.mode)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    generator = torch.Generator().manual_seed(settings.seed)
    run = _Run(net, data, params, settings, plan, optimizer, schedule, scaler, generator, amp_dtype, group)
    if resume is not None:
        run.restore(resume)
    return run.train(on_epoch or (lambda report: None))


#: examples per backbone pass when computing a frozen backbone's features
FEATURE_BATCH = 512


class _Run:
    """The state of one fit, so that it can be checkpointed and restored as a whole."""

    def __init__(self, net: Net, data: PreparedData, params: TrialParams, settings: LoopSettings, plan: BatchPlan,
                 optimizer: torch.optim.Optimizer, schedule: LRSchedule, scaler: Any, generator: torch.Generator,
                 amp_dtype: torch.dtype | None, group: distributed.Group = distributed.SINGLE) -> None:
        self.net, self.data, self.params, self.settings, self.plan = net, data, params, settings, plan
        self.feature_plan = BatchPlan(False, (), (), None, plan.device)
        self.optimizer, self.schedule, self.scaler, self.generator = optimizer, schedule, scaler, generator
        self.amp_dtype, self.group = amp_dtype, group
        self.wrapped: dict[bool, torch.nn.Module] = {}  #: the head alone (frozen) or the whole net, data-parallel
        self.epoch = 0
        self.best_value: float | None = None
        self.best_epoch = 0
        self.stale = 0
        self.history: list[dict[str, float]] = []
        self.best_confusion: torch.Tensor | None = None
        self.features: Split | None = None  #: the frozen backbone's outputs for data.train, while frozen
        self.keep_features = not (data.is_image and plan.augment is not None)  #: augmented inputs differ each epoch
        self.target_mean = data.mean[0] if data.task == "regression" else 0.0
        self.target_std = data.std[0] if data.task == "regression" else 1.0

    def train(self, on_epoch: Callable[[EpochReport], None]) -> FitResult:
        status = StopReason.COMPLETED.value
        while self.epoch < self.settings.epochs:
            started = time.perf_counter()
            frozen = self.epoch < self.params.freeze_epochs
            self._freeze(frozen)
            if not frozen:
                self.features = None
            train_loss = self._train_epoch(frozen)
            values, confusion = self._validate() if train_loss is not None else (None, None)
            self.epoch += 1
            if values is None:
                status = StopReason.DIVERGED.value
                report = EpochReport(self.epoch, self._diverged_metrics(), False, status, self.state)
                self.history.append(report.metrics)
                on_epoch(report)
                break
            values = {"train_loss": train_loss, **values, "epoch_time_s": time.perf_counter() - started,
                      "lr": self.optimizer.param_groups[0]["lr"], "epoch": float(self.epoch)}
            if self.params.freeze_epochs:  # a flat 0 for trials that freeze nothing is noise in MLflow's charts
                values["frozen"] = float(frozen)
            self.schedule.after_epoch(values[self.settings.metric])
            is_best = self.settings.better(values[self.settings.metric], self.best_value)
            if is_best:
                self.best_value, self.best_epoch, self.stale, self.best_confusion = (
                    values[self.settings.metric], self.epoch, 0, confusion)
            else:
                self.stale += 1
            stop = None
            if self.settings.patience is not None and self.stale >= self.settings.patience:
                stop = status = StopReason.EARLY_STOPPED.value
            elif self.epoch >= self.settings.epochs:
                stop = StopReason.COMPLETED.value
            self.history.append(values)
            on_epoch(EpochReport(self.epoch, values, is_best, stop, self.state, confusion))
            if stop:
                break
        best = self.best_value if self.best_value is not None else M.worst_value(*self.settings.objectives[0])
        return FitResult(status, best, self.best_epoch, self.epoch, self.history, self.best_confusion)

    def _freeze(self, frozen: bool) -> None:
        """Frozen epochs train only the head: the backbone gets no gradients and keeps its BatchNorm statistics."""
        for parameter in self.net.backbone.parameters():
            parameter.requires_grad_(not frozen)
        self.net.train()
        if frozen:
            self.net.backbone.eval()

    def _loss(self, output: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        if self.data.task == "regression":
            return F.mse_loss(output.squeeze(1).float(), (target - self.target_mean) / self.target_std)
        return F.cross_entropy(output.float(), target, label_smoothing=smoothing)

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.plan.device.type, dtype=self.amp_dtype)

    def _trained(self, frozen: bool) -> torch.nn.Module:
        """What the training step calls: the head while frozen, else the net; among data-parallel workers
        wrapped so that backward averages the gradients (made on first use, when the parameters that
        train are the ones that will)."""
        if frozen not in self.wrapped:
            module = self.net.head if frozen else self.net
            self.wrapped[frozen] = distributed.data_parallel(self.group, module, self.plan.device)
        return self.wrapped[frozen]

    def _forward(self, x: torch.Tensor, frozen: bool, features: bool) -> torch.Tensor:
        if features or not frozen:
            return self._trained(frozen)(x)
        with torch.no_grad():  # a frozen backbone needs no autograd bookkeeping at all
            x = self.net.backbone(x)
        return self._trained(frozen)(x)

    @torch.no_grad()
    def _frozen_features(self) -> Split | None:
        """The frozen backbone's output for every training example, computed once for all frozen epochs.

        A frozen backbone in eval mode maps an input to the same features every epoch, so frozen epochs
        train the head on these (shuffled and batched as the inputs would be) and run the backbone once,
        in large batches without gradients. Not with augmentation (each epoch's inputs differ), nor when
        the features would take more than RESIDENT_BYTES.
        """
        if self.features is not None or not self.keep_features:
            return self.features
        parts: list[torch.Tensor] = []
        n = len(self.data.train)
        for x, *_ in batches(self.data.train.part(*self.group.chunk(n)), FEATURE_BATCH, self.plan, train=False):
            with self._autocast():
                parts.append(self.net.backbone(x))
            if parts[-1][0].nbytes * n > RESIDENT_BYTES:  # the same answer on every worker
                self.keep_features = False
                return None
        mine = torch.cat(parts) if parts else torch.empty(0)
        self.features = Split(distributed.gathered(self.group, mine, n), self.data.train.y)
        return self.features

    def _train_epoch(self, frozen: bool) -> float | None:
        """Mean training loss, or None when the loss stopped being finite (the trial diverged)."""
        features = self._frozen_features() if frozen else None
        split, plan = (self.data.train, self.plan) if features is None else (features, self.feature_plan)
        # The loss is summed on the device and read once per epoch: reading it every batch would make the
        # CPU wait for the GPU at each step. A trial whose loss stops being finite is stopped at the end of
        # the epoch (its remaining steps are wasted, its result is the same).
        total, count = torch.zeros((), device=self.plan.device), 0
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        draws = (torch.Generator().manual_seed(self.settings.seed + 1000 * self.epoch + self.group.rank)
                 if self.group.parallel else None)  # each worker augments its share with draws of its own
        for x, y, weight in batches(split, self.params.batch_size, plan, train=True, generator=self.generator,
                                    group=self.group, augment_generator=draws):
            with self._autocast():
                output = self._forward(x, frozen, features is not None)
                mean = self._loss(output, y, self.params.label_smoothing)
                loss = mean * weight if self.group.parallel else mean
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if self.params.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, self.params.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.schedule.after_batch()
            total.add_(mean.detach(), alpha=len(y))
            count += len(y)
        summed, counted = distributed.total(self.group, total.item(), count)
        value = summed / max(1, counted)
        if not math.isfinite(value):
            log.warning("loss became %s in epoch %d: stopping the trial as diverged", value, self.epoch + 1)
            return None
        return value

    @torch.no_grad()
    def _validate(self) -> tuple[dict[str, float] | None, torch.Tensor | None]:
        distributed.agree(self.group, self.net)
        self.net.eval()
        n = len(self.data.val)
        outputs = [torch.empty((0, self.data.num_outputs), device=self.plan.device)]
        size = eval_batch_size(self.params.batch_size, self.data.val)
        for x, *_ in batches(self.data.val.part(*self.group.chunk(n)), size, self.plan, train=False):
            with self._autocast():
                outputs.append(self.net(x).float())
        # each worker validates its part of the split, and all of them then hold every output; one copy to
        # the host for the whole split: a copy per batch would wait for the GPU each time
        output = distributed.gathered(self.group, torch.cat(outputs), n).cpu()
        target = self.data.val.y.cpu()
        if not torch.isfinite(output).all():
            return None, None
        if self.data.task == "regression":
            standardised = output.squeeze(1)
            values = M.regression(standardised * self.target_std + self.target_mean, target)
            loss = float(F.mse_loss(standardised, (target - self.target_mean) / self.target_std))
            return {"val_loss": loss, **{f"val_{k}": v for k, v in values.items()}}, None
        values, confusion = M.classification(output, target, self.data.num_outputs)
        loss = float(F.cross_entropy(output, target))
        return {"val_loss": loss, **{f"val_{k}": v for k, v in values.items()}}, confusion

    def _diverged_metrics(self) -> dict[str, float]:
        worst = {name: M.worst_value(name, mode) for name, mode in self.settings.objectives}
        return {**worst, "diverged": 1.0, "epoch": float(self.epoch)}

    def state(self) -> dict[str, Any]:
        """A checkpoint of everything needed to continue this fit exactly (tensors and plain values only)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch, "best_value": self.best_value, "best_epoch": self.best_epoch, "stale": self.stale,
            "history": list(self.history), "rng": rng,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_value = int(state["epoch"]), state["best_value"]
        self.best_epoch, self.stale = int(state["best_epoch"]), int(state["stale"])
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
