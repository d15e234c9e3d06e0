"""The sweep's data on every node: shared once per node, never copied per trial.

Data held in memory (the bundled digits, tables) goes into Ray's object store once as numpy arrays, which
Ray maps read-only into every worker of a node. Images decoded into a cache on disk travel as the cache's
path: each worker maps the file, and the page cache holds it once per machine. On a cluster whose nodes
cannot all see the cache folder, the driver also puts the cache's images into the object store, and the
first trial on such a node writes them into that node's cache (the others wait for it): one transfer and
one copy per node, however many trials run there.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from hpsweep.train.data.base import DataError, PreparedData
from hpsweep.train.data.cache import build_cache, open_cache

log = logging.getLogger(__name__)
_COPY_ROWS = 256  #: images copied per step from the object store into a node's cache file


def share(data: PreparedData | None) -> tuple[Any, Any, PreparedData | None]:
    """(the object ref trials read the data by; what a node without the cache fetches it from, or None;
    the driver's own view of the shared copy). The decoded copy the driver made is dropped, so each
    node holds the data once however many trials read it."""
    if data is None:
        return None, None, None
    import ray

    ref = ray.put(data.for_sharing())
    fetch = None
    if data.cache is not None and blind_nodes(data.cache):
        found = open_cache(data.cache)
        assert found is not None
        fetch = [ray.put(found.array()), found.meta]  # a list: Tune passes it on as is, the ref unresolved
        log.info("some nodes cannot see the cache %s: they fetch it from the object store", data.cache)
    return ref, fetch, ray.get(ref).shared()


def blind_nodes(path: Path) -> list[str]:
    """The addresses of the live cluster nodes that cannot see `path` (none on a single machine)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return []

    @ray.remote(num_cpus=0)
    def sees(where: str) -> bool:
        return os.path.exists(where)

    answers = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                       .remote(str(path)) for n in nodes], timeout=120)
    return [n["NodeManagerAddress"] for n, seen in zip(nodes, answers, strict=True) if not seen]


def on_this_node(data: PreparedData, fetch: list[Any] | None) -> PreparedData:
    """`data` as a trial of this node reads it: a cache this node lacks is written here first, once."""
    if data.cache is None or open_cache(data.cache) is not None:
        return data.shared()
    if not fetch:
        raise FileNotFoundError(f"the decoded-image cache {data.cache} is missing on this node")
    folder = data.cache
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".fetch-{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one trial per node fetches; the rest find the cache built
        if open_cache(folder) is None:
            _write_fetched(folder, fetch)
    return data.shared()


def _write_fetched(folder: Path, fetch: list[Any]) -> None:
    import ray

    ref, meta = fetch
    images = ray.get(ref)  # one transfer to this node's object store, mapped in place

    def fill(out: Any) -> None:
        for start in range(0, len(images), _COPY_ROWS):
            out[start:start + _COPY_ROWS] = images[start:start + _COPY_ROWS]

    def fail(field: str, message: str) -> Exception:
        return DataError(f"node cache {uuid.uuid4().hex[:6]}", field, message)

    log.info("writing the decoded-image cache %s on this node from the driver's copy", folder)
    build_cache(folder.parent, folder.name, tuple(images.shape), meta, fill, fail)  # type: ignore[arg-type]
