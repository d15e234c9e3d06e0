"""The space compiler: every sampled trial respects bounds, branches and constraints."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hpsweep.search.samplers import make_sampler
from hpsweep.search.space import SearchSpace
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.spec.params import Choice, IntRange, LogUniform, Uniform

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 6


def _sorted_pair(draw: Any, elements: st.SearchStrategy[Any]) -> list[Any]:
    low, high = draw(st.tuples(elements, elements).filter(lambda p: p[0] != p[1]))
    return sorted([low, high])


@st.composite
def real(draw: Any, low: float, high: float, finite: bool = False) -> Any:
    numbers = st.floats(low, high, allow_nan=False, allow_infinity=False, exclude_min=low == 0 and finite)
    kinds = ["const", "choice"] if finite else ["const", "uniform", "loguniform", "choice"]
    kind = draw(st.sampled_from(kinds))
    if kind == "const":
        return draw(numbers)
    if kind == "choice":
        return {"choice": draw(st.lists(numbers, min_size=1, max_size=4, unique=True))}
    if kind == "loguniform":
        positive = st.floats(max(low, 1e-6), high, allow_nan=False)
        return {"loguniform": _sorted_pair(draw, positive)}
    return {"uniform": _sorted_pair(draw, numbers)}


@st.composite
def integer(draw: Any, low: int, high: int) -> Any:
    kind = draw(st.sampled_from(["const", "int", "step", "log", "choice"]))
    numbers = st.integers(low, high)
    if kind == "const":
        return draw(numbers)
    if kind == "choice":
        return {"choice": draw(st.lists(numbers, min_size=1, max_size=4, unique=True))}
    if kind == "log" and low >= 1:
        return {"int": _sorted_pair(draw, numbers), "log": True}
    low_bound, high_bound = _sorted_pair(draw, numbers)
    if kind == "step":
        step = draw(st.integers(1, 3))
        end = low_bound + step * max(1, (high_bound - low_bound) // step)
        if end <= high:
            return {"int": [low_bound, end], "step": step}
    return {"int": [low_bound, high_bound]}


def _optimizer_params(draw: Any, name: str, finite: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if draw(st.booleans()):
        params["lr"] = draw(real(1e-4, 0.5, finite))
    if name in ("sgd", "rmsprop") and draw(st.booleans()):
        params["momentum"] = draw(real(0.5, 0.99, finite))
        if name == "sgd" and draw(st.booleans()):
            params["nesterov"] = {"choice": [True, False]}
    if name in ("adam", "adamw") and draw(st.booleans()):
        params["beta1"] = draw(real(0.5, 0.99, finite))
    return params


def _scheduler_params(draw: Any, name: str, finite: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if name != "onecycle" and draw(st.booleans()):
        params["warmup_epochs"] = draw(integer(0, EPOCHS - 1))
    if name == "step":
        params["step_size"] = draw(integer(1, 5))
    if name in ("step", "multistep", "exponential") and draw(st.booleans()):
        params["gamma"] = draw(real(0.05, 1.0, finite))
    if name == "multistep":
        params["milestones"] = {"choice": [[1, 3], [2, 4, 5]]} if draw(st.booleans()) else [2, 4]
    if name == "cosine_warm_restarts":
        params["T_0"] = draw(integer(1, 4))
    if name == "onecycle" and draw(st.booleans()):
        params["max_lr_factor"] = draw(real(1.0, 20.0, finite))
    return params


@st.composite
def branch(draw: Any, names: list[str], params_of: Any, finite: bool) -> Any:
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    if len(chosen) == 1 and draw(st.booleans()):
        return {"name": chosen[0], **params_of(draw, chosen[0], finite)}
    return {"choice": {name: params_of(draw, name, finite) for name in chosen}}


@st.composite
def spaces(draw: Any, finite: bool = False) -> dict[str, Any]:
    knobs = {
        "lr": real(1e-5, 1.0, finite),
        "batch_size": integer(1, 256),
        "weight_decay": real(0.0, 0.1, finite),
        "freeze_epochs": integer(0, EPOCHS - 1),
        "head_lr_multiplier": real(0.1, 20.0, finite),
        "label_smoothing": real(0.0, 0.5, finite),
        "dropout": real(0.0, 0.9, finite),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(knobs)), max_size=5, unique=True))
    space = {name: draw(knobs[name]) for name in chosen}
    if draw(st.booleans()):
        space["optimizer"] = draw(branch(["sgd", "adam", "adamw", "rmsprop", "adagrad"], _optimizer_params, finite))
    if draw(st.booleans()):
        names = ["none", "step", "multistep", "exponential", "cosine", "cosine_warm_restarts", "plateau", "onecycle"]
        space["scheduler"] = draw(branch(names, _scheduler_params, finite))
    if draw(st.booleans()):
        space["grad_clip"] = {"choice": [None, 1.0]}  # a nullable knob searched with null
    return space


def _spec(space: dict[str, Any], algorithm: str = "random", num_trials: int | None = 1) -> SweepSpec:
    search = {"algorithm": algorithm, "num_trials": num_trials} if num_trials else {"algorithm": algorithm}
    return validate_data({
        "name": "prop", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "train": {"epochs": EPOCHS, "metric": "val_accuracy"}, "search": search, "space": space,
    }, "<property>")


def _within(value: Any, param: Any) -> bool:
    if isinstance(param, Uniform | LogUniform):
        low, high = param.bounds
        return isinstance(value, float) and low <= value <= high
    if isinstance(param, IntRange):
        low, high = param.bounds
        return isinstance(value, int) and low <= value <= high and (value - low) % param.step == 0
    assert isinstance(param, Choice)
    encoded = [",".join(map(str, v)) if isinstance(v, list) else v for v in param.choice]
    return value in encoded


def assert_trial_respects_spec(space: SearchSpace, config: dict[str, Any]) -> None:
    for dim in space.dimensions():
        if dim.condition:
            kind, option = dim.condition.split(" = ")
            assert (dim.name in config) == (config[kind] == option), (dim.name, config)
        if dim.name in config:
            assert _within(config[dim.name], dim.param), (dim.name, config[dim.name], dim.param)
    for key in config:  # a branch parameter only appears with its own option
        parts = key.split(".")
        if len(parts) == 3:
            assert config[parts[0]] == parts[1], (key, config)
    params = space.resolve(config)  # every value is inside its domain, or this raises
    assert params.freeze_epochs < EPOCHS
    assert int(params.scheduler.params.get("warmup_epochs") or 0) < EPOCHS
    assert all(m < EPOCHS for m in params.scheduler.params.get("milestones") or [])
    if params.optimizer.name == "sgd" and params.optimizer.params["nesterov"]:
        assert params.optimizer.params["momentum"] > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces(), algorithm=st.sampled_from(["random", "tpe", "qmc", "cmaes"]), seed=st.integers(0, 99))
def test_sampled_trials_respect_bounds_branches_and_constraints(space, algorithm, seed):
    assume(_has_dimensions(space))
    spec = _spec(space, algorithm)
    compiled = SearchSpace.of(spec)
    study = optuna.create_study(sampler=make_sampler(spec), direction="maximize")
    rng = random.Random(seed)

    def objective(trial: optuna.Trial) -> float:
        assert_trial_respects_spec(compiled, compiled.sample(trial))
        return rng.random()

    study.optimize(objective, n_trials=12)  # well past the start-up trials, so the model samples too
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _has_dimensions(space: dict[str, Any]) -> bool:
    def searched(value: Any) -> bool:
        return isinstance(value, dict) and bool({"uniform", "loguniform", "int", "choice"} & set(value))

    if any(searched(v) for k, v in space.items() if k not in ("optimizer", "scheduler")):
        return True
    for key in ("optimizer", "scheduler"):
        value = space.get(key, {})
        if "choice" in value or any(searched(v) for v in value.values()):
            return True
    return False


def _key(config: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset((k, ",".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.items())


@settings(max_examples=30, deadline=None)
@given(space=spaces(finite=True))
def test_grid_enumerates_each_configuration_exactly_once(space):
    assume(_has_dimensions(space))
    spec = _spec(space, "grid")
    compiled = SearchSpace.of(spec)
    size = compiled.grid_size()
    assume(size is not None and size <= 300)
    grid = [_key(c) for c in compiled.grid()]
    assert len(grid) == size == len(set(grid))
    study = optuna.create_study(sampler=make_sampler(spec))
    seen: list[frozenset[tuple[str, Any]]] = []
    study.optimize(lambda t: seen.append(_key(compiled.sample(t))) or 0.0, n_trials=size + 3)
    assert len(seen) == size  # BruteForceSampler stops the study once the grid is exhausted
    assert set(seen) == set(grid)
    for config in compiled.grid():
        assert_trial_respects_spec(compiled, dict(config))


def test_grid_sweep_defaults_to_one_trial_per_configuration():
    spec = _spec({"batch_size": {"choice": [16, 32]},
                  "optimizer": {"choice": {"sgd": {"momentum": {"choice": [0.5, 0.9]}}, "adam": {}}}}, "grid", None)
    assert SearchSpace.of(spec).grid_size() == 2 * (2 + 1)
    assert spec.num_trials == 6


def test_branch_parameters_are_distinct_dimensions():
    spec = _spec({"optimizer": {"choice": {
        "sgd": {"momentum": {"uniform": [0.8, 0.99]}, "lr": {"loguniform": [0.01, 0.5]}},
        "rmsprop": {"momentum": {"uniform": [0.0, 0.5]}},
        "adam": {"lr": {"loguniform": [1e-4, 1e-2]}},
    }}})
    names = [d.name for d in SearchSpace.of(spec).dimensions()]
    assert names == ["optimizer", "optimizer.sgd.lr", "optimizer.sgd.momentum",
                     "optimizer.adam.lr", "optimizer.rmsprop.momentum"]


def test_resolve_applies_defaults_and_per_optimizer_lr():
    spec = _spec({"lr": {"loguniform": [1e-4, 1e-2]}, "optimizer": {"choice": {
        "sgd": {"lr": {"loguniform": [0.01, 0.5]}, "momentum": 0.9}, "adam": {}}}})
    compiled = SearchSpace.of(spec)
    sgd = compiled.resolve({"lr": 0.001, "optimizer": "sgd", "optimizer.sgd.lr": 0.2, "optimizer.sgd.momentum": 0.9})
    assert sgd.lr == 0.2 and sgd.optimizer.name == "sgd"
    assert dict(sgd.optimizer.params) == {"momentum": 0.9, "nesterov": False}
    assert sgd.batch_size == 64 and sgd.scheduler.name == "none" and sgd.grad_clip is None
    adam = compiled.resolve({"lr": 0.001, "optimizer": "adam"})
    assert adam.lr == 0.001 and dict(adam.optimizer.params) == {"beta1": 0.9, "beta2": 0.999}
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        compiled.resolve({"lr": 0.001, "momentum": 0.9})
    with pytest.raises(ValueError, match="must be a number > 0"):
        compiled.resolve({"lr": -1.0})


def test_fixed_values_travel_with_every_trial():
    spec = _spec({"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": 32,
                  "scheduler": {"name": "multistep", "milestones": [2, 4], "gamma": 0.5}})
    compiled = SearchSpace.of(spec)
    study = optuna.create_study(sampler=make_sampler(spec))
    config = compiled.sample(study.ask())
    assert config["batch_size"] == 32 and config["scheduler"] == "multistep"
    assert config["scheduler.multistep.milestones"] == [2, 4]
    assert set(compiled.define_by_run(study.ask())) == {"batch_size", "scheduler", "scheduler.multistep.milestones",
                                                        "scheduler.multistep.gamma"}
    assert compiled.resolve(config).scheduler.params["milestones"] == [2, 4]


@pytest.mark.parametrize("algorithm", ["tpe", "random", "qmc", "grid", "cmaes", "gp"])
def test_samplers_are_seeded_from_the_spec(algorithm):
    space = {"lr": {"choice": [0.001, 0.01, 0.1]}, "batch_size": {"int": [16, 64], "step": 16}}
    if algorithm != "grid":
        space["dropout"] = {"uniform": [0.0, 0.5]}

    def draws() -> list[dict[str, Any]]:
        spec = _spec(space, algorithm)
        compiled = SearchSpace.of(spec)
        study = optuna.create_study(sampler=make_sampler(spec))
        study.optimize(lambda t: float(len(str(compiled.sample(t)))), n_trials=4)
        return [t.params for t in study.trials]

    assert draws() == draws()


def test_a_trial_config_comes_back_from_mlflows_text_params_with_its_types():
    """MLflow keeps params as text; the model logger and the report read them back through the space,
    so a searched `null` is None again and a fixed list is a list."""
    spec = _spec({"lr": {"loguniform": [1e-4, 1e-1]}, "batch_size": {"choice": [32, 64]},
                  "grad_clip": {"choice": [None, 1.0]}, "freeze_epochs": {"int": [0, 2]},
                  "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.5, 0.9]}}}},
                  "scheduler": {"name": "multistep", "milestones": [2, 3]}})
    space = SearchSpace.of(spec)
    study = optuna.create_study(sampler=make_sampler(spec))
    for _ in range(10):
        config = space.sample(study.ask())
        logged = {k: str(v) for k, v in config.items()}  # as the tracker logs them
        back = space.from_logged(logged)
        assert back == config
        assert space.resolve(back) == space.resolve(config)
    assert space.from_logged({"grad_clip": "None"}) == {"grad_clip": None}


def _lrs(spec: SweepSpec, trials: int) -> list[float]:
    """The learning rates a study with the spec's sampler proposes, each scored by its distance from 1e-3."""
    import math

    compiled = SearchSpace.of(spec)
    study = optuna.create_study(sampler=make_sampler(spec), direction="maximize")
    study.optimize(lambda t: -abs(math.log10(compiled.sample(t)["lr"]) + 3.0), n_trials=trials)
    return [t.params["lr"] for t in study.trials]


