"""Branch hyperparameters (optimizer, scheduler): pick one option, each with parameters of its own.

Written in the YAML as
  optimizer: adam                                    # fixed, default parameters
  optimizer: {name: sgd, momentum: 0.9}              # fixed, with parameters (which may be searched)
  optimizer: {choice: [sgd, adam]}                   # searched among options with default parameters
  optimizer: {choice: {sgd: {momentum: {uniform: [0.8, 0.99]}}, adam: {}}}
A parameter exists only in trials that take its option: sgd's momentum is a different search
dimension from rmsprop's momentum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, create_model, field_validator

from hpsweep.spec.options import OPTIMIZERS, SCHEDULERS, BranchDecl
from hpsweep.spec.params import knob
from hpsweep.spec.strict import StrictModel


class BranchParams(StrictModel):
    """Parameters of one option; subclasses are generated from the registry declarations."""

    def given(self) -> dict[str, Any]:
        """Only the parameters the YAML set; defaults are filled in when a trial is resolved."""
        return {k: getattr(self, k) for k in sorted(self.model_fields_set) if k != "name"}


class FixedBranch(BranchParams):
    """A branch fixed to one option: `{name: sgd, momentum: 0.9}`."""

    searched: ClassVar[bool] = False

    def options(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.given()}  # type: ignore[attr-defined]


def _importable(cls: type) -> type:
    """Generated classes are bound to this module under their name, so pickle (Ray does) finds them."""
    cls.__module__ = __name__
    cls.__qualname__ = cls.__name__
    globals()[cls.__name__] = cls
    return cls


def _param_help(declared: Any) -> str:
    default = "" if declared.default is None else f" (default {declared.default})"
    return (declared.domain.help or declared.domain.describe()) + default


def _params_model(kind: str, decl: BranchDecl, with_name: bool) -> type[BranchParams]:
    fields: dict[str, Any] = {
        pname: (knob(p.domain), ...) if p.required
        else (Annotated[knob(p.domain) | None, Field(description=_param_help(p))], None)
        for pname, p in decl.params.items()
    }
    if with_name:
        fields["name"] = (Literal[decl.name], Field(description=f"the {kind}: {decl.name} ({decl.help})"))  # type: ignore[valid-type]
    suffix = "Fixed" if with_name else "Params"
    model = create_model(f"{kind.title()}{decl.name.title().replace('_', '')}{suffix}",
                         __base__=FixedBranch if with_name else BranchParams,
                         __doc__=f"{kind} {decl.name}: {decl.help}", **fields)
    model._owner = decl.name
    return _importable(model)


def _as_mapping(value: Any) -> Any:
    """`optimizer: adam` is shorthand for `optimizer: {name: adam}`."""
    return {"name": value} if isinstance(value, str) else value


def _choice_as_mapping(value: Any) -> Any:
    """`choice: [sgd, adam]` is shorthand for `choice: {sgd: {}, adam: {}}`; `sgd:` with nothing is `{}`."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            return value  # left for the mapping validation to reject with its own message
        if len(set(value)) != len(value):
            raise ValueError("choice lists an option twice")
        return {name: {} for name in value}
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


def _fixed_type(kind: str, registry: Mapping[str, BranchDecl]) -> Any:
    """`{name: sgd, momentum: 0.9}`: one option, picked by its name, with that option's parameters."""
    members = tuple(
        Annotated[_params_model(kind, decl, with_name=True), Tag(f"={name}")] for name, decl in registry.items()
    )

    def fixed_tag(value: Any) -> str | None:
        name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
        return f"={name}" if name in registry else None

    return Annotated[
        Union[members],  # noqa: UP007 - a runtime-built tuple of members
        Discriminator(fixed_tag, custom_error_type=f"unknown_{kind}",
                      custom_error_message=f"unknown {kind} (choose from: {', '.join(registry)})"),
    ]


def _choice_type(kind: str, registry: Mapping[str, BranchDecl]) -> type[StrictModel]:
    """`{choice: {sgd: {...}, adam: {}}}` (or `{choice: [sgd, adam]}`): options to search among."""
    names = list(registry)
    choice_map = _importable(create_model(
        f"{kind.title()}Options", __base__=StrictModel,
        __doc__=f"the {kind}s to search among, each with its own parameters",
        **{name: (Annotated[_params_model(kind, decl, with_name=False) | None,
                            Field(description=f"{decl.help}, with these parameters")], None)
           for name, decl in registry.items()},
    ))
    option_names = Literal[tuple(names)]  # type: ignore[valid-type]

    class Choice(StrictModel):
        choice: Annotated[  # type: ignore[valid-type]
            choice_map, BeforeValidator(_choice_as_mapping, json_schema_input_type=choice_map | list[option_names]),
            Field(description=f"the {kind}s to search among: a list of names, or a mapping of each to its "
                              "parameters")]
        searched: ClassVar[bool] = True

        @field_validator("choice")
        @classmethod
        def _not_empty(cls, value: Any) -> Any:
            if not value.model_fields_set:
                raise ValueError(f"choice needs at least one {kind}")
            return value

        def options(self) -> dict[str, dict[str, Any]]:
            return {name: getattr(self.choice, name).given() for name in names if name in self.choice.model_fields_set}

    Choice.__name__ = f"{kind.title()}Choice"
    return _importable(Choice)


def _branch_type(kind: str, registry: Mapping[str, BranchDecl]) -> Any:
    """The field type of a branch: a name, a fixed option with parameters, or a choice among options."""
    choice = _choice_type(kind, registry)

    def tag(value: Any) -> str:
        if isinstance(value, dict) and "choice" in value:
            return "~choice"
        return "~choice" if isinstance(value, choice) else "fixed"

    forms = Annotated[Annotated[_fixed_type(kind, registry), Tag("fixed")] | Annotated[choice, Tag("~choice")],
                      Discriminator(tag)]
    return Annotated[
        forms,
        BeforeValidator(_as_mapping, json_schema_input_type=forms | Literal[tuple(registry)]),
        Field(description=f"the {kind}: a name, a mapping with name and parameters, or a choice"),
    ]


OptimizerField = _branch_type("optimizer", OPTIMIZERS)
SchedulerField = _branch_type("scheduler", SCHEDULERS)
