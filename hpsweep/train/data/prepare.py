"""Turn a spec's `data` section into PreparedData, checking everything before any training starts."""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hpsweep.spec.data_sources import CsvAnnotations, FilenameLabels, ImageFolder, SklearnDigits, TabularCsv
from hpsweep.spec.params import param_extremes
from hpsweep.spec.sweep_spec import TRAINING_KNOBS, SweepSpec
from hpsweep.storage import cache_root
from hpsweep.train.data import tabular
from hpsweep.train.data.base import DataError, PreparedData, Split, mapped_images
from hpsweep.train.data.cache import cached_images
from hpsweep.train.data.digits import load_digits, resize_uint8
from hpsweep.train.data.images import (
    Listing,
    list_by_filename,
    list_csv,
    list_folder_classes,
    natural_key,
)
from hpsweep.train.data.split import split_indices

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def prepare(spec: SweepSpec, cache: Path | None = None) -> PreparedData:
    """Load, decode, split and describe the sweep's data; raise DataError naming the file or field.
    Image files are decoded once into the cache under `cache` (default: storage.cache_root()) and mapped
    from there; the bundled digits and tables are held in memory."""
    fail = partial(DataError, spec.source)
    data = spec.data
    if isinstance(data, TabularCsv):
        prepared = _prepare_table(spec, data, fail)
    else:
        prepared = _prepare_images(spec, fail, cache or cache_root())
    _check_batch_size(spec, len(prepared.train), fail)
    log.info("prepared %s: %s", data.source, prepared.describe())
    return prepared


def _check_classes(class_names: Any, fail: Any) -> None:
    if len(class_names) < 2:
        found = f"only {class_names[0]!r}" if class_names else "none"
        raise fail("data", f"a classifier needs at least two classes; the data has {found}")


def _check_batch_size(spec: SweepSpec, n_train: int, fail: Any) -> None:
    given = "batch_size" in spec.space.model_fields_set
    _, largest = param_extremes(spec.space.batch_size) if given else (None, TRAINING_KNOBS["batch_size"].default)
    if largest > n_train:
        what = "can be" if given else "is (by default)"
        raise fail("space.batch_size", f"batch size {what} {largest}, larger than the training split "
                   f"({n_train} examples)")


# ---------------------------------------------------------------- images


def _prepare_images(spec: SweepSpec, fail: Any, cache: Path) -> PreparedData:
    data = spec.data
    images, labels, ids, class_names, given_splits, cached = _load_images(spec, fail, cache)
    _check_classes(class_names, fail)
    if len(labels) < len(class_names):
        raise fail("data", f"{len(labels)} images for {len(class_names)} classes: fewer examples than classes")
    counts = torch.bincount(labels, minlength=len(class_names))
    if bool((counts == 0).any()):
        empty = class_names[int(torch.nonzero(counts == 0)[0])]
        raise fail("data.class_names", f"class {empty!r} has no examples")
    if given_splits is None:
        given_splits = split_indices(labels, data.split, spec.train.seed, stratify=True)
    take = _rows_of if cached is not None else _take
    train, val, test = (take(images, labels, ids, idx) for idx in given_splits)
    if len(train) == 0 or len(val) == 0:
        raise fail("data.split", f"the training or validation split is empty ({len(labels)} images)")
    mean, std = _normalisation(spec, train)
    preprocessing = {"kind": "image", "size": list(images.shape[-2:]), "channels": int(images.shape[1]),
                     "mean": list(mean), "std": list(std), "class_names": list(class_names)}
    return PreparedData(train, val, test if len(test) else None, "classification", tuple(class_names),
                        mean, std, True, preprocessing, cache=cached)


