"""The decoded-image cache: built once, reused, rebuilt when a file or the cache changes, never left
half-built, and read by trials without copying it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import spec_for
from hpsweep.train.data import DataError, prepare
from hpsweep.train.data.cache import IMAGES_FILE, META_FILE, list_caches
from hpsweep.train.data.decode import decode_images


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HPSWEEP_CACHE", str(folder))
    return folder


@pytest.fixture
def folder(tmp_path, digit_files) -> Path:
    """A copy of the digit image folders, which a test may change."""
    root = tmp_path / "digits"
    shutil.copytree(digit_files / "folders", root)
    return root


def _prepare(tmp: Path, root: Path, **data: object):
    return prepare(spec_for(tmp, data={"replace": {"source": "image_folder", "path": str(root), **data}}))


def _fail(field: str, message: str) -> Exception:
    return ValueError(f"{field}: {message}")


def _all_images(data) -> torch.Tensor:
    return torch.cat([s.examples() for s in (data.train, data.val, data.test)])


def test_images_decode_once_into_a_cache_that_later_preparations_map(tmp_path, folder, cache):
    data = _prepare(tmp_path, folder, image_size=12)
    [built] = list_caches(cache)
    assert built.shape == (1797, 1, 12, 12) and data.cache == built.folder
    images = built.folder / IMAGES_FILE
    written = images.stat().st_mtime_ns
    in_memory = decode_images(sorted(folder.rglob("*.png")), 12, "auto", _fail)
    ordered = torch.cat([data.train.x[data.train.rows], data.val.x[data.val.rows], data.test.x[data.test.rows]])
    assert sorted(map(bytes, ordered.numpy())) == sorted(map(bytes, in_memory))  # the same images, decoded
    assert data.train.x.untyped_storage().data_ptr() == data.val.x.untyped_storage().data_ptr()  # one mapping

    again = _prepare(tmp_path, folder, image_size=12)
    assert [c.key for c in list_caches(cache)] == [built.key] and images.stat().st_mtime_ns == written
    assert again.fingerprint() == data.fingerprint() and torch.equal(_all_images(again), _all_images(data))
    _prepare(tmp_path, folder, image_size=16)  # other decode settings: a cache of their own
    assert len(list_caches(cache)) == 2


def test_a_changed_file_or_a_damaged_cache_is_rebuilt(tmp_path, folder, cache, caplog):
    data = _prepare(tmp_path, folder)
    [first] = list_caches(cache)
    changed = sorted((folder / "3").iterdir())[0]
    Image.new("L", (8, 8), color=255).save(changed)  # a white image where a 3 was
    again = _prepare(tmp_path, folder)
    assert again.cache != data.cache and again.fingerprint() != data.fingerprint()
    row = next(split.rows[i] for split in (again.train, again.val, again.test)
               for i, path in enumerate(split.ids) if path == str(changed))
    assert int(again.train.x[row].min()) == 255

    with open(again.cache / IMAGES_FILE, "r+b") as images:  # a cache cut short, as by a full disk
        images.truncate(100)
    rebuilt = _prepare(tmp_path, folder)
    assert "damaged" in caplog.text and rebuilt.cache == again.cache
    assert (rebuilt.cache / IMAGES_FILE).stat().st_size == 1797 * 64
    (first.folder / META_FILE).write_text("{not json")
    assert _prepare(tmp_path, (folder)).cache == again.cache  # the damaged one is another cache: left alone


def test_unreadable_files_are_all_counted_and_the_first_named(tmp_path, folder, cache):
    broken = [folder / "1" / f"broken{i}.png" for i in range(4)]
    for path in broken:
        path.write_bytes(b"not a png")
    truncated = folder / "2" / "truncated.png"
    truncated.write_bytes((folder / "2" / sorted(os.listdir(folder / "2"))[0]).read_bytes()[:40])
    with pytest.raises(DataError) as caught:
        _prepare(tmp_path, folder, image_size=480)
    message = str(caught.value)
    assert "5 of 1,802 images cannot be read" in message and "and 2 more" in message
    assert str(broken[0]) in message and "\n" not in message.strip()
    assert not list(cache.iterdir()) if cache.exists() else True  # nothing decoded, nothing left


def test_a_killed_decode_leaves_no_cache_and_the_next_one_cleans_up(tmp_path, folder, cache):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: k\ntrainable: image_classifier\ndata: {{source: image_folder, path: {folder}, "
                     "image_size: 640}\nmodel: {name: mlp}\ntrain: {epochs: 1}\nspace: {lr: 0.01}\n")
    env = {**os.environ, "HPSWEEP_CACHE": str(cache)}
    child = subprocess.Popen([str(Path(sys.executable).parent / "hpsweep"), "train", str(sweep)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cache.exists() and any(p.name.startswith(".build-") for p in cache.iterdir())):
        assert child.poll() is None and time.monotonic() < deadline, "the build never started"
        time.sleep(0.01)
    time.sleep(0.3)  # well into decoding 1,797 images at 640x640 (2.2 GB)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list_caches(cache) == []  # what it wrote is not a cache anyone reads
    data = _prepare(tmp_path, folder, image_size=20)
    assert [p.name for p in cache.iterdir()] == [data.cache.name]  # the dead build's folder is gone


def test_the_default_cache_lives_in_the_results_storage(tmp_path, folder, monkeypatch):
    monkeypatch.delenv("HPSWEEP_CACHE")
    monkeypatch.setenv("HPSWEEP_STORAGE", str(tmp_path / "results"))
    data = _prepare(tmp_path, folder)
    assert data.cache is not None and data.cache.parent == tmp_path / "results" / "data-cache"


@pytest.mark.slow
def test_a_sweep_keeps_its_cache_in_the_storage_it_is_given(ray_session, tmp_path, folder, monkeypatch, run_cli):
    monkeypatch.delenv("HPSWEEP_CACHE")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: where\ntrainable: image_classifier\ndata: {{source: image_folder, path: {folder}, "
                     "image_size: 10}\nmodel: {name: mlp}\ntrain: {epochs: 1}\nsearch: {num_trials: 2}\n"
                     "space: {lr: {loguniform: [0.001, 0.01]}}\n")
    code, _, err = run_cli("run", str(sweep), "--storage", str(tmp_path / "elsewhere"),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 0, err
    [cache] = list_caches(tmp_path / "elsewhere" / "data-cache")
    assert cache.shape == (1797, 1, 10, 10)
    code, out, _ = run_cli("data", "cache", "--storage", str(tmp_path / "elsewhere"))
    assert code == 0 and cache.key in out


def test_the_cache_verbs_list_and_clear_caches(tmp_path, folder, cache, run_cli):
    first = _prepare(tmp_path, folder).cache
    _prepare(tmp_path, folder, image_size=16)
    code, out, _ = run_cli("data", "cache")
    assert code == 0 and first.name in out and "2 caches" in out and str(folder) in out and "1x16x16" in out
    code, _, err = run_cli("data", "cache", "clear", "nosuchkey")
    assert code == 2 and "matches no cache" in err and len(list_caches(cache)) == 2
    code, out, _ = run_cli("data", "cache", "clear", first.name[:8])
    assert code == 0 and "removed 1 caches" in out and not first.exists() and len(list_caches(cache)) == 1
    code, out, _ = run_cli("data", "cache", "clear")
    assert code == 0 and list_caches(cache) == [] and "no decoded-image caches" in run_cli("data", "cache")[1]


def test_a_long_decode_shows_its_progress_on_the_terminal(tmp_path, folder, cache, run_cli, monkeypatch):
    from hpsweep.train.data import decode

    monkeypatch.setattr(decode, "PROGRESS_AFTER_S", 0.0)  # as if every decode took long
    monkeypatch.setattr(decode, "PROGRESS_EVERY_S", 0.0)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: p\ntrainable: image_classifier\ndata: {{source: image_folder, path: {folder}, "
                     "image_size: 64}\nmodel: {name: mlp}\ntrain: {epochs: 1}\nspace: {lr: 0.01}\n")
    code, _, err = run_cli("train", str(sweep))
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("hpsweep: decoding images: ")]
    assert lines and "of 1,797 (" in lines[-1] and "images/s, about" in lines[-1] and "s left)" in lines[-1]
