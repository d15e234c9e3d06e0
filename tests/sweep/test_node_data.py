"""A node that cannot see the sweep's image cache writes its own copy once, from the driver's copy in the
object store, however many of its trials start at once."""

from __future__ import annotations

import shutil
from dataclasses import replace

import torch

from conftest import spec_for
from hpsweep.train.data import prepare


def test_trials_on_a_node_without_the_cache_fetch_it_once(ray_session, tmp_path, digit_files, monkeypatch):
    import ray

    from hpsweep.sweep.node_data import on_this_node
    from hpsweep.train.data.cache import open_cache

    monkeypatch.setenv("HPSWEEP_CACHE", str(tmp_path / "driver-cache"))
    data = prepare(spec_for(tmp_path, data={"replace": {"source": "image_folder", "image_size": 24,
                                                        "path": str(digit_files / "folders")}}))
    found = open_cache(data.cache)
    fetch = [ray.put(found.array()), found.meta]
    expected = data.train.take(torch.arange(50))
    # the trials' node keeps its caches elsewhere: the same data, at a path this node has not got
    node_folder = tmp_path / "node-cache" / data.cache.name
    shipped = ray.put(replace(data.for_sharing(), cache=node_folder))

    @ray.remote(num_cpus=0)
    def trial(shipped, fetch):
        local = on_this_node(shipped, fetch)
        return local.train.take(torch.arange(50)), (node_folder / "images.u8").stat().st_ino

    results = ray.get([trial.remote(shipped, fetch) for _ in range(4)])
    assert all(torch.equal(images, expected) for images, _ in results)
    assert len({inode for _, inode in results}) == 1  # written once, by the first trial; the rest mapped it
    assert [p.name for p in node_folder.parent.iterdir() if not p.name.startswith(".fetch-")] == [node_folder.name]
    shutil.rmtree(node_folder)
