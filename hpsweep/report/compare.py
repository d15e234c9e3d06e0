"""Two sweeps side by side: their best trials, and how their search spaces and settings differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpsweep.report.analysis import build_report
from hpsweep.report.gather import SweepReport
from hpsweep.search.space import SearchSpace
from hpsweep.spec.yamlio import as_yaml


@dataclass(frozen=True)
class Comparison:
    a: SweepReport
    b: SweepReport
    space: list[tuple[str, str, str]]  #: (parameter, as sweep A has it, as B has it), only where they differ
    settings: list[tuple[str, str, str]]  #: the same for the sweep's other settings


def _space_terms(spec: Any) -> dict[str, str]:
    space = SearchSpace.of(spec)
    terms = {d.name: d.describe() for d in space.dimensions()}
    terms.update({k: f"fixed {as_yaml(v)}" for k, v in space.fixed().items() if k not in terms})
    terms.update({k: f"fixed {as_yaml(v)}   (when {when})" for k, (v, when) in space.option_constants().items()})
    return terms


#: what names a sweep rather than how it searches: never listed as a difference
_NAMING = frozenset({"name", "description", "space", "tracking"})


def _settings(spec: Any) -> dict[str, str]:
    """Every setting of the resolved sweep (defaults filled in) by its sweep-file path: `data.image_size`."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = as_yaml(value)

    walk("", {k: v for k, v in spec.model_dump(mode="json", by_alias=True).items() if k not in _NAMING})
    return flat


def compare_sweeps(ref_a: str, ref_b: str, uri: str | None = None) -> Comparison:
    """The two sweeps' reports, and how their search spaces and settings differ."""
    a, sweep_a, _ = build_report(ref_a, uri)
    b, sweep_b, _ = build_report(ref_b, uri)

    def differ(left: dict[str, str], right: dict[str, str]) -> list[tuple[str, str, str]]:
        names = list(left) + [k for k in right if k not in left]
        return [(n, left.get(n, "default"), right.get(n, "default")) for n in names if left.get(n) != right.get(n)]

    return Comparison(a, b, differ(_space_terms(sweep_a.spec), _space_terms(sweep_b.spec)),
                      differ(_settings(sweep_a.spec), _settings(sweep_b.spec)))
