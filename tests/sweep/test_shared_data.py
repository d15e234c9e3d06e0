"""The data is held once per node: every trial reads the same copy in Ray's shared object store instead
of receiving a copy of its own."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.slow


def _private_at_start(run_cli, folder, image_size: int | None) -> tuple[list[float], float]:
    """Two trials at once on the bundled digits: each worker's private memory (USS) when its trainable
    starts (the data received, nothing trained yet), and the data's size, in MB."""
    from mlflow import MlflowClient

    name = f"digits-{image_size or 8}"
    sweep = folder / f"{name}.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": name, "trainable": "memory_probe",
        "data": {"source": "sklearn_digits", **({"image_size": image_size} if image_size else {}),
                 "split": {"train": 0.8, "val": 0.2, "test": 0.0}},
        "model": {"name": "mlp", "hidden_sizes": [4]}, "train": {"epochs": 1, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": 2, "max_concurrent": 2},
        "space": {"lr": {"loguniform": [1.0e-3, 1.0e-2]}, "batch_size": 16}}))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", uri, "--storage", str(folder / "results"))
    assert code == 0, err
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id],
                              filter_string="tags.`mlflow.parentRunId` != ''")
    assert len(runs) == 2
    return [r.data.metrics["worker_private_at_start_mb"] for r in runs], runs[0].data.metrics["data_mb"]


def test_concurrent_trials_share_one_copy_of_the_data(ray_session, tmp_path, run_cli):
    """414 MB of decoded images (the digits at 480x480) against 0.1 MB (at 8x8): the big data adds less
    than a fifth of its size to each worker's private memory. A worker that received its own copy
    (as Ray gives every worker of a torch tensor) would hold all of it privately."""
    tiny, _ = _private_at_start(run_cli, tmp_path, None)
    big, data_mb = _private_at_start(run_cli, tmp_path, 480)
    assert data_mb > 400
    added = max(big) - max(tiny)
    assert added < 0.2 * data_mb, f"each worker holds {added:.0f} MB more of its own for {data_mb:.0f} MB of data"
