"""What each worker process Ray starts for a sweep's trials imports before it takes work: torch and its
compiler front end (every optimizer's first step imports it, about 1 s here), Ray Tune's function
trainable and hpsweep's trial side, about 3 s of CPU in all, with the garbage collector paused
(hpsweep.loading).

Importing this module is the preloading: it is the first of Ray's `preload_python_modules` in a Ray that
hpsweep starts (workers.trial_preload), and what docs/running.md has `ray start --system-config` name.
"""

from hpsweep.loading import without_gc

with without_gc():
    import ray.tune.trainable.function_trainable  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401

    import hpsweep.sweep.worker  # noqa: F401
