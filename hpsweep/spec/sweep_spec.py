"""The sweep language: a typed, frozen SweepSpec loaded from YAML with every problem reported at once."""

from __future__ import annotations

import contextlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator

from hpsweep.errors import SpecError
from hpsweep.spec.branches import OptimizerField, SchedulerField
from hpsweep.spec.data_sources import DataSpec
from hpsweep.spec.fields import check_name
from hpsweep.spec.options import Declared
from hpsweep.spec.params import Domain, Param, knob
from hpsweep.spec.sections import (
    DEFAULT_TRIALS,
    STARTUP_CAP,
    ModelSpec,
    RegistrySpec,
    ResourcesSpec,
    SearchSpec,
    TrackingSpec,
    TrainSpec,
)
from hpsweep.spec.strict import StrictModel, did_you_mean
from hpsweep.spec.yamlio import read_yaml

TRAINABLE_GROUP = "hpsweep.trainables"

#: The training knobs every torch trainable understands, with their defaults when the YAML leaves them out.
TRAINING_KNOBS: dict[str, Declared] = {
    "lr": Declared(Domain("float", gt=0, help="learning rate"), 1e-3),
    "batch_size": Declared(Domain("int", ge=1, help="examples per step"), 64),
    "weight_decay": Declared(Domain("float", ge=0, help="L2 penalty / decoupled decay"), 0.0),
    "freeze_epochs": Declared(Domain("int", ge=0, help="first epochs that train only the head"), 0),
    "head_lr_multiplier": Declared(Domain("float", gt=0, help="the head's lr is lr times this"), 1.0),
    "label_smoothing": Declared(Domain("float", ge=0, lt=1, help="cross-entropy label smoothing"), 0.0),
    "dropout": Declared(Domain("float", ge=0, lt=1, help="dropout before the head"), 0.0),
    "grad_clip": Declared(Domain("float", gt=0, nullable=True, help="max gradient norm (null: off)"), None),
}
BRANCH_DEFAULTS = {"optimizer": "adam", "scheduler": "none"}


class SpaceSpec(StrictModel):
    """Hyperparameters: each a fixed value or a distribution to search, under the same key."""

    lr: knob(TRAINING_KNOBS["lr"].domain) = None
    batch_size: knob(TRAINING_KNOBS["batch_size"].domain) = None
    weight_decay: knob(TRAINING_KNOBS["weight_decay"].domain) = None
    freeze_epochs: knob(TRAINING_KNOBS["freeze_epochs"].domain) = None
    head_lr_multiplier: knob(TRAINING_KNOBS["head_lr_multiplier"].domain) = None
    label_smoothing: knob(TRAINING_KNOBS["label_smoothing"].domain) = None
    dropout: knob(TRAINING_KNOBS["dropout"].domain) = None
    grad_clip: knob(TRAINING_KNOBS["grad_clip"].domain) = None
    optimizer: OptimizerField = None
    scheduler: SchedulerField = None
    params: dict[str, Param] = Field(
        default_factory=dict, description="hyperparameters of your own trainable or model, fixed or searched")

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"parameter names are identifiers (got {name!r})")
            if name in cls.model_fields:
                raise ValueError(f"{name!r} is a training knob: set it as space.{name}, not under params")
        return value

    def knobs(self) -> dict[str, Any]:
        """The scalar training knobs the YAML set (fixed or searched)."""
        return {k: getattr(self, k) for k in TRAINING_KNOBS if k in self.model_fields_set}

    def branches(self) -> dict[str, Any]:
        """The optimizer and scheduler branches the YAML set."""
        return {k: getattr(self, k) for k in BRANCH_DEFAULTS if k in self.model_fields_set}


