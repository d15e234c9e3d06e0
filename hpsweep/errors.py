"""The errors a user can fix: each is reported as one line per problem, with exit code 2.

Every error about what a user gave hpsweep (a sweep file, a flag, data, a name) is a UserError, so the
command line translates them in one place; anything else is a fault of hpsweep or its surroundings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (a dotted field path, or '' for the whole file) and what."""

    path: str
    message: str

    def format(self, source: str) -> str:
        return f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"


class UserError(Exception):
    """Bad input: the message says what to change. Reported as `hpsweep: <message>`, exit code 2."""

    def lines(self) -> list[str]:
        return [f"hpsweep: {self}"]


class SpecError(UserError):
    """A sweep file is invalid; holds all of its problems so they can be reported at once."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.problems]


class ModelError(UserError):
    """A model cannot be built as asked (for example, pretrained weights that are not on this machine)."""


class CheckpointError(UserError):
    """A checkpoint file is unreadable, or would run code if it were unpickled."""


def show_value(value: object, limit: int = 60) -> str:
    """A short, single-line rendering of a user's value for error messages."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
