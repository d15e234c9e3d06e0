"""The data is held once per node: every trial reads the same copy in Ray's shared object store instead
of receiving a copy of its own."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.slow


def _two_trials(run_cli, folder, name: str, data: dict) -> list[dict[str, float]]:
    """Two trials of the memory probe at once, one epoch each: each one's last report."""
    from mlflow import MlflowClient

    sweep = folder / f"{name}.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": name, "trainable": "memory_probe",
        "data": {**data, "split": {"train": 0.8, "val": 0.2, "test": 0.0}},
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
    return [r.data.metrics for r in runs]


def _private_at_start(run_cli, folder, image_size: int | None) -> tuple[list[float], float]:
    """Two trials at once on the bundled digits: each worker's private memory (USS) when its trainable
    starts (the data received, nothing trained yet), and the data's size, in MB."""
    size = {"image_size": image_size} if image_size else {}
    found = _two_trials(run_cli, folder, f"digits-{image_size or 8}", {"source": "sklearn_digits", **size})
    return [m["worker_private_at_start_mb"] for m in found], found[0]["data_mb"]


def test_concurrent_trials_share_one_copy_of_the_data(ray_session, tmp_path, run_cli):
    """414 MB of decoded images (the digits at 480x480) against 0.1 MB (at 8x8): the big data adds less
    than a fifth of its size to each worker's private memory. A worker that received its own copy
    (as Ray gives every worker of a torch tensor) would hold all of it privately."""
    tiny, _ = _private_at_start(run_cli, tmp_path, None)
    big, data_mb = _private_at_start(run_cli, tmp_path, 480)
    assert data_mb > 400
    added = max(big) - max(tiny)
    assert added < 0.2 * data_mb, f"each worker holds {added:.0f} MB more of its own for {data_mb:.0f} MB of data"


def test_trials_read_an_image_folder_from_the_mapped_cache_without_copying_it(ray_session, tmp_path, run_cli,
                                                                             digit_files):
    """The digit images as files, decoded at 480x480 into the cache (414 MB) against at 8x8 (0.1 MB): two
    trials train an epoch over them at once, and neither copies the dataset into its own memory. What is
    measured is each worker's anonymous memory: the pages of the mapped cache are the page cache's, held
    once however many trials read them; a copy of the data would be anonymous."""
    images = digit_files / "folders"
    tiny = _two_trials(run_cli, tmp_path, "folder-8", {"source": "image_folder", "path": str(images)})
    big = _two_trials(run_cli, tmp_path, "folder-480", {"source": "image_folder", "path": str(images),
                                                         "image_size": 480})
    data_mb = big[0]["data_mb"]
    assert data_mb > 400
    added = max(m["worker_anonymous_mb"] for m in big) - max(m["worker_anonymous_mb"] for m in tiny)
    assert added < 0.3 * data_mb, f"each worker holds {added:.0f} MB more of its own for {data_mb:.0f} MB of data"
