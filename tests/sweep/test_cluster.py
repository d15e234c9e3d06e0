"""The team stack: the compose file agrees with the project, and the same topology run natively here:
PostgreSQL + an `mlflow server` with proxied artifacts + a Ray head and a second Ray node with token
authentication, a sweep submitted as a Ray job, then promoted on that server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.common import stop_ray_start
from conftest import REPO, free_port

BIN = Path(sys.executable).parent


def _compose(*args: str, env_file: str | None = ".env.example") -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", *(["--env-file", env_file] if env_file else []), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "RAY_AUTH"))})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        if os.environ.get("HPSWEEP_REQUIRE_COMPOSE"):
            pytest.fail("docker-compose is not installed (.ci/run installs Debian's package)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    done = _compose("config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_file_is_valid_and_agrees_with_the_project(compose):
    from hpsweep.sweep.submit import DEFAULT_JOBS_ADDRESS

    env = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker"}

    postgres = services["postgres"]
    assert "healthcheck" in postgres and any(v["source"] == "pgdata" for v in _volumes(postgres))
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert f"--backend-store-uri=postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/" \
           f"{env['POSTGRES_DB']}" in command
    assert "--serve-artifacts" in command
    destination = re.search(r"--artifacts-destination=(\S+)", command).group(1)
    assert destination in [v["target"] for v in _volumes(mlflow)]  # artifacts kept on a volume
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy" and "healthcheck" in mlflow
    assert _published(mlflow, 5000) == int(env["MLFLOW_PORT"])

    head, worker = services["ray-head"], services["ray-worker"]
    assert _published(head, 8265) == int(env["RAY_DASHBOARD_PORT"]) == int(DEFAULT_JOBS_ADDRESS.rsplit(":", 1)[1])
    for node in (head, worker):
        environment = node["environment"]
        assert environment["RAY_AUTH_MODE"] == "token" and environment["RAY_AUTH_TOKEN"] == env["RAY_AUTH_TOKEN"]
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        shared = [v for v in _volumes(node) if v.get("source") == "results"]
        assert shared and environment["HPSWEEP_STORAGE"].startswith(shared[0]["target"] + "/")
        assert node["build"]["context"] == str(REPO)
    assert "--head" in head["command"] and "ray-head:6379" in worker["command"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert "container_name" not in worker and "ports" not in worker  # --scale ray-worker=N works

    # every credential comes from .env, which git never sees
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    referenced = set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text()))
    assert referenced <= set(env), referenced - set(env)
    missing = _compose("config", env_file=None)
    assert missing.returncode != 0 and "in .env" in missing.stderr


def _volumes(service: dict[str, Any]) -> list[dict[str, str]]:
    """source and target of each volume, whichever syntax docker-compose printed them in"""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            volume = {"source": source, "target": target}
        out.append(volume)
    return out


def _published(service: dict[str, Any], target: int) -> int:
    (port,) = [p for p in service["ports"] if int(p["target"]) == target]
    return int(port["published"])


# ---------------------------------------------------------------- the native topology

TOKEN = "5f2b8c0e9d4a71c36e58b0f1a2d3c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5"


@pytest.fixture
def ray_cluster() -> Iterator[dict[str, str]]:
    """A Ray head (with the dashboard and Jobs API) and a second node, token authentication on; the
    environment a client needs to talk to it. Every process is stopped afterwards, also on failure."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = free_port(), free_port()
    # short temp dirs (Ray's socket paths have a length limit); one per node, as on separate hosts
    temps = [tempfile.mkdtemp(prefix="hr", dir="/tmp") for _ in range(2)]
    # and what the nodes' Python processes leave in TMPDIR when they are stopped goes with them
    scratch = tempfile.mkdtemp(prefix="hpsweep-cluster-")
    env["TMPDIR"] = scratch
    started: list[subprocess.Popen[bytes]] = []

    def node(*args: str, temp: str) -> None:
        ports = [free_port() for _ in range(4)]
        started.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--num-cpus=1", f"--temp-dir={temp}",
             f"--dashboard-agent-listen-port={ports[0]}", f"--dashboard-agent-grpc-port={ports[1]}",
             f"--metrics-export-port={ports[2]}", f"--runtime-env-agent-port={ports[3]}", "--disable-usage-stats",
             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    try:
        node("--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             "--include-dashboard=true", temp=temps[0])
        _wait_for(lambda: _alive_nodes(env, gcs) >= 1, started)
        node(f"--address=127.0.0.1:{gcs}", temp=temps[1])
        _wait_for(lambda: _alive_nodes(env, gcs) >= 2, started)
        yield {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "address": f"http://127.0.0.1:{dashboard}"}
    finally:
        stop_ray_start(*started)
        for temp in [*temps, scratch]:
            shutil.rmtree(temp, ignore_errors=True)


def _alive_nodes(env: dict[str, str], gcs: int) -> int:
    done = subprocess.run([str(BIN / "ray"), "status", f"--address=127.0.0.1:{gcs}"], env=env,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.split("Pending:")[0].count(" node_") if done.returncode == 0 else 0


def _wait_for(ready: Any, started: list[subprocess.Popen[bytes]], seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not ready():
        if time.time() > deadline or any(p.poll() is not None for p in started):
            raise RuntimeError("the Ray cluster did not come up")
        time.sleep(1)


@pytest.mark.slow
def test_a_submitted_sweep_runs_on_the_cluster_and_promotes_on_the_server(postgres_mlflow, ray_cluster, tmp_path):
    import mlflow
    import psycopg
    from mlflow import MlflowClient

    uri, database = postgres_mlflow
    client_env = {**os.environ, "RAY_AUTH_MODE": ray_cluster["RAY_AUTH_MODE"],
                  "RAY_AUTH_TOKEN": ray_cluster["RAY_AUTH_TOKEN"], "RAY_JOBS_ADDRESS": ray_cluster["address"]}
    client_env.pop("RAY_ADDRESS", None)
    client_env.pop("MLFLOW_TRACKING_URI", None)

    def hpsweep(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "hpsweep"), *args], cwd=REPO, env=client_env, capture_output=True,
                              text=True, timeout=400)

    refused = hpsweep("submit", "sweeps/smoke.yaml", "--storage", "relative/results")
    assert refused.returncode == 2 and "absolute path that every node mounts" in refused.stderr

    shared = tmp_path / "shared"
    done = hpsweep("submit", "sweeps/smoke.yaml", "--follow", "--storage", str(shared), "--tracking-uri", uri,
                   "--trials", "3", "--set", "train.epochs=2")
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = re.search(r"as job (\S+) to", done.stdout).group(1)
    assert f"job {job_id}: SUCCEEDED" in done.stdout
    listed = hpsweep("status", "--address", ray_cluster["address"])
    assert re.search(rf"{re.escape(job_id)}\s+smoke\s+SUCCEEDED", listed.stdout), listed.stdout

    with psycopg.connect(host="127.0.0.1", dbname=database, user="postgres") as db, db.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(cursor.fetchall()) == {"FINISHED": 4}  # the parent and three trials, in PostgreSQL
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    best = next(r for r in runs if r.info.run_id == parent.data.tags["hpsweep.best_run_id"])
    assert best.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the job never wrote to a disk path
    checkpoint = Path(mlflow.artifacts.download_artifacts(run_id=best.info.run_id, artifact_path="checkpoint",
                                                          tracking_uri=uri, dst_path=str(tmp_path / "dl")))
    assert any(checkpoint.iterdir())
    assert (shared / next(iter(os.listdir(shared)))).is_dir()  # Ray Tune's state went to the shared folder

    promoted = hpsweep("promote", "smoke", "--tracking-uri", uri)
    assert promoted.returncode == 0, promoted.stderr
    assert client.get_model_version_by_alias("smoke", "champion").version == "1"


def test_submit_uploads_only_what_the_sweep_can_find_in_the_working_folder(tmp_path, run_cli):
    from conftest import BASE, merged

    work = tmp_path / "work"
    (work / "sweeps").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("a,target\n1,2\n")
    sweep = work / "sweeps" / "tab.yaml"
    data = {"source": "tabular_csv", "path": "../../outside.csv", "target": "target", "task": "regression"}
    sweep.write_text(yaml.safe_dump(merged(BASE, {"trainable": "tabular", "data": {"replace": data},
                                                  "train": {"metric": "val_rmse"}, "model": None})))
    argv = ("submit", str(sweep), "--workdir", str(work), "--address", "http://127.0.0.1:9")
    code, _, err = run_cli(*argv)
    assert code == 2
    assert err.strip() == (f"hpsweep: {sweep}: data.path: ../../outside.csv is outside the working directory {work} "
                           "that is uploaded; move it under it, or give a path every cluster node can read")
    code, _, err = run_cli("submit", str(sweep), "--workdir", str(work / "sweeps" / "nowhere"))
    assert code == 2 and "outside the working directory" in err
    (work / "data").mkdir()
    (tmp_path / "outside.csv").rename(work / "data" / "in.csv")
    sweep.write_text(sweep.read_text().replace("../../outside.csv", "../data/in.csv"))
    code, _, err = run_cli(*argv)  # now only the cluster is missing
    assert code == 2 and err.startswith("hpsweep: --address: no Ray jobs API at http://127.0.0.1:9")