class SweepSpec(StrictModel):
    """A whole sweep: what to train, on which data, what to search, and where to record it."""

    name: Annotated[str, AfterValidator(check_name)] = Field(
        description="names the sweep, its MLflow experiment and its results folder")
    description: str = Field("", description="what the sweep is for; shown on its MLflow parent run")
    trainable: str = Field(description=f"a registered trainable (entry-point group {TRAINABLE_GROUP})")
    data: DataSpec = Field(description="where the examples come from, picked by `source`")
    model: ModelSpec = Field(ModelSpec(), description="the network")
    train: TrainSpec = Field(TrainSpec(), description="how every trial trains")
    search: SearchSpec = Field(SearchSpec(), description="how trials are chosen and scheduled")
    space: SpaceSpec = Field(SpaceSpec(), description="the hyperparameters: fixed values or ranges to search")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="what each trial reserves")
    tracking: TrackingSpec = Field(TrackingSpec(), description="where MLflow records the sweep")
    registry: RegistrySpec = Field(RegistrySpec(), description="how `hpsweep promote` registers the best model")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<sweep>")

    @field_validator("trainable")
    @classmethod
    def _registered(cls, value: str) -> str:
        known = available_trainables()
        if value not in known:
            raise ValueError(f"unknown trainable {value!r}{did_you_mean(value, known)} "
                             f"(registered: {', '.join(known) or 'none'})")
        return value

    @property
    def source(self) -> str:
        """The sweep file this spec was read from, for error messages."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Folder that relative data paths in the spec are resolved against (the sweep file's)."""
        return self._base_dir

    def resolve_path(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def num_trials(self) -> int:
        """Trials the sweep will run: as written, or every grid point, or 10."""
        from hpsweep.spec.dimensions import grid_size

        if self.search.num_trials:
            return self.search.num_trials
        return grid_size(self) if self.search.algorithm == "grid" else DEFAULT_TRIALS

    @property
    def startup_trials(self) -> int | None:
        """Trials the sampler draws at random before it models the results: as written, or for tpe and gp a
        third of the trials, at most Optuna's 10, so that a short sweep is not a random search under
        another name; None where the sampler's own setting stands (cmaes) or nothing is modelled."""
        if self.search.startup_trials is not None:
            return self.search.startup_trials
        if self.search.algorithm in ("tpe", "gp"):
            return max(1, min(STARTUP_CAP, self.num_trials // 3))
        return None


def available_trainables() -> list[str]:
    """Names of the installed trainables; names only, nothing is imported."""
    return sorted({ep.name for ep in entry_points(group=TRAINABLE_GROUP)})


def validate_data(data: dict[str, Any], source: str, base_dir: Path | None = None) -> SweepSpec:
    """Validate already-parsed YAML; raise SpecError with every problem found."""
    from hpsweep.spec.constraints import check_constraints
    from hpsweep.spec.problems import problems_from

    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems_from(exc, data)
        sections, partial = _valid_sections(data)
        problems += check_constraints(sections, partial)
        raise SpecError(source, problems) from None
    problems = check_constraints(_sections_of(spec))
    if problems:
        raise SpecError(source, problems)
    spec._base_dir = (base_dir or Path.cwd()).resolve()
    spec._source = source
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read, parse and validate one sweep file."""
    path = Path(path)
    return validate_data(read_yaml(path), str(path), base_dir=path.parent)


def _sections_of(spec: SweepSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in SweepSpec.model_fields}


def _valid_sections(data: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """The sections that validate on their own, so cross-section checks can still run, and which of
    them are partial (validated without their bad keys)."""
    sections: dict[str, Any] = {}
    partial: set[str] = set()
    for name in _CHECKED_SECTIONS:
        field = SweepSpec.model_fields[name]
        if name not in data:
            sections[name] = field.get_default(call_default_factory=True)
            continue
        adapter = TypeAdapter(field.rebuild_annotation())
        try:
            sections[name] = adapter.validate_python(data[name])
        except ValidationError as exc:
            if name == "space" and isinstance(data[name], dict):
                # Constraint checks read only the knobs the YAML set, so the valid knobs of a
                # space with some bad ones can still be checked in the same run.
                bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
                with contextlib.suppress(ValidationError):
                    sections[name] = adapter.validate_python({k: v for k, v in data[name].items() if k not in bad})
                    partial.add(name)
    return sections, frozenset(partial)


_CHECKED_SECTIONS = ("data", "model", "train", "search", "space", "resources")


def local_paths(spec: SweepSpec) -> list[tuple[str, str]]:
    """(field, value) of every file or folder the sweep reads from this machine."""
    found = [(f"data.{name}", getattr(spec.data, name)) for name in ("path", "csv") if getattr(spec.data, name, None)]
    pretrained = spec.model.pretrained
    if pretrained and pretrained != "imagenet" and not pretrained.startswith("models:"):
        found.append(("model.pretrained", pretrained))
    return found
