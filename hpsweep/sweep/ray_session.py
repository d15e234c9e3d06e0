"""Ray for one sweep, started and stopped on a thread of its own so that neither waits in line.

Starting a local Ray takes about 3 s on a 2-core machine, mostly waiting for its processes to come up;
stopping it about 1.5 s. The driver prepares the data while Ray starts, and writes the sweep's report
while Ray stops. The thread lives from the start to the end of Ray: Ray asks the kernel to end its
processes when the thread that started them ends, so it must not end first.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


class RaySession:
    """Joins RAY_ADDRESS's cluster, or starts a local Ray with this machine's CPUs, as soon as it is made."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.started = False  #: whether this session started Ray (it then stops it)
        self._error: BaseException | None = None
        self._up, self._stop, self._down = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, name="hpsweep-ray", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until Ray is up; raises what starting it raised."""
        self._up.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Begin stopping Ray (if this session started it) and return at once."""
        self._stop.set()

    def close(self) -> None:
        """Stop Ray and wait until it has stopped."""
        self._stop.set()
        self._down.wait()

    def _hold(self) -> None:
        try:
            self.started = _ensure_ray(self.verbose)
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


def _ensure_ray(verbose: bool) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local Ray with this machine's CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
             log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    return True
