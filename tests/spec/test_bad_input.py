"""Bad input answered with exit 2 and one line naming the field, flag or file, quickly and with nothing
written; bad data read the way a user would expect (infinite cells, blank targets, a lone class)."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
import yaml

from conftest import BASE, merged, spec_for


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes whose aliases expand to 10**levels values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\nname: t\n"


HUGE_FILES = [
    ("aliases that expand to a billion values", _alias_bomb(), "anchors and aliases"),
    ("a value nested 5,000 levels deep", "name: " + "[" * 5000 + "]" * 5000 + "\n", "more than 50 levels"),
    ("a mapping nested 60 levels deep", "name: " + "{a: " * 60 + "1" + "}" * 60 + "\n", "more than 50 levels"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), HUGE_FILES, ids=[c[0] for c in HUGE_FILES])
def test_documents_too_large_to_expand_are_refused_in_a_second(sweep_file, run_cli, case, text, fragment):
    file = sweep_file(text=text)
    began = time.monotonic()
    code, out, err = run_cli("validate", str(file))
    assert time.monotonic() - began < 1.0
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"{file}: ") and fragment in err


@pytest.mark.parametrize("value", ["[&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]]",
                                   "[" * 3000 + "]" * 3000, "!secret x", "[unclosed"])
def test_a_bad_set_value_names_its_key(sweep_file, run_cli, tmp_path, value):
    value = value if not value.startswith("[&a") else _nested_alias_value()
    code, out, err = run_cli("train", str(sweep_file()), "--epochs", "1", "--set", f"lr={value}",
                             "--out", str(tmp_path / "out"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("hpsweep: --set lr: ")
    assert not (tmp_path / "out").exists()


def _nested_alias_value() -> str:
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    return "[" + ", ".join(levels) + "]"


@pytest.mark.parametrize("word", ["none", "None", "null"])
def test_pretrained_none_means_no_weights(tmp_path, word):
    spec = spec_for(tmp_path, model={"pretrained": word})
    assert spec.model.pretrained is None


def test_an_image_folder_with_one_class_is_refused(tmp_path, digit_files, sweep_file, run_cli):
    only = tmp_path / "one-class"
    shutil.copytree(digit_files / "folders" / "3", only / "3")
    sweep = sweep_file({"data": {"replace": {"source": "image_folder", "path": str(only)}}})
    code, _, err = run_cli("train", str(sweep), "--epochs", "1")
    assert code == 2
    assert err.startswith(f"{sweep}: data: ") and "at least two classes" in err and "'3'" in err


def _table(tmp_path, rows: list[str]) -> object:
    (tmp_path / "rows.csv").write_text("a,b,target\n" + "\n".join(rows) + "\n")
    return spec_for(tmp_path, data={"replace": {"source": "tabular_csv", "path": "rows.csv", "target": "target",
                                                "task": "regression"}})


def test_infinite_feature_cells_are_read_as_missing_and_named(tmp_path, caplog):
    from hpsweep.train.data.prepare import prepare

    rows = [f"{i % 7},{i % 5 if i != 11 else 'inf'},{i % 7 + 0.5 * (i % 5)}" for i in range(120)]
    with caplog.at_level(logging.WARNING):
        data = prepare(_table(tmp_path, rows))
    for split in (data.train, data.val):
        assert bool(split.x.isfinite().all())
    assert float(data.train.x[:, 1].std()) > 0.5  # the column still carries its information
    assert "column 'b' has 1 infinite value(s), read as missing" in caplog.text


def test_rows_with_a_blank_target_are_left_out_and_the_rest_keep_their_csv_lines(tmp_path, caplog):
    import pandas as pd

    from hpsweep.train.data.prepare import prepare

    rows = [f"{i},{i % 3},{'' if i % 4 == 0 else i * 10}" for i in range(200)]
    with caplog.at_level(logging.WARNING):
        data = prepare(_table(tmp_path, rows))
    assert "50 row(s) with a blank 'target' are left out (the first at line 2)" in caplog.text
    raw = pd.read_csv(tmp_path / "rows.csv")
    assert data.test is not None and len(data.test) > 10
    for row_id, target in zip(data.test.ids, data.test.y.tolist(), strict=True):
        line = int(row_id.split()[1])
        assert raw.iloc[line - 2]["target"] == pytest.approx(target)  # the CSV's own line for that example


def test_a_sweep_whose_every_trial_diverged_exits_non_zero_and_says_so(ray_session, tmp_path, run_cli):
    sweep = tmp_path / "diverge.yaml"
    sweep.write_text(yaml.safe_dump(merged(BASE, {"train": {"epochs": 2}, "search": {"num_trials": 2},
                                                  "space": {"replace": {"lr": {"loguniform": [1.0e5, 1.0e6]},
                                                                        "optimizer": "sgd"}}})))
    code, out, _ = run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                           "--storage", str(tmp_path / "results"))
    assert code == 1
    assert "no usable trial: 2 of 2 diverged" in out


@pytest.mark.parametrize(("argv", "flag"), [
    (["promote", "some-sweep", "--alias", "../x"], "--alias"),
    (["promote", "some-sweep", "--model-name", "a/b"], "--model-name"),
    (["promote", "some-sweep", "--min-improvement", "nan"], "--min-improvement"),
    (["promote", "some-sweep", "--min-improvement", "-1"], "--min-improvement"),
])
def test_bad_promote_flags_stop_before_anything_is_read_or_written(tmp_path, monkeypatch, capsys, argv, flag):
    from hpsweep.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert stopped.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no tracking store, no registry version


def test_predict_into_an_existing_folder_is_refused_before_predicting(tmp_path, run_cli):
    (tmp_path / "out").mkdir()
    code, out, err = run_cli("predict", "models:/none@champion", str(tmp_path), "--out", str(tmp_path / "out"),
                             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 2 and out == ""
    assert err.startswith("hpsweep: --out: ") and "is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())


def test_an_unusable_tracking_uri_or_storage_is_refused_before_anything_starts(sweep_file, run_cli, tmp_path):
    sweep = sweep_file()
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", "foo://x", "--storage", str(tmp_path / "results"))
    assert code == 2 and err.startswith("hpsweep: --tracking-uri: 'foo://x' is not a store MLflow can record to")
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}",
                             "--storage", str(tmp_path / "results"))
    assert code == 2 and err.startswith("hpsweep: --tracking-uri: cannot create the SQLite database")
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                             "--storage", str(tmp_path / "a-file" / "results"))
    assert code == 2 and err.startswith("hpsweep: --storage: cannot use ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "sweep0.yaml"]  # nothing written


@pytest.mark.parametrize("value", ["lots", "-5", "nan", "inf"])
def test_a_bad_free_space_reserve_is_refused_before_anything_starts(sweep_file, run_cli, tmp_path, monkeypatch,
                                                                    value):
    sweep = sweep_file()
    monkeypatch.setenv("HPSWEEP_MIN_FREE_MB", value)
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                           "--storage", str(tmp_path / "results"))
    expected = f"hpsweep: HPSWEEP_MIN_FREE_MB: expected a number of megabytes >= 0, got {value!r}"
    assert code == 2 and err.strip() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep0.yaml"]


def test_a_store_that_fails_to_open_leaves_no_sweep_to_resume(ray_session, sweep_file, run_cli, tmp_path):
    sweep = sweep_file({"train": {"epochs": 1}, "search": {"num_trials": 1}})
    (tmp_path / "broken.db").write_bytes(b"this is not an SQLite database" * 100)
    argv = ["run", str(sweep), "--storage", str(tmp_path / "results")]
    code, _, err = run_cli(*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'broken.db'}")
    assert code == 2 and err.startswith("hpsweep: --tracking-uri: cannot record the sweep in ")
    assert len(err.strip().splitlines()) == 1
    assert list((tmp_path / "results").iterdir()) == []  # no sweep folder marked running
    code, out, _ = run_cli(*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 0 and out.startswith("starting sweep ")  # a new sweep, not a resume of the failed one
