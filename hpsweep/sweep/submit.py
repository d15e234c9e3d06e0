"""Submit a sweep to a Ray cluster as a Ray job: the working directory (with the sweep file and its local
data) is uploaded, and the job runs `hpsweep run` on the head node, logging to the team's MLflow.

The cluster address is the dashboard's HTTP address (`--address`, or RAY_JOBS_ADDRESS / RAY_ADDRESS when
they are http URLs). With token authentication on (RAY_AUTH_MODE=token), the token comes from
RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, as for every Ray client.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsweep.errors import UserError
from hpsweep.spec.sweep_spec import SweepSpec, local_paths

log = logging.getLogger(__name__)

DEFAULT_JOBS_ADDRESS = "http://127.0.0.1:8265"
#: left out of the uploaded working directory: environments, results, local MLflow stores
UPLOAD_EXCLUDES = [".venv/", ".git/", "hpsweep-results/", "mlruns/", "mlartifacts/", "mlflow.db", "__pycache__/",
                   "*.pyc", ".pytest_cache/", ".ruff_cache/", ".hypothesis/"]
JOB_METADATA = "hpsweep.sweep"


class SubmitError(UserError, ValueError):
    """The sweep cannot be submitted as asked; the message names what to change."""


@dataclass(frozen=True)
class SubmittedSweep:
    job_id: str
    sweep: str
    status: str
    entrypoint: str
    started: float | None


def jobs_address(explicit: str | None = None) -> str:
    for candidate in (explicit, os.environ.get("RAY_JOBS_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if candidate and candidate.startswith(("http://", "https://")):
            return candidate.rstrip("/")
    return DEFAULT_JOBS_ADDRESS


def check_uploadable(spec: SweepSpec, sweep_file: Path, workdir: Path) -> Path:
    """The sweep file's path inside the working directory; SubmitError when it, or a relative data
    path of the sweep, lies outside what is uploaded."""
    workdir = workdir.resolve()
    try:
        inside = sweep_file.resolve().relative_to(workdir)
    except ValueError:
        raise SubmitError(f"{sweep_file}: outside the working directory {workdir} that is uploaded; "
                          f"run submit from a folder that holds it (or pass --workdir)") from None
    for name, value in local_paths(spec):
        if Path(value).expanduser().is_absolute():
            continue  # read where the job runs: the cluster's nodes must see this path
        target = spec.resolve_path(value).resolve()
        if not target.exists():
            raise SubmitError(f"{sweep_file}: {name}: {target} does not exist")
        try:
            target.relative_to(workdir)
        except ValueError:
            raise SubmitError(f"{sweep_file}: {name}: {value} is outside the working directory {workdir} that is "
                              f"uploaded; move it under it, or give a path every cluster node can read") from None
    return inside


def submit(spec: SweepSpec, sweep_file: Path, *, workdir: Path, address: str | None = None,
           storage: str | None = None, tracking_uri: str | None = None, run_args: list[str] | None = None) -> str:
    """Upload `workdir` and start `hpsweep run` on the cluster; the job id."""
    from ray.job_submission import JobSubmissionClient

    if storage is not None and not Path(storage).is_absolute():
        raise SubmitError(f"--storage {storage}: the job runs in a temporary folder on the head node; give an "
                          "absolute path that every node mounts (a shared volume), e.g. /shared/hpsweep-results")
    inside = check_uploadable(spec, sweep_file, workdir)
    command = ["hpsweep", "run", inside.as_posix(), *(run_args or [])]
    env: dict[str, str] = {}
    if storage is not None:
        env["HPSWEEP_STORAGE"] = storage
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if os.environ.get("HPSWEEP_DEBUG"):
        env["HPSWEEP_DEBUG"] = os.environ["HPSWEEP_DEBUG"]
    client = JobSubmissionClient(jobs_address(address))
    job_id = client.submit_job(
        entrypoint=shlex.join(command),
        submission_id=f"hpsweep-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        runtime_env={"working_dir": str(workdir.resolve()), "excludes": UPLOAD_EXCLUDES,
                     **({"env_vars": env} if env else {})},
        metadata={JOB_METADATA: spec.name, "hpsweep.experiment": spec.experiment_name},
    )
    log.info("submitted %s as job %s", sweep_file, job_id)
    return job_id


def follow(job_id: str, address: str | None = None, write: Callable[[str], None] = print) -> str:
    """Stream the job's log until it ends; its final status."""
    import asyncio

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(jobs_address(address))

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(stream())
    status = status_name(client.get_job_status(job_id))
    while status in ("PENDING", "RUNNING"):  # the log can end a moment before the status settles
        time.sleep(0.5)
        status = status_name(client.get_job_status(job_id))
    return status


def submitted_sweeps(address: str | None = None, name: str | None = None) -> list[SubmittedSweep]:
    """The cluster's hpsweep jobs, newest first (only those of sweep `name` when given)."""
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(jobs_address(address)).list_jobs()
    found = [SubmittedSweep(j.submission_id or j.job_id or "?", (j.metadata or {})[JOB_METADATA], status_name(j.status),
                            j.entrypoint, j.start_time / 1000 if j.start_time else None)
             for j in jobs if JOB_METADATA in (j.metadata or {})]
    found = [s for s in found if name is None or s.sweep == name]
    return sorted(found, key=lambda s: s.started or 0, reverse=True)


def status_name(status: Any) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    return str(getattr(status, "value", status))
