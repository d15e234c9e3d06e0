"""What the verb modules share: exit codes, common options, and how a sweep's search is described."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpsweep.errors import UserError

if TYPE_CHECKING:
    from hpsweep.spec.sweep_spec import SweepSpec

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 128 + 13  #: what a shell reports for a process that SIGPIPE ended


def tracking_uri_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                               "sqlite:///mlflow.db)")


def non_negative(text: str) -> float:
    """An argparse type: a finite number >= 0 (argparse names the flag in its one-line error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {text!r})")
    return value


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `low`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} (got {text!r})")
        return value

    parse.__name__ = "whole number"
    return parse


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = non_negative(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, exclusive (got {text!r})")
    return value


def checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a spec check that raises ValueError (argparse names the flag in its error)."""
    def parse(text: str) -> str:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    return parse


def storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="folder of Ray Tune state and checkpoints, one subfolder per sweep "
                                          "(default: $HPSWEEP_STORAGE or ./hpsweep-results)")


def set_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{what}: a sweep-file path (train.epochs=3) or a hyperparameter (lr=0.01, "
                             "optimizer=sgd, optimizer.sgd.momentum=0.9); repeatable")


def sweep_files(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders expand to the *.yaml / *.yml files directly inside them."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise UserError(f"{path}: no .yaml files in this folder")
            files += found
        else:
            files.append(path)
    return files


def load_with_sets(file: str, sets: Sequence[str]) -> tuple[SweepSpec, dict]:
    """A sweep file read, with --set applied, validated: (spec, the data as run)."""
    from hpsweep.spec.overrides import apply_sets
    from hpsweep.spec.sweep_spec import validate_data
    from hpsweep.spec.yamlio import read_yaml

    path = Path(file)
    raw = apply_sets(read_yaml(path), sets)
    return validate_data(raw, str(path), base_dir=path.parent), raw


def searching(spec: SweepSpec) -> str:
    """'tpe search, the first 4 trials at random': the sampler, and how long it draws blind."""
    if spec.startup_trials is None:
        return f"{spec.search.algorithm} search"
    blind = min(spec.startup_trials, spec.num_trials)
    return f"{spec.search.algorithm} search, the first {f'{blind} trials' if blind > 1 else 'trial'} at random"