def _load_images(spec: SweepSpec, fail: Any, cache: Path) -> tuple[Any, ...]:
    data = spec.data
    if isinstance(data, SklearnDigits):
        images, labels = load_digits()
        names = tuple(str(i) for i in range(10))
        if data.classes:
            keep = sorted(set(data.classes))
            mask = torch.isin(labels, torch.tensor(keep))
            images, labels = images[mask], torch.searchsorted(torch.tensor(keep), labels[mask])
            names = tuple(str(i) for i in keep)
        if data.image_size:
            images = resize_uint8(images, data.image_size)
        if data.color == "rgb":
            images = images.expand(-1, 3, -1, -1).contiguous()
        ids = tuple(f"digits[{i}]" for i in range(len(labels)))
        return images, labels, ids, names, None, None
    given: tuple[torch.Tensor, ...] | None = None
    if isinstance(data, ImageFolder):
        listing, given = _list_folder(spec.resolve_path(data.path), fail)
    elif isinstance(data, CsvAnnotations):
        listing = list_csv(spec.resolve_path(data.csv), data.path_column, data.label_column, fail, data.class_names)
    else:
        assert isinstance(data, FilenameLabels)
        listing = list_by_filename(spec.resolve_path(data.path), data.pattern, data.class_names, fail)
    found = cached_images(listing.paths, data.image_size, data.color, cache, fail)
    labels = torch.as_tensor(listing.labels, dtype=torch.int64)
    ids = tuple(map(str, listing.paths))
    return mapped_images(found.folder), labels, ids, listing.class_names, given, found.folder


def _list_folder(root: Path, fail: Any) -> tuple[Listing, tuple[torch.Tensor, ...] | None]:
    """Class folders directly under root, or under root/train (with root/val and root/test when present)."""
    if not (root / "train").is_dir():
        return list_folder_classes(root, fail, "data.path"), None
    train = list_folder_classes(root / "train", fail, "data.path")
    parts = [train]
    for name in ("val", "test"):
        if (root / name).is_dir():
            parts.append(list_folder_classes(root / name, fail, "data.path", train.class_names))
    if len(parts) == 1:
        return train, None
    listing = Listing(tuple(p for part in parts for p in part.paths), tuple(i for part in parts for i in part.labels),
                      train.class_names)
    bounds = torch.cumsum(torch.tensor([0] + [len(p.paths) for p in parts]), 0)
    ranges = [torch.arange(int(bounds[i]), int(bounds[i + 1])) for i in range(len(parts))]
    if len(parts) == 2:  # train/ + one of val/ or test/: the missing one is carved from train/
        which = "val" if (root / "val").is_dir() else "test"
        ranges = _carve(ranges, listing, which)
    return listing, (ranges[0], ranges[1], ranges[2])


def _carve(ranges: list[torch.Tensor], listing: Listing, present: str) -> list[torch.Tensor]:
    from hpsweep.spec.data_sources import Split as SplitSpec

    labels = torch.as_tensor(listing.labels)[ranges[0]]
    keep, carved, _ = split_indices(labels, SplitSpec(train=0.85, val=0.15, test=0.0), 0, stratify=True)
    train, carved = ranges[0][keep], ranges[0][carved]
    return [train, ranges[1], carved] if present == "val" else [train, carved, ranges[1]]


def _take(x: torch.Tensor, y: torch.Tensor, ids: tuple[str, ...], index: torch.Tensor) -> Split:
    return Split(x[index], y[index], tuple(ids[i] for i in index.tolist()))


def _rows_of(x: torch.Tensor, y: torch.Tensor, ids: tuple[str, ...], index: torch.Tensor) -> Split:
    """A split of a cache: its rows, not a copy of its images."""
    return Split(x, y[index], tuple(ids[i] for i in index.tolist()), rows=index)


