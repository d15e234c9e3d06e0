"""Ray for one sweep, started and stopped on a thread of its own so that neither waits in line.

Starting a local Ray takes 3-4 s on a 2-core machine, mostly waiting for its processes to come up;
stopping it about 1.5 s. The CLI starts it before it imports the driver (torch, MLflow, Ray Tune: about
3 s), the driver prepares the data while it comes up, and writes the sweep's report while it stops.
The thread lives from the start to the end of Ray: Ray asks the kernel to end its processes when the
thread that started them ends, so it must not end first.

A Ray already running is joined instead, and left running: RAY_ADDRESS's, or the one `ray start`
left on this machine (as `ray.init()` itself finds it). Later sweeps then skip Ray's start and stop.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)
CLOSE_WAIT_S = 5.0  #: how long close() waits for a join of RAY_ADDRESS that has not finished
#: glibc malloc arenas each process of a started Ray may have (glibc's default: 8 per core). Each thread
#: that allocates gets an arena of its own up to that limit, and what one frees stays in it: a trial
#: worker (Ray's threads, the trial's training thread) held 67-99 MB in them while the demo trained.
#: Capped at 2 the demo's peak memory was 0.946 and 0.958 of glibc's default in two runs, its time the
#: same (`python -m bench.run --only arenas`, bench/RESULTS-peer.md). The driver, whose decoding threads
#: would contend for them, keeps glibc's default.
MALLOC_ARENAS = "2"


class RaySession:
    """Joins RAY_ADDRESS's cluster, or starts a local Ray with this machine's CPUs, as soon as it is made."""

    def __init__(self, verbose: bool, preload: tuple[list[str], int] | None = None) -> None:
        self.verbose = verbose
        #: for a local start: the modules each worker imports before it takes work, and how many workers
        #: Ray starts ahead of time and keeps when idle (workers.trial_preload)
        self.preload = preload
        self.started = False  #: whether this session started Ray (it then stops it)
        self.joined: str | None = None  #: the address of the running Ray this session joined
        self.seconds = 0.0  #: how long starting or joining took
        self._error: BaseException | None = None
        self._given_up = False  #: close() stopped waiting for a join that did not finish
        #: joining RAY_ADDRESS's cluster, which can hang in Ray's retries (a local start cannot)
        self._joining = os.environ.get("RAY_ADDRESS", "") not in ("", "local")
        self._up, self._stop, self._down = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, name="hpsweep-ray", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until Ray is up; raises what starting it raised."""
        self._up.wait()
        if self._error is not None:
            raise self._error

    def describe(self) -> str:
        """What the session did, for the terminal (once `wait` returned)."""
        if self.joined is not None:
            return f"Ray: joined the running Ray at {self.joined} in {self.seconds:.1f} s (it is left running)"
        if self.started:
            return f"Ray: started a local Ray with {os.cpu_count()} CPUs in {self.seconds:.1f} s"
        return "Ray: already initialised in this process"

    def stop(self) -> None:
        """Begin stopping Ray (if this session started it) and return at once."""
        self._stop.set()

    def close(self) -> None:
        """Stop Ray and wait until it has stopped. A local start under way (an interrupt while Ray comes up)
        is waited for, so that what it started is stopped; a join of RAY_ADDRESS under way is given a few
        seconds, never longer: Ray retries an address for minutes, and a join starts no process here."""
        self._stop.set()
        if not self._joining:  # a local start finishes in seconds, and must, to stop what it started
            self._up.wait()
        if self._up.wait(0 if self._given_up else CLOSE_WAIT_S):
            self._down.wait()
        else:
            self._given_up = True  # later calls (the caller's `finally`) do not wait again

    def _hold(self) -> None:
        began = time.monotonic()
        try:
            self.started, self.joined = _ensure_ray(self.verbose, self.preload)
            self.seconds = time.monotonic() - began
        except BaseException as exc:  # handed to the caller by wait()
            self._error = exc
        finally:
            self._up.set()
        self._stop.wait()
        try:
            if self.started:
                import ray

                ray.shutdown()
        except Exception as exc:  # a Ray that will not stop cleanly still ends with this process
            log.warning("stopping Ray: %s: %s", type(exc).__name__, exc)
        finally:
            self._down.set()


def _ensure_ray(verbose: bool, preload: tuple[list[str], int] | None = None) -> tuple[bool, str | None]:
    """Join RAY_ADDRESS's cluster or the Ray `ray start` left running here, or else start a local Ray with
    this machine's CPUs (its workers loading `preload`'s modules as they start). Returns (whether this
    session started Ray, the address it joined)."""
    from hpsweep.compat import environment_default, import_ray_without_driver_signal_dump, lean_local_ray

    import_ray_without_driver_signal_dump()
    import ray

    if ray.is_initialized():
        return False, None
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
             "include_dashboard": False}
    if (address := os.environ.get("RAY_ADDRESS")) and address != "local":
        check_reachable(address)
        ray.init(address=address, **quiet)
        return False, address
    if (address := running_local_ray()) is not None:
        # found by Ray itself (address None), which also takes up the token `ray start` authenticates with
        ray.init(address=None, **quiet)
        return False, address
    # PyTorch Lightning's switch that Ray Tune would give each trial actor as a runtime environment (which
    # make_tuner drops, see compat.trial_actors_without_runtime_env): here the local workers inherit it
    os.environ.setdefault("PL_DISABLE_FORK", "1")
    config = {} if preload is None else {"preload_python_modules": preload[0], "num_workers_soft_limit": preload[1]}
    # "local": even where `ray start` left a record
    with lean_local_ray(log_monitor=verbose), environment_default("MALLOC_ARENA_MAX", MALLOC_ARENAS):
        ray.init(address="local", num_cpus=os.cpu_count(), _system_config=config, **quiet)
    return True, None


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """UserError naming RAY_ADDRESS when nothing answers at its host and port (Ray itself would retry for
    minutes before failing with a ConnectionError); `auto` and other forms are left to Ray."""
    import socket

    from hpsweep.errors import UserError

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"RAY_ADDRESS: no Ray cluster answers at {address} ({exc.strerror or exc}); "
                        f"unset it to start a local Ray") from None


def running_local_ray() -> str | None:
    """The address of the Ray that `ray start` left running on this machine (the one `ray.init()` joins),
    or None. An address whose Ray is gone (its processes were killed without `ray stop`) is ignored."""
    from hpsweep.compat import recorded_local_ray

    try:
        return recorded_local_ray()
    except Exception as exc:  # a Ray whose internals moved: start our own, as before
        log.warning("could not look for a running local Ray (%s: %s); starting one", type(exc).__name__, exc)
        return None
