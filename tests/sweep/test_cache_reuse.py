"""Whatever reads a sweep's images after the first decode maps the same cache: a resumed sweep, a new
run of the same sweep, `hpsweep train` and `hpsweep promote` never decode again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpsweep.train.data.cache import IMAGES_FILE, list_caches

pytestmark = pytest.mark.slow
HPSWEEP = str(Path(sys.executable).with_name("hpsweep"))


def _started(results: Path) -> bool:
    return any(json.loads(p.read_text()).get("starts", 0) >= 1 for p in results.glob("*/hpsweep-sweep.json"))


def test_resume_train_and_promote_reuse_the_cache(ray_session, tmp_path, digit_files):
    cache, results = tmp_path / "cache", tmp_path / "results"
    env = {**os.environ, "HPSWEEP_CACHE": str(cache), "HPSWEEP_STORAGE": str(results),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    sweep = tmp_path / "folder.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "folder", "trainable": "image_classifier",
        "data": {"source": "image_folder", "path": str(digit_files / "folders"), "image_size": 12},
        "model": {"name": "mlp", "hidden_sizes": [8]}, "train": {"epochs": 40, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": 3, "max_concurrent": 2},
        "space": {"lr": {"loguniform": [1.0e-3, 1.0e-2]}, "batch_size": 64}}))

    first = subprocess.Popen([HPSWEEP, "run", str(sweep)], env=env, cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _started(results):
        assert first.poll() is None and time.monotonic() < deadline, "the sweep never started"
        time.sleep(0.1)
    time.sleep(3)  # trials under way
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out
    [built] = list_caches(cache)
    written = (built.folder / IMAGES_FILE).stat()

    def run(*argv: str) -> str:
        done = subprocess.run([HPSWEEP, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "resuming sweep" in run("run", str(sweep))
    run("train", str(sweep), "--set", "train.epochs=1", "--set", "lr=0.005")
    run("promote", "folder")
    assert [c.key for c in list_caches(cache)] == [built.key]  # one cache, never rebuilt or copied
    now = (built.folder / IMAGES_FILE).stat()
    assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
