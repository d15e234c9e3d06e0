"""`hpsweep validate`: exit 2 with one line per problem, `FILE: field.path: message`, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SWEEPS

# (expected field path, fragment of the message, patch applied to a valid sweep)
BAD_CONFIGS = [
    ("space.lrr", "did you mean 'lr'", {"space": {"lrr": 0.1}}),
    ("trian", "did you mean 'train'", {"trian": {"epochs": 3}}),
    ("search.num_trails", "did you mean 'num_trials'", {"search": {"num_trails": 3}}),
    ("train.epochs", "should be a valid integer", {"train": {"epochs": "ten"}}),
    ("space.batch_size", "must be an integer", {"space": {"batch_size": 12.5}}),
    ("space.lr", "loguniform bounds must be > 0", {"space": {"lr": {"loguniform": [0, 0.1]}}}),
    ("space.lr", "loguniform bounds must be > 0", {"space": {"lr": {"loguniform": [-1, 0.1]}}}),
    ("space.dropout", "low must be below high", {"space": {"dropout": {"uniform": [0.5, 0.1]}}}),
    ("space.dropout", "low must be below high", {"space": {"dropout": {"uniform": [0.2, 0.2]}}}),
    ("space.batch_size", "low must be below high", {"space": {"batch_size": {"int": [64, 16]}}}),
    ("space.batch_size.choice", "at least 1 item", {"space": {"batch_size": {"choice": []}}}),
    ("space.batch_size", "twice", {"space": {"batch_size": {"choice": [32, 32]}}}),
    ("space.dropout", "< 1", {"space": {"dropout": {"uniform": [0.0, 1.5]}}}),
    ("space.lr", "did you mean 'loguniform'", {"space": {"lr": {"replace": {"logunifrom": [0.1, 0.2]}}}}),
    ("space.lr", "exactly one of", {"space": {"lr": {"uniform": [0.1, 0.2]}}}),
    ("space.lr.uniform", "takes two bounds", {"space": {"lr": {"replace": {"uniform": [0.1]}}}}),
    ("space.batch_size", "step", {"space": {"batch_size": {"int": [16, 100], "step": 16}}}),
    ("space.optimizer.name", "did you mean 'adam'", {"space": {"optimizer": "adma"}}),
    ("space.optimizer.choice.sgdd", "did you mean 'sgd'", {"space": {"optimizer": {"choice": {"sgdd": {}}}}}),
    ("space.scheduler.name", "did you mean 'cosine'", {"space": {"scheduler": {"name": "cosin"}}}),
    ("space.optimizer.choice.adam.momentum", "adam does not take 'momentum'",
     {"space": {"optimizer": {"choice": {"adam": {"momentum": {"uniform": [0.8, 0.9]}}, "sgd": {}}}}}),
    ("space.scheduler.warmup_epochs", "onecycle does not take 'warmup_epochs'",
     {"space": {"scheduler": {"name": "onecycle", "warmup_epochs": 1}}}),
    ("space.scheduler.step_size", "required", {"space": {"scheduler": "step"}}),
    ("model.name", "did you mean 'resnet18'", {"model": {"name": "resnet19"}}),
    ("trainable", "did you mean 'image_classifier'", {"trainable": "image_clasifier"}),
    ("data.source", "did you mean 'image_folder'", {"data": {"replace": {"source": "imagefolder", "path": "x"}}}),
    ("data.path", "required", {"data": {"replace": {"source": "image_folder"}}}),
    ("data.pattern", "(?P<label>", {"data": {"replace": {"source": "filename_labels", "path": "x",
                                                          "pattern": r"(\d+)\.jpg"}}}),
    ("data.split", "add up to 1", {"data": {"split": {"train": 0.8, "val": 0.2, "test": 0.2}}}),
    ("search.num_trials", "greater than or equal to 1", {"search": {"num_trials": 0}}),
    ("search.num_trials", "greater than or equal to 1", {"search": {"num_trials": -3}}),
    ("search.algorithm", "did you mean 'random'", {"search": {"algorithm": "randm"}}),
    ("search.startup_trials", "random does not model past trials",
     {"search": {"algorithm": "random", "startup_trials": 2}}),
    ("search.startup_trials", "4 start-up trials leave none of the 4 trials to tpe", {"search": {"startup_trials": 4}}),
    ("search.startup_trials", "leave none of the 10 trials", {"search": {"num_trials": None, "startup_trials": 12}}),
    ("search.startup_trials", "greater than or equal to 1", {"search": {"startup_trials": 0}}),
    ("search.time_budget", "duration", {"search": {"time_budget": "ten minutes"}}),
    ("search.warm_start", "grid search tries every point",
     {"search": {"algorithm": "grid", "warm_start": "auto", "num_trials": 2},
      "space": {"replace": {"lr": {"choice": [0.1, 0.01]}}}}),
    ("search.warm_start", "unknown value 'always'", {"search": {"warm_start": "always"}}),
    ("train.checkpoint_every", "duration", {"train": {"checkpoint_every": "often"}}),
    ("train.checkpoint_every", "greater than or equal to 0", {"train": {"checkpoint_every": -1}}),
    ("search.scheduler.name", "did you mean 'asha'", {"search": {"scheduler": "ashaa"}}),
    ("resources.gpu", "workers: 2 and gpu: 1", {"resources": {"gpu": 1.5}}),
    ("resources.gpu", "a GPU of its own", {"resources": {"workers": 2, "gpu": 0.5}}),
    ("resources.workers", "greater than or equal to 1", {"resources": {"workers": 0}}),
    ("resources.cpu", "greater than 0", {"resources": {"cpu": 0}}),
    ("registry.alias", "should match", {"registry": {"alias": "my alias"}}),
    ("name", "letters, digits", {"name": "my sweep!"}),
    ("model.pretrained", "models:/NAME@ALIAS", {"model": {"pretrained": "models:/digits"}}),
    # constraints that no trial (or not every trial) could satisfy
    ("space.freeze_epochs", "must be < train.epochs (4)", {"space": {"freeze_epochs": {"int": [0, 4]}}}),
    ("space.freeze_epochs", "must be < train.epochs (4)", {"space": {"freeze_epochs": 6}}),
    ("space.scheduler.choice.cosine.warmup_epochs", "must be < train.epochs",
     {"space": {"scheduler": {"choice": {"none": {}, "cosine": {"warmup_epochs": {"int": [1, 5]}}}}}}),
    ("space.scheduler.milestones", "must be < train.epochs",
     {"space": {"scheduler": {"name": "multistep", "milestones": [2, 9]}}}),
    ("space.scheduler.milestones", "must increase",
     {"space": {"scheduler": {"name": "multistep", "milestones": [3, 2]}}}),
    ("search.scheduler.grace_period", "<= train.epochs",
     {"search": {"scheduler": {"name": "asha", "grace_period": 9}}}),
    ("space.optimizer.nesterov", "needs momentum > 0",
     {"space": {"optimizer": {"name": "sgd", "nesterov": True, "momentum": {"uniform": [0.0, 0.9]}}}}),
    ("space.lr", "grid search needs finite values", {"search": {"algorithm": "grid"}}),
    ("space.optimizer.choice.sgd.momentum", "grid search needs finite values",
     {"search": {"algorithm": "grid"}, "space": {"replace": {
         "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.5, 0.9]}}}}}}}),
    ("train.mode", "one mode per metric", {"train": {"metric": ["val_accuracy", "val_loss"], "mode": ["max"]}}),
    ("space.lr", "write {choice: [0.1, 0.01]}", {"space": {"lr": {"replace": [0.1, 0.01]}}}),
    ("search.num_trials", "only 2 distinct", {"search": {"algorithm": "grid", "num_trials": 5},
                                              "space": {"replace": {"batch_size": {"choice": [16, 32]}}}}),
    ("search.algorithm", "nsga2 optimises several metrics", {"search": {"algorithm": "nsga2"}}),
    ("search.scheduler", "use fifo", {"train": {"metric": ["val_accuracy", "val_loss"]},
                                      "search": {"scheduler": "asha"}}),
    ("space", "nothing is searched", {"space": {"replace": {"lr": 0.01}}}),
    ("model.name", "only mlp fits", {"trainable": "tabular", "model": {"name": "cnn"},
                                     "data": {"replace": {"source": "tabular_csv", "path": "d.csv",
                                                          "target": "y", "task": "regression"}}}),
    ("model.pretrained", "imagenet weights exist for", {"model": {"pretrained": "imagenet"}}),
]


@pytest.mark.parametrize(("path", "fragment", "patch"), BAD_CONFIGS, ids=[f"{c[0]}:{c[1]}" for c in BAD_CONFIGS])
def test_bad_config_names_its_field(sweep_file, run_cli, path, fragment, patch):
    file = sweep_file(patch)
    code, out, err = run_cli("validate", str(file))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{file}: {path}: "), err
    assert fragment in lines[0]
    assert out == ""


RAW_FILES = [
    ("duplicate key", "name: a\nname: b\ntrainable: image_classifier\ndata: {source: sklearn_digits}\n",
     "name: line 2: duplicate key 'name'"),
    ("nested duplicate", "name: a\ntrainable: image_classifier\ndata: {source: sklearn_digits}\n"
     "space:\n  lr: 0.1\n  lr: 0.2\n", "space.lr: line 6: duplicate key 'lr'"),
    ("python tag", "name: !!python/object/apply:os.system ['echo hi']\n", "'tag:yaml.org,2002:python/object/apply"),
    ("custom tag", "name: !secret x\n", "YAML tag '!secret' is not allowed"),
    ("not yaml", "name: [unclosed\n", "not valid YAML"),
    ("not a mapping", "- a\n- b\n", "a sweep file is a YAML mapping of sections, got a list"),
    ("empty", "", "file is empty"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), RAW_FILES, ids=[c[0] for c in RAW_FILES])
def test_unreadable_files_get_one_line(sweep_file, run_cli, case, text, fragment):
    file = sweep_file(text=text)
    code, _, err = run_cli("validate", str(file))
    assert code == 2
    assert err.startswith(f"{file}: ")
    assert fragment in err
    assert "Traceback" not in err


def test_non_utf8_and_oversized_files_are_refused(sweep_file, run_cli):
    latin1 = sweep_file(raw="name: caf\xe9\n".encode("latin-1"))
    huge = sweep_file(text="name: x\n" + "# padding\n" * 120_000)
    code, _, err = run_cli("validate", str(latin1), str(huge))
    assert code == 2
    assert f"{latin1}: not UTF-8 text" in err
    assert f"{huge}: file is " in err and "at most" in err


def test_missing_file_and_empty_folder(tmp_path, run_cli):
    code, _, err = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read file" in err
    code, _, err = run_cli("validate", str(tmp_path))
    assert code == 2 and "no .yaml files" in err


def test_every_problem_is_reported_at_once(sweep_file, run_cli):
    file = sweep_file({
        "trainable": "image_clasifier",
        "search": {"num_trials": 0},
        "resources": {"gpu": 2.5},
        "space": {"lrr": 0.1, "dropout": {"uniform": [0.9, 0.1]}, "freeze_epochs": {"int": [0, 9]}},
    })
    code, _, err = run_cli("validate", str(file))
    assert code == 2
    paths = [line.split(": ")[1] for line in err.strip().splitlines()]
    assert sorted(paths) == sorted([
        "trainable", "search.num_trials", "resources.gpu", "space.lrr", "space.dropout", "space.freeze_epochs",
    ])


def test_valid_and_invalid_files_together(sweep_file, run_cli):
    good, bad = sweep_file(), sweep_file({"space": {"lr": {"loguniform": [0, 1]}}})
    code, out, err = run_cli("validate", str(good), str(bad))
    assert code == 2
    assert out.startswith(f"{good}: ok (4 trials, tpe search, the first trial at random, 1 searched parameters)")
    assert err.startswith(f"{bad}: space.lr: ")


def test_console_script_exits_2_without_traceback(tmp_path):
    """The installed `hpsweep` command, as a user runs it, on files it has never seen."""
    (tmp_path / "a.yaml").write_text("name: a\ntrainable: image_classifier\ndata: {source: mnist}\n"
                                     "space: {lr: {uniform: [1, 0]}, optimizer: {name: adam, momentum: 0.9}}\n")
    (tmp_path / "b.yaml").write_text("name: b\ntrainable: tabular\ndata: {source: tabular_csv, path: x.csv, "
                                     "target: y, task: regresion}\nsearch: {algorithm: grid}\n")
    script = Path(sys.executable).with_name("hpsweep")
    result = subprocess.run([str(script), "validate", str(tmp_path)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert lines == [
        f"{a}: data.source: unknown data source 'mnist' (choose from: sklearn_digits, image_folder, "
        "csv_annotations, filename_labels, tabular_csv)",
        f"{a}: space.lr: low must be below high (got low 1.0, high 0.0)",
        f"{a}: space.optimizer.momentum: adam does not take 'momentum' (it takes: beta1, beta2, lr, weight_decay)",
        f"{b}: data.task: unknown value 'regresion'; did you mean 'regression'? (choose from: classification, "
        "regression)",
    ]


def test_validate_stays_light(tmp_path):
    """Checking a file must not load torch, Ray or MLflow: it is the command an editor or a hook runs often."""
    code = ("import sys; from hpsweep.cli import main; rc = main(['validate', sys.argv[1]]); "
            "heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules]; "
            "print('heavy:', heavy); sys.exit(rc)")
    sweep = SWEEPS / "smoke.yaml"
    result = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("heavy: []")
