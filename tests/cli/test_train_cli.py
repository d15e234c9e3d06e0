"""`hpsweep train` and `hpsweep data`: what a user sees in the terminal, and the exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, text_sweep
from hpsweep.train.checkpoint import load_checkpoint


def test_train_prints_a_line_per_epoch_and_saves_the_best(sweep_file, run_cli, tmp_path):
    file = sweep_file({"train": {"epochs": 3}})
    code, out, err = run_cli("train", str(file), "--set", "lr=0.005", "--out", str(tmp_path / "best"))
    assert code == 0, err
    lines = out.splitlines()
    assert "lr=0.005" in lines[1]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert "val_accuracy" in epochs[0] and lines[-1].startswith("completed: best val_accuracy")
    checkpoint = load_checkpoint(tmp_path / "best")
    best_line = [line for line in epochs if line.endswith("*best")][-1]
    assert checkpoint["epoch"] == int(best_line.split()[1].split("/")[0])


def test_train_switching_optimizer_with_set(sweep_file, run_cli):
    file = sweep_file({"train": {"epochs": 1}, "space": {"optimizer": {"choice": {"adam": {}, "sgd": {}}}}})
    code, out, _ = run_cli("train", str(file), "--set", "optimizer=sgd", "--set", "optimizer.sgd.momentum=0.9")
    assert code == 0
    assert "optimizer=sgd  optimizer.sgd.momentum=0.9" in out


def test_train_bad_inputs_exit_2_with_one_line(sweep_file, run_cli, tmp_path):
    bad_set = sweep_file()
    code, _, err = run_cli("train", str(bad_set), "--set", "momentum=0.9")
    assert code == 2 and err.strip().startswith("hpsweep: --set momentum: not a sweep-file section")
    assert len(err.strip().splitlines()) == 1
    missing = sweep_file({"data": {"replace": {"source": "image_folder", "path": "nowhere"}}})
    code, _, err = run_cli("train", str(missing))
    assert code == 2
    assert err.strip() == f"{missing}: data.path: folder not found: {tmp_path / 'nowhere'}"
    wrong_metric = sweep_file({"train": {"metric": "val_rmse"}})
    code, _, err = run_cli("train", str(wrong_metric))
    assert code == 2 and "train.metric: 'val_rmse' is not reported for this data" in err


def test_train_exits_1_when_the_trial_diverges(sweep_file, run_cli):
    file = sweep_file({"space": {"replace": {"lr": 1.0e6, "optimizer": "sgd"}}, "search": {"num_trials": 1}})
    code, out, _ = run_cli("train", str(file))
    assert code == 1 and out.splitlines()[-1].startswith("diverged")


def test_data_exports_feed_the_file_sources(run_cli, tmp_path):
    code, out, _ = run_cli("data", "export-digits", str(tmp_path / "d"), "--layout", "csv")
    assert code == 0 and out.startswith("wrote 1797 digit images")
    assert (tmp_path / "d" / "labels.csv").read_text().splitlines()[0] == "path,label"
    code, out, _ = run_cli("data", "export-diabetes", str(tmp_path / "t" / "diabetes.csv"))
    assert code == 0 and "442 rows" in out


def test_train_on_a_classification_csv_writes_nothing_but_its_progress(tmp_path):
    # a new process: PyTorch warns once per process, so an earlier test may have used up the warning
    rows = [f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}{'xyz'[i % 3]}" for i in range(150)]
    (tmp_path / "table.csv").write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    (tmp_path / "sweep.yaml").write_text(
        "name: table\ntrainable: tabular\n"
        "data: {source: tabular_csv, path: table.csv, target: kind, task: classification}\n"
        "model: {name: mlp, hidden_sizes: [8]}\ntrain: {epochs: 2}\n")
    done = subprocess.run([str(Path(sys.executable).with_name("hpsweep")), "train", "sweep.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stdout
    assert done.stderr == ""


def test_a_reader_that_stops_early_ends_the_command_quietly():
    # 2,000 sampled configs print far more than a pipe holds, so the write after the reader left fails
    command = [str(Path(sys.executable).with_name("hpsweep")), "space", str(REPO / "sweeps" / "digits_cnn.yaml"),
               "--samples", "2000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        code = process.wait(timeout=120)
    assert first.startswith("sweep digits-cnn")
    assert errors == "" and code == 141


def test_train_runs_the_sweeps_own_trainable(tmp_path, run_cli):
    """A plugin trainable (here one that reads its own text data) trains under `hpsweep train` as it
    would in a sweep, not the built-in image loop."""
    sweep = text_sweep(tmp_path, epochs=3)
    code, out, err = run_cli("train", str(sweep), "--set", "C=5")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "training textclf: its trainable reads its own data, config:" and "C=5" in lines[1]
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert lines[-1].startswith("completed: best val_accuracy")
