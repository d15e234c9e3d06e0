"""Cloud credentials in the command's environment stay out of what Ray records about the sweep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.mark.slow
def test_aws_credentials_are_not_handed_to_ray_with_the_trials(sweep_file, tmp_path):
    secret = "hpsweep-test-secret-7f3a9c"
    temp = Path(tempfile.mkdtemp(prefix="hs", dir="/tmp"))  # Ray's session (and its logs) for this run alone
    try:
        env = {**os.environ, "RAY_TMPDIR": str(temp), "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIA0"}
        env.pop("RAY_ADDRESS", None)
        sweep = sweep_file({"train": {"epochs": 1}, "search": {"num_trials": 2}})
        done = subprocess.run([str(Path(sys.executable).with_name("hpsweep")), "run", str(sweep), "--storage",
                               str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        logs = list((temp / "ray").glob("session_*/logs/*"))
        assert logs  # Ray's session logs are where a runtime environment is recorded
        leaked = [p.name for p in [*logs, *tmp_path.rglob("*")] if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaked == []
    finally:
        shutil.rmtree(temp, ignore_errors=True)
