"""The benchmarks keep working: quick mode runs each one end to end and writes the table. Their ratios
are measurements, never test assertions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_in_quick_mode_and_writes_the_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    table = out.read_text()
    for name in ("harness overhead", "per-trial cost", "loop efficiency", "data path", "tracking overhead",
                 "tracking at 8 concurrent trials", "frozen phase", "memory",
                 "search efficiency"):
        assert f"| {name} | " in table, name
    assert "quick mode" in table and "Machine: " in table