def _normalisation(spec: SweepSpec, train: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    channels = train.example_shape[0]
    mode = spec.data.normalize
    if mode == "auto":
        mode = "imagenet" if spec.model.pretrained == "imagenet" else "dataset"
    if mode == "none":
        return (0.0,) * channels, (1.0,) * channels
    if mode == "imagenet":
        if channels == 1:
            return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return IMAGENET_MEAN, IMAGENET_STD
    return channel_stats(train)


#: pixel values per chunk when computing channel statistics (64 MB as float64)
STATS_CHUNK_VALUES = 8 * 2**20


def channel_stats(train: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the training images in 0..1, read a chunk of images at
    a time: a whole-dataset float64 copy would cost 8x the decoded size."""
    channels = train.example_shape[0]
    chunk = max(1, STATS_CHUNK_VALUES // max(1, math.prod(train.example_shape)))
    total, squares, count = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), 0
    for start in range(0, len(train), chunk):
        pixels = train.take(torch.arange(start, min(start + chunk, len(train)))).transpose(0, 1)
        pixels = pixels.reshape(channels, -1).double() / 255.0
        total += pixels.sum(dim=1)
        squares += pixels.square().sum(dim=1)
        count += pixels.shape[1]
    mean = total / count
    variance = (squares / count - mean.square()).clamp_min(0) * count / max(count - 1, 1)
    return tuple(mean.tolist()), tuple(variance.sqrt().clamp_min(1e-3).tolist())


# ---------------------------------------------------------------- tables


def _prepare_table(spec: SweepSpec, data: TabularCsv, fail: Any) -> PreparedData:
    path = spec.resolve_path(data.path)
    table = tabular.read_table(path, fail)
    columns = [str(c) for c in table.columns]
    if data.target not in columns:
        raise fail("data.target", f"column {data.target!r} is not in {path} (columns: {', '.join(columns)})")
    features = data.features or [c for c in columns if c != data.target]
    for name in [*features, *data.categorical]:
        if name not in columns:
            raise fail("data.features" if name in features else "data.categorical",
                       f"column {name!r} is not in {path}")
    # each row keeps its line in the CSV (the header is line 1): promote and the report find it again
    lines = table.index.to_numpy() + 2
    kept = table[data.target].notna().to_numpy()
    if not kept.all():
        log.warning("%s: %d row(s) with a blank %r are left out (the first at line %d)", path, int((~kept).sum()),
                    data.target, int(lines[~kept][0]))
    table, lines = table[kept].reset_index(drop=True), lines[kept]
    tabular.warn_non_finite(table, features, set(data.categorical), str(path))
    if data.task == "classification":
        labels_text = table[data.target].astype(str)
        class_names = tuple(sorted(labels_text.unique(), key=natural_key))
        _check_classes(class_names, fail)
        # a copy: pandas hands out read-only arrays (copy on write), which torch warns about sharing
        y = torch.tensor(labels_text.map({c: i for i, c in enumerate(class_names)}).to_numpy(), dtype=torch.int64)
        if len(y) < len(class_names):
            raise fail("data", f"{len(y)} rows for {len(class_names)} classes: fewer examples than classes")
    else:
        if not pd.api.types.is_numeric_dtype(table[data.target]):
            raise fail("data.target", f"column {data.target!r} is not numeric; use task: classification")
        class_names = ()
        y = torch.tensor(table[data.target].to_numpy(dtype="float64"), dtype=torch.float32)
    train_i, val_i, test_i = split_indices(y if data.task == "classification" else torch.zeros(len(y)),
                                           data.split, spec.train.seed, stratify=data.task == "classification")
    preprocessing = tabular.fit_preprocessing(table.iloc[train_i.numpy()], features, set(data.categorical))
    x = tabular.transform(table, preprocessing)
    ids = tuple(f"row {line}" for line in lines)
    train, val, test = (_take(x, y, ids, idx) for idx in (train_i, val_i, test_i))
    if len(train) == 0 or len(val) == 0:
        raise fail("data.split", f"the training or validation split is empty ({len(y)} rows)")
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if data.task == "regression":  # the loop trains on standardised targets and reports in original units
        mean, std = (float(train.y.mean()),), (float(train.y.std(unbiased=False)) or 1.0,)
    preprocessing.update({"kind": "table", "task": data.task, "target": data.target,
                          "class_names": list(class_names), "target_mean": list(mean), "target_std": list(std)})
    return PreparedData(train, val, test if len(test) else None, data.task, class_names, mean, std, False,
                        preprocessing)

