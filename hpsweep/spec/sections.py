"""The sections of a sweep file other than `data` and `space`: model, train, search, resources, tracking, registry."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from hpsweep.spec.fields import ALIAS_PATTERN, check_name, duration, named_union
from hpsweep.spec.strict import StrictModel

# ---------------------------------------------------------------- model

MODEL_NAMES = ("mlp", "cnn", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
TORCHVISION_MODELS = ("resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
_REGISTRY_URI = re.compile(r"^models:/[^/@]+(@[A-Za-z0-9_-]+|/[0-9]+)$")


ModelName = Literal["mlp", "cnn", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large"]


class ModelChoice(StrictModel):
    """Search among architectures: `name: {choice: [mlp, cnn]}`."""

    choice: list[ModelName] = Field(min_length=1, description="the architectures to search among")

    @field_validator("choice")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("choice lists a model twice")
        return value


class ModelSpec(StrictModel):
    """The network; its head is replaced to fit the class count."""

    name: Annotated[
        Annotated[ModelName, Tag("=fixed")] | Annotated[ModelChoice, Tag("~choice")],
        Discriminator(lambda v: "~choice" if isinstance(v, dict | ModelChoice) else "=fixed"),
    ] = Field("mlp", description="a model, or {choice: [...]} to search among models")
    pretrained: str | None = Field(
        None, description="imagenet, models:/NAME@ALIAS, models:/NAME/VERSION, a state-dict file, or none")
    hidden_sizes: list[Annotated[int, Field(ge=1)]] = Field([128], description="mlp hidden layer widths")

    def names(self) -> list[str]:
        """Every architecture a trial may get."""
        return list(self.name.choice) if isinstance(self.name, ModelChoice) else [self.name]

    @field_validator("pretrained")
    @classmethod
    def _pretrained(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in ("none", "null", ""):
            return None  # no weights (a file called "none" is written ./none)
        if value and value.startswith("models:") and not _REGISTRY_URI.match(value):
            raise ValueError(f"a registry URI is models:/NAME@ALIAS or models:/NAME/VERSION (got {value!r})")
        return value


# ---------------------------------------------------------------- train

_MINIMISED = re.compile(r"(loss|rmse|mse|mae|error|time)$")


class TrainSpec(StrictModel):
    """How every trial trains; the same for all trials of a sweep."""

    epochs: int = Field(10, ge=1, le=100_000, description="epochs every trial may train (ASHA's max_t)")
    metric: str | list[str] = Field("val_loss", description="the metric the search optimises, or several (nsga2)")
    mode: Literal["min", "max"] | list[Literal["min", "max"]] | None = Field(
        None, description="min or max per metric (default: min for *loss/*rmse/*mae/*error, else max)")
    patience: int | None = Field(None, ge=1, description="early-stopping patience in epochs (default: off)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="mixed precision on a GPU (auto: bf16 where supported, else fp16); fp32 on a CPU")
    seed: int = Field(0, ge=0, description="seeds the splits, the model's initial weights and the batch order")
    trial_seed: int | None = Field(None, ge=0, description="seeds the model's initial weights and the batch order "
                                   "only, the splits staying on `seed` (default: seed; `promote --confirm` sets it)")
    checkpoint_every: Annotated[float, BeforeValidator(duration, json_schema_input_type=float | str)] = Field(
        1.0, ge=0, description="a trial checkpoints its best and last epochs, and others when this long (seconds, "
        "or 30s, 5m) has passed since its previous checkpoint; 0: every epoch")

    def init_seed(self) -> int:
        """What seeds a trial's initial weights and batch order."""
        return self.seed if self.trial_seed is None else self.trial_seed

    @field_validator("metric")
    @classmethod
    def _distinct(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"list one or more distinct metrics (got {value})")
        return value

    @field_validator("mode")
    @classmethod
    def _one_mode_per_metric(cls, value: Any, info: ValidationInfo) -> Any:
        metric = info.data.get("metric")
        count = len(metric) if isinstance(metric, list) else 1
        if isinstance(value, list) and metric is not None and len(value) != count:
            raise ValueError(f"give one mode per metric: {count} metrics, {len(value)} modes")
        return value

    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    def modes(self) -> list[str]:
        if isinstance(self.mode, list):
            return list(self.mode)
        if self.mode:
            return [self.mode] * len(self.metrics())
        return ["min" if _MINIMISED.search(m) else "max" for m in self.metrics()]


# ---------------------------------------------------------------- search

class Fifo(StrictModel):
    """Every trial runs all its epochs."""

    name: Literal["fifo"] = Field(description="first in, first out: no early stopping")


class Asha(StrictModel):
    """Asynchronous successive halving; max_t is train.epochs."""

    name: Literal["asha"] = Field(description="asynchronous successive halving")
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it may be stopped")
    reduction_factor: float = Field(3, gt=1, description="a third (at 3) of the trials at each rung go on")


