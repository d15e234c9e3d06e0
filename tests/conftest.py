"""Shared helpers: write sweep files from a valid base plus a patch, run the CLI in-process."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpsweep.cli import main

REPO = Path(__file__).resolve().parent.parent
SWEEPS = REPO / "sweeps"

BASE: dict[str, Any] = {
    "name": "t",
    "trainable": "image_classifier",
    "data": {"source": "sklearn_digits"},
    "model": {"name": "mlp"},
    "train": {"epochs": 4, "metric": "val_accuracy"},
    "search": {"algorithm": "tpe", "num_trials": 4},
    "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}},
}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base`; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and "replace" not in value:
            out[key] = merged(out[key], value)
        else:
            out[key] = value.get("replace", value) if isinstance(value, dict) else value
    return out


@pytest.fixture
def sweep_file(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def write(patch: dict[str, Any] | None = None, text: str | None = None, raw: bytes | None = None) -> Path:
        path = tmp_path / f"sweep{next(counter)}.yaml"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text if text is not None else yaml.safe_dump(merged(BASE, patch or {})),
                            encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-image caches of the whole session go to one temporary folder, never the working directory
    (tests of the default location unset HPSWEEP_CACHE themselves)."""
    folder = tmp_path_factory.mktemp("data-cache")
    os.environ["HPSWEEP_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's real digits written once per session in every on-disk layout."""
    from hpsweep.train.data.digits import export_digits

    root = tmp_path_factory.mktemp("digits")
    for layout in ("folders", "csv", "filename"):
        export_digits(root / layout, layout)  # type: ignore[arg-type]
    return root


def text_sweep(folder: Path, epochs: int, trials: int | None = None) -> Path:
    """A sweep of the test plugin's text classifier (a trainable that reads its own data) over 240 short
    documents of token ids, two classes told apart by which tokens they mostly use."""
    import random

    rng = random.Random(0)
    rows = []
    for i in range(240):
        label = i % 2
        tokens = [rng.randrange(50) + 50 * label if rng.random() < 0.7 else rng.randrange(100) for _ in range(12)]
        rows.append(f"{' '.join(map(str, tokens))},{'even' if label == 0 else 'odd'}")
    (folder / "docs.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    sweep = folder / "text.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "textclf", "trainable": "text_classifier",
        "data": {"source": "tabular_csv", "path": "docs.csv", "target": "label", "task": "classification",
                 "features": ["text"]},
        "train": {"epochs": epochs, "metric": "val_accuracy"},
        **({"search": {"algorithm": "random", "num_trials": trials}} if trials else {}),
        "space": {"params": {"C": {"loguniform": [0.01, 10.0]}, "ngram_max": {"choice": [1, 2]}}}}))
    return sweep


def spec_for(tmp: Path, **sections: Any) -> Any:
    """A validated spec whose relative paths resolve against `tmp`."""
    from hpsweep.spec import validate_data

    data = merged(BASE, sections)
    return validate_data(data, str(tmp / "sweep.yaml"), base_dir=tmp)


@pytest.fixture(scope="session")
def ray_session() -> Any:
    """One local Ray for the whole test session (it takes seconds to start), shut down at the end."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    """Debian's Chromium for a test that renders a page; CI installs it and sets HPSWEEP_REQUIRE_CHROMIUM
    so that its absence fails there instead of skipping."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("HPSWEEP_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (HPSWEEP_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return browser


HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    """Poll a server the test started until it answers; fail if it exits or takes too long."""
    import urllib.request

    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"the server behind {url} did not start") from None
            time.sleep(1)


@pytest.fixture
def postgres_mlflow(tmp_path):
    """A fresh PostgreSQL database and an `mlflow server` on it with proxied artifacts; all removed after."""
    import psycopg

    name = f"hpsweep_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(host="127.0.0.1", port=5432, dbname="postgres", user="postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"postgresql://postgres@127.0.0.1:5432/{name}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        yield f"http://127.0.0.1:{port}", name
    finally:
        try:
            if server.poll() is None:
                os.killpg(server.pid, 15)
                server.wait(timeout=30)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()
