"""Two sweeps side by side: their best trials, and how their search spaces and settings differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpsweep.report.analysis import build_report
from hpsweep.report.gather import SweepReport
from hpsweep.report.html import value_text
from hpsweep.search.space import SearchSpace


@dataclass(frozen=True)
class Comparison:
    a: SweepReport
    b: SweepReport
    space: list[tuple[str, str, str]]  #: (parameter, as sweep A has it, as B has it), only where they differ
    settings: list[tuple[str, str, str]]  #: the same for the sweep's other settings


def _space_terms(spec: Any) -> dict[str, str]:
    space = SearchSpace.of(spec)
    terms = {d.name: d.describe() for d in space.dimensions()}
    terms.update({k: f"fixed {value_text(v)}" for k, v in space.fixed().items() if k not in terms})
    return terms


def _settings(spec: Any) -> dict[str, str]:
    search = spec.search
    return {"trainable": spec.trainable, "data.source": spec.data.source, "model": str(spec.model.names()),
            "train.epochs": str(spec.train.epochs), "train.metric": ",".join(spec.train.metrics()),
            "search.algorithm": search.algorithm, "search.num_trials": str(spec.num_trials),
            "search.startup_trials": str(spec.startup_trials or "-"),
            "search.scheduler": search.scheduler.name,
            "resources": f"cpu {spec.resources.cpu:g}, gpu {spec.resources.gpu:g}"}


def compare_sweeps(ref_a: str, ref_b: str, uri: str | None = None) -> Comparison:
    """The two sweeps' reports, and how their search spaces and settings differ."""
    a, sweep_a, _ = build_report(ref_a, uri)
    b, sweep_b, _ = build_report(ref_b, uri)

    def differ(left: dict[str, str], right: dict[str, str]) -> list[tuple[str, str, str]]:
        names = list(left) + [k for k in right if k not in left]
        return [(n, left.get(n, "default"), right.get(n, "default")) for n in names if left.get(n) != right.get(n)]

    return Comparison(a, b, differ(_space_terms(sweep_a.spec), _space_terms(sweep_b.spec)),
                      differ(_settings(sweep_a.spec), _settings(sweep_b.spec)))
