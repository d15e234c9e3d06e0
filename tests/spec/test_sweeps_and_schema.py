"""Every shipped sweep validates; the JSON Schema editors use agrees with the validator."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import SWEEPS
from hpsweep.search.space import SearchSpace
from hpsweep.spec import load_spec
from hpsweep.spec.yamlio import read_yaml

SHIPPED = sorted(SWEEPS.glob("*.yaml"))


def test_sweeps_folder_is_not_empty():
    assert len(SHIPPED) >= 7


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_sweep_validates(path):
    spec = load_spec(path)
    assert spec.name == path.stem.replace("_", "-")
    assert SearchSpace.of(spec).dimensions(), "a shipped sweep searches something"
    assert spec.base_dir == path.parent.resolve()


def test_validate_whole_folder(run_cli):
    code, out, err = run_cli("validate", str(SWEEPS))
    assert code == 0, err
    assert len(out.strip().splitlines()) == len(SHIPPED)


@pytest.fixture(scope="module")
def schema() -> dict:
    import contextlib
    import io

    from hpsweep.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["schema"]) == 0
    return json.loads(buffer.getvalue())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_schema_accepts_shipped_sweeps(schema, path):
    jsonschema.validate(read_yaml(path), schema)


@pytest.mark.parametrize("patch", [
    {"space": {"lrr": 0.1}},
    {"search": {"algorithm": "bayes"}},
    {"data": {"source": "mnist"}},
    {"space": {"optimizer": {"name": "adam", "momentum": 0.9}}},
    {"space": {"lr": {"loguniform": [0.1]}}},
], ids=["unknown key", "unknown algorithm", "unknown source", "branch param", "one bound"])
def test_schema_rejects_what_the_validator_rejects(schema, sweep_file, run_cli, patch):
    file = sweep_file(patch)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(read_yaml(file), schema)
    assert run_cli("validate", str(file))[0] == 2


def test_yaml_reads_exponent_floats_and_refuses_merge_keys(sweep_file, run_cli):
    file = sweep_file(text="name: e\ntrainable: image_classifier\ndata: {source: sklearn_digits}\n"
                           "space: {lr: {loguniform: [1e-4, 1e-1]}, weight_decay: 5E-4}\n")
    spec = load_spec(file)
    assert spec.space.lr.loguniform == (1e-4, 0.1) and spec.space.weight_decay == 5e-4
    merge = sweep_file(text="base: &b {source: sklearn_digits}\ndata:\n  <<: *b\n")
    code, _, err = run_cli("validate", str(merge))
    assert code == 2 and "merge keys are not supported" in err


def test_space_command_shows_dimensions_and_draws(run_cli):
    code, out, _ = run_cli("space", str(SWEEPS / "digits_mlp.yaml"), "--samples", "3")
    assert code == 0
    assert "optimizer.sgd.momentum" in out and "(when optimizer = sgd)" in out
    draws = [line for line in out.splitlines() if line.strip()[:2] in ("1:", "2:", "3:")]
    assert len(draws) == 3
    for line in draws:
        assert ("optimizer=sgd" in line) == ("optimizer.sgd.momentum=" in line)


def _fields(node: dict, defs: dict, path: str, seen: set[str]) -> list[tuple[str, dict]]:
    """(dotted path, property schema) for every property reachable from `node`, following $ref and unions."""
    found = []
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _fields(defs[name], defs, path, seen | {name})
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, []):
            found += _fields(option, defs, path, seen)
    for name, prop in (node.get("properties") or {}).items():
        found.append((f"{path}.{name}".lstrip("."), prop))
        found += _fields(prop, defs, f"{path}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _fields(node[key], defs, path, seen)
    return found


def test_every_field_of_the_sweep_schema_is_described(schema):
    """`hpsweep schema` (and so every editor that reads it) explains every key a sweep file may hold."""
    defs = schema.get("$defs", {})
    undescribed = sorted({path for path, prop in _fields(schema, defs, "", set()) if not prop.get("description")})
    assert not undescribed, f"{len(undescribed)} fields without a description: {', '.join(undescribed)}"


def test_the_committed_reference_is_the_generated_one():
    """docs/sweep-file-reference.md is `hpsweep schema --markdown`: regenerate it when the models change."""
    from conftest import REPO
    from hpsweep.spec.reference import markdown_reference

    committed = (REPO / "docs" / "sweep-file-reference.md").read_text(encoding="utf-8")
    assert committed == markdown_reference(), "run: hpsweep schema --markdown > docs/sweep-file-reference.md"
