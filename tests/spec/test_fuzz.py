"""The shipped sweeps, mutated the ways a careless or hostile file differs from a good one (types, bounds,
nesting, aliases, encodings, sizes): `validate` answers each with exit 0 or 2, never a traceback or an
internal error, one line per problem naming the file, within a second."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from conftest import SWEEPS

SHIPPED = sorted(SWEEPS.glob("*.yaml"))
ODD_VALUES: list[Any] = [None, -1, 0, 1e308, float("nan"), "", "x" * 300, [], {}, [1, [2, [3]]], True, "1e-3",
                         "../../etc/passwd", "é✓", {"choice": []}, {"loguniform": [0, -1]}, {"uniform": [5, 1]}]


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        data = data[step]
    del data[path[-1]]


def _mutants(rng: random.Random, text: str) -> Iterator[tuple[str, bytes]]:
    """(what was done, the mutated file's bytes)."""
    data = yaml.safe_load(text)
    paths = list(_paths(data))
    for _ in range(12):
        path, value = rng.choice(paths), rng.choice(ODD_VALUES)
        mutated = yaml.safe_load(text)
        _set(mutated, path, value)
        yield f"{'.'.join(map(str, path))} = {value!r}", yaml.safe_dump(mutated, allow_unicode=True).encode()
    for _ in range(4):
        path = rng.choice(paths)
        mutated = yaml.safe_load(text)
        _delete(mutated, path)
        yield f"deleted {'.'.join(map(str, path))}", yaml.safe_dump(mutated).encode()
    nested: Any = 1
    for _ in range(rng.randint(40, 150)):  # PyYAML itself cannot write much deeper
        nested = [nested] if rng.random() < 0.5 else {"k": nested}
    mutated = yaml.safe_load(text)
    _set(mutated, rng.choice(paths), nested)
    yield "deep nesting", yaml.safe_dump(mutated).encode()
    lines = ["b0: &b0 [y, y, y, y, y, y, y, y, y, y]"] + [
        f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, rng.randint(6, 9))]
    yield "aliases expanding", ("\n".join(lines) + "\n" + text).encode()
    yield "latin-1 bytes", text.replace("name:", "name: caf\xe9 #", 1).encode("latin-1", errors="replace")
    yield "a truncated file", text.encode()[: rng.randint(1, len(text) - 1)]
    yield "a huge comment", text.encode() + b"#" * (1 << 20)
    yield "tabs for indentation", text.replace("  ", "\t").encode()


MutantCheck = Callable[[str, bytes], None]


@pytest.mark.parametrize("shipped", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_mutated_shipped_sweeps_get_exit_2_and_one_line_per_problem(shipped, tmp_path, run_cli):
    rng = random.Random(shipped.stem)  # the same mutants every run
    checked = 0
    for what, content in _mutants(rng, shipped.read_text(encoding="utf-8")):
        file = tmp_path / f"mutant{checked}.yaml"
        file.write_bytes(content)
        began = time.monotonic()
        code, out, err = run_cli("validate", str(file))
        took = time.monotonic() - began
        assert code in (0, 2), (what, code, err)
        assert took < 1.0, (what, took)
        assert "Traceback" not in err and "error:" not in err, (what, err)  # "hpsweep: error:" is an internal one
        if code == 2:
            lines = err.strip().splitlines()
            assert lines and all(line.startswith(f"{file}: ") for line in lines), (what, err)
            assert out == ""
        checked += 1
    assert checked >= 20
