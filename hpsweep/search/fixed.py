"""A Ray Tune searcher that proposes a given list of configurations, each once, in order: the trials of
a confirmation (`promote --confirm`), where nothing is searched."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher


class FixedConfigs(Searcher):
    """Hands out `configs` one per trial, then reports the search finished. Its place in the list is
    saved with Ray Tune's experiment state, so a resumed sweep proposes none of them twice."""

    def __init__(self, configs: Sequence[dict[str, Any]], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs = [dict(c) for c in configs]
        self.next = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the configurations are complete: Ray's param_space has nothing to add

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.configs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        return None

    def get_state(self) -> dict[str, Any]:
        return {"configs": self.configs, "next": self.next}

    def set_state(self, state: dict[str, Any]) -> None:
        self.configs, self.next = state["configs"], state["next"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as out:
            json.dump(self.get_state(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as source:
            self.set_state(json.load(source))
