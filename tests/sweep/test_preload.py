"""A Ray that a sweep starts for itself starts its trial workers ahead of time, with what a trial imports
already loaded, and as many as the sweep runs at once: the first trials skip torch's import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import spec_for


def test_preload_names_the_trial_side_and_the_trainables_module(tmp_path):
    modules, _ = trial_preload_of(tmp_path)
    assert modules == ["hpsweep.sweep.preload", "trainables.image_classifier"]  # the trainable's: not loaded here


def test_the_preload_loads_what_a_trial_imports_and_leaves_the_collector_running():
    # a process of its own, as a Ray worker is: this one has torch loaded already
    script = textwrap.dedent("""
        import gc, sys
        import hpsweep.sweep.preload
        wanted = ("torch", "torch._dynamo", "ray.tune.trainable.function_trainable", "hpsweep.sweep.worker")
        print([name for name in wanted if name not in sys.modules], gc.isenabled(), gc.get_freeze_count())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    missing, running, frozen = done.stdout.split()[-3:]
    assert (missing, running) == ("[]", "True")  # a worker left without its collector would grow over a sweep
    assert int(frozen) > 100_000  # what was imported is out of later collections' way


def test_as_many_workers_start_ahead_as_trials_run_at_once(tmp_path):
    cpus = os.cpu_count() or 1
    assert trial_preload_of(tmp_path, resources={"cpu": 1})[1] == min(cpus, 4)  # the base sweep has 4 trials
    assert trial_preload_of(tmp_path, resources={"cpu": cpus})[1] == 1  # one trial takes every CPU
    assert trial_preload_of(tmp_path, resources={"cpu": 1}, search={"max_concurrent": 1})[1] == 1
    assert trial_preload_of(tmp_path, resources={"cpu": 1}, search={"num_trials": 1})[1] == 1


def test_imports_without_the_collector_resume_it_however_the_block_ends():
    import gc

    from hpsweep.loading import without_gc

    assert gc.isenabled()
    with pytest.raises(ImportError), without_gc():
        assert not gc.isenabled()
        import hpsweep_no_such_module  # noqa: F401
    assert gc.isenabled()  # a driver left without its collector would grow over a long sweep
    gc.disable()
    try:
        with without_gc():
            pass
        assert not gc.isenabled()  # paused by someone else: left to them
    finally:
        gc.enable()


def test_a_module_imported_already_is_not_imported_again_nor_anything_frozen():
    import gc

    from hpsweep.loading import import_without_gc

    frozen = gc.get_freeze_count()
    assert import_without_gc("hpsweep.loading").import_without_gc is import_without_gc
    assert gc.get_freeze_count() == frozen  # a second sweep in one process keeps its garbage collectable


def trial_preload_of(tmp_path, **sections):
    from hpsweep.sweep.workers import trial_preload

    return trial_preload(spec_for(tmp_path, **sections))


def _in_a_process_of_its_own(script: str, tmp_path) -> subprocess.CompletedProcess[str]:
    """Run `script` in a Python process without RAY_ADDRESS, so that a RaySession there starts a Ray of its
    own beside the test session's (and without MALLOC_ARENA_MAX, as most users run); it must succeed."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MALLOC_ARENA_MAX")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_a_started_ray_hands_actors_workers_that_already_loaded_the_modules(tmp_path):
    # in a process of its own: the test session shares one Ray, and this starts another
    script = textwrap.dedent("""
        import os, sys
        from hpsweep.sweep.ray_session import RaySession
        session = RaySession(False, (["colorsys", "hpsweep.sweep.worker"], 1))
        session.wait()
        import ray

        @ray.remote(num_cpus=1)
        class Probe:
            def loaded(self):
                return [name for name in ("colorsys", "hpsweep.sweep.worker", "torch") if name in sys.modules]

        print(ray.get(Probe.remote().loaded.remote()), session.started)
        session.close()
    """)
    done = _in_a_process_of_its_own(script, tmp_path)
    # colorsys is imported by nothing else; hpsweep.sweep.worker imports torch
    assert done.stdout.strip().splitlines()[-1] == "['colorsys', 'hpsweep.sweep.worker', 'torch'] True"


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_a_started_ray_runs_no_monitor_or_dashboard_and_a_log_monitor_only_when_output_is_forwarded(tmp_path,
                                                                                                  verbose):
    # the log monitor is what forwards workers' output to the terminal, which --verbose asks for
    script = textwrap.dedent(f"""
        import os, subprocess
        from hpsweep.sweep.ray_session import RaySession
        session = RaySession({verbose})
        session.wait()
        import ray

        print(ray.get(ray.remote(lambda: 6 * 7).remote()), session.started)
        print(subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True,
                             text=True).stdout)
        session.close()
    """)
    done = _in_a_process_of_its_own(script, tmp_path)
    assert done.stdout.splitlines()[0] == "42 True"
    children = done.stdout
    assert "gcs_server" in children and "raylet" in children
    assert ("log_monitor.py" in children) is verbose
    assert "autoscaler/_private/monitor.py" not in children and "dashboard/dashboard.py" not in children


#: in a process: how many glibc malloc arenas it has once 8 threads allocated at the same time
COUNT_ARENAS = """
def arenas():
    import ctypes, tempfile, threading
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
    together = threading.Barrier(8)
    def allocate():
        blocks = [bytearray(4096) for _ in range(64)]  # from malloc: over Python's own small-object limit
        together.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with tempfile.NamedTemporaryFile("r") as info:
        stream = libc.fopen(info.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        return info.read().count("<heap nr=")
"""


@pytest.mark.slow
def test_a_started_rays_workers_share_two_malloc_arenas_while_the_driver_keeps_glibcs_default(tmp_path):
    # each thread of a worker that allocates would get an arena of its own, and keep what it freed there
    script = COUNT_ARENAS + textwrap.dedent("""
        import os
        from hpsweep.sweep.ray_session import RaySession
        session = RaySession(False)
        session.wait()
        import ray

        print(ray.get(ray.remote(num_cpus=1)(arenas).remote()), arenas(), "MALLOC_ARENA_MAX" in os.environ)
        session.close()
    """)
    in_worker, in_driver, left_set = _in_a_process_of_its_own(script, tmp_path).stdout.split()[-3:]
    assert int(in_worker) <= 2
    assert int(in_driver) > 2  # the driver decodes images on every core: its threads do not wait on a lock
    assert left_set == "False"  # nor does anything the driver starts later inherit the cap


def test_a_value_the_user_set_is_left_alone_and_one_set_for_a_while_is_taken_back(monkeypatch):
    from hpsweep.compat import environment_default

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    with environment_default("MALLOC_ARENA_MAX", "2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "4"
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    with environment_default("MALLOC_ARENA_MAX", "2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "2"
    assert "MALLOC_ARENA_MAX" not in os.environ