class Hyperband(StrictModel):
    """HyperBand; max_t is train.epochs."""

    name: Literal["hyperband"] = Field(description="HyperBand: brackets of successive halving")
    reduction_factor: float = Field(3, gt=1, description="a third (at 3) of the trials at each rung go on")


class Median(StrictModel):
    """Stop a trial whose metric falls below the median of the others at the same epoch."""

    name: Literal["median"] = Field(description="the median stopping rule")
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it may be stopped")
    min_samples_required: int = Field(3, ge=1, description="trials that must have reached an epoch before "
                                      "the median there can stop one")


SchedulerSpec = named_union("trial scheduler", "name", Fifo, Asha, Hyperband, Median)

ALGORITHMS = ("tpe", "random", "qmc", "grid", "cmaes", "gp", "nsga2")
#: trials a sweep runs when search.num_trials is not given (grid: every point)
DEFAULT_TRIALS = 10
#: the samplers that model past trials, after start-up trials drawn at random
MODELLING = ("tpe", "gp", "cmaes")
#: Optuna's start-up trials for tpe and gp, which hpsweep keeps for sweeps of 30 trials or more
STARTUP_CAP = 10


class SearchSpec(StrictModel):
    """How trials are chosen and scheduled."""

    algorithm: Literal["tpe", "random", "qmc", "grid", "cmaes", "gp", "nsga2"] = Field(
        "tpe", description="the Optuna sampler: tpe, random, qmc (quasi-random), grid, cmaes, gp (Gaussian "
        "process), nsga2 (several metrics)")
    num_trials: int | None = Field(None, ge=1, description="default: 10, or every grid point for grid")
    max_concurrent: int | None = Field(None, ge=1, description="default: as many as the resources allow")
    time_budget: Annotated[float | None, BeforeValidator(duration, json_schema_input_type=float | str | None)] = Field(
        None, gt=0, description="end the sweep after it has run this long, over all its resumes: seconds, or 30m, 2h")
    scheduler: SchedulerSpec = Field(Fifo(name="fifo"), description="the trial scheduler that stops weak "
                                     "trials early: fifo, asha, hyperband or median")
    startup_trials: int | None = Field(
        None, ge=1, description="trials drawn at random before tpe, gp or cmaes model the results "
        "(default: a third of num_trials, at most 10, for tpe and gp; the sampler's own for cmaes)")
    seed: int | None = Field(None, ge=0, description="sampler seed (default: train.seed)")
    max_failures: int = Field(0, ge=0, description="times a crashed trial is retried from its latest checkpoint")
    warm_start: Literal["auto"] | list[str] | None = Field(
        None, description="start from earlier sweeps' finished trials: auto (the tracking store's sweeps of "
        "the same trainable, data and metric) or a list of sweep names or parent run IDs; their trials whose "
        "parameters fit this space are handed to the sampler, and the best few run again first")


# ---------------------------------------------------------------- resources, tracking, registry


class ResourcesSpec(StrictModel):
    """What each trial reserves: `workers` processes, each with `cpu` CPUs and `gpu` GPUs."""

    workers: int = Field(1, ge=1, description="processes that train each trial data-parallel (DDP); "
                         "batch_size is the global batch, split across them")
    cpu: float = Field(1, gt=0, description="CPUs each worker reserves (torch uses as many threads)")
    gpu: float = Field(0, ge=0, description="GPUs each worker reserves, at most 1; a fraction packs "
                       "trials on a GPU (0.25: four)")

    @field_validator("gpu")
    @classmethod
    def _one_gpu_per_worker(cls, value: float, info: ValidationInfo) -> float:
        workers = info.data.get("workers", 1)
        if value > 1:
            raise ValueError(f"a worker trains on one GPU (got {value:g}); for {math.ceil(value) * workers} "
                             f"GPUs per trial write workers: {math.ceil(value) * workers} and gpu: 1")
        if workers > 1 and 0 < value < 1:
            raise ValueError(f"each of a trial's {workers} workers needs a GPU of its own (NCCL cannot share "
                             f"one): use gpu: 1, or workers: 1 to pack trials with gpu: {value:g}")
        return value


class TrackingSpec(StrictModel):
    """Where MLflow records the sweep; the tracking URI comes from MLFLOW_TRACKING_URI."""

    experiment: str | None = Field(None, min_length=1, description="default: the sweep name")


class RegistrySpec(StrictModel):
    """How `hpsweep promote` registers the best model."""

    model_name: Annotated[str, AfterValidator(check_name)] | None = Field(None, description="default: the sweep name")
    alias: str = Field("champion", pattern=ALIAS_PATTERN, description="the alias that points at the best version")
    min_improvement: float = Field(0.0, ge=0, description="how much the test metric must improve to promote")