@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_a_short_model_based_sweep_draws_a_third_of_its_trials_at_random(algorithm):
    """12 trials: the first 4 are random search's own draws (same seed), and from the 5th the sampler
    follows the results, where Optuna's own default would draw 10 of the 12 blind."""
    space = {"lr": {"loguniform": [1e-6, 1.0]}}
    spec = _spec(space, algorithm, 12)
    assert spec.startup_trials == 4
    modelled, blind = _lrs(spec, 12), _lrs(_spec(space, "random", 12), 12)
    assert modelled[:4] == blind[:4]
    assert modelled[4] != blind[4]
    assert _spec(space, algorithm, 60).startup_trials == 10  # long sweeps keep Optuna's 10


def test_startup_trials_as_written_are_drawn_blind_before_the_model_acts():
    space = {"lr": {"loguniform": [1e-6, 1.0]}}
    spec = validate_data({
        "name": "prop", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "train": {"epochs": EPOCHS, "metric": "val_accuracy"},
        "search": {"algorithm": "tpe", "num_trials": 12, "startup_trials": 7}, "space": space,
    }, "<startup>")
    modelled, blind = _lrs(spec, 9), _lrs(_spec(space, "random", 12), 9)
    assert modelled[:7] == blind[:7]
    assert modelled[7:] != blind[7:]
