"""What every data source produces: train/val/test splits as tensors, plus what a model needs to know."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hpsweep.errors import Problem, SpecError
from hpsweep.train.data.cache import open_cache


class DataError(SpecError):
    """The data a sweep names is missing or unusable; caught before any training starts."""

    def __init__(self, source: str, field_path: str, message: str) -> None:
        super().__init__(source, [Problem(field_path, message)])


@dataclass(frozen=True)
class Split:
    """One split. Images are uint8 [N, C, H, W] (decoded once, normalised per batch); tables are float32 [N, F].

    When `rows` is given, `x` is the whole dataset (a memory-mapped cache every split shares) and the split
    is those rows of it: batches gather their rows, and no split is ever copied out whole."""

    x: torch.Tensor
    y: torch.Tensor
    ids: tuple[str, ...] = ()  #: where each example came from (file path or row number), for predictions
    rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def nbytes(self) -> int:
        """The bytes of this split's examples and labels (not of the whole dataset a cache maps)."""
        per_example = self.x[0].nbytes if len(self.x) else 0
        return per_example * len(self) + self.y.nbytes

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The examples at `index` (positions in this split), as a new tensor."""
        if self.rows is None:
            return self.x[index]
        return self.x[self.rows[index.cpu()]]

    def examples(self) -> torch.Tensor:
        """Every example of the split as one tensor (a copy when the split is rows of a cache)."""
        return self.x if self.rows is None else self.take(torch.arange(len(self)))

    def part(self, start: int, stop: int) -> Split:
        """Examples [start, stop) of this split, without copying them."""
        ids = self.ids[start:stop] if self.ids else ()
        if self.rows is None:
            return replace(self, x=self.x[start:stop], y=self.y[start:stop], ids=ids)
        return replace(self, y=self.y[start:stop], ids=ids, rows=self.rows[start:stop])

    def in_memory(self) -> Split:
        return self if self.rows is None else replace(self, x=self.examples(), rows=None)


@dataclass(frozen=True)
class PreparedData:
    """All splits of a dataset and the facts a model and the loop need about it."""

    train: Split
    val: Split
    test: Split | None
    task: Literal["classification", "regression"]
    class_names: tuple[str, ...] = ()
    #: per-channel (images) or per-target (regression) statistics applied on the fly
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    is_image: bool = True
    preprocessing: dict[str, Any] = field(default_factory=dict)  #: what a served model must repeat
    cache: Path | None = None  #: the decoded-image cache every split's rows index (None: in memory)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        return len(self.class_names) if self.task == "classification" else 1

    def for_search(self) -> PreparedData:
        """The same data without the test split: trials never see it; only promotion does."""
        return replace(self, test=None)

    def fingerprint(self) -> str:
        """A short hash of the examples and labels of every split, to tell datasets apart."""
        digest = hashlib.sha256()
        if self.cache is not None:  # its key already hashes every file (path, size, modification time)
            digest.update(self.cache.name.encode())
        for _, split in self._splits():
            examples = split.rows if split.rows is not None else split.x
            digest.update(examples.contiguous().numpy().tobytes())
            digest.update(split.y.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def nbytes(self) -> int:
        return sum(split.nbytes for _, split in self._splits())

    def describe(self) -> str:
        where = f"mapped from {self.cache}" if self.cache is not None else "in memory"
        return (f"{len(self.train)} train, {len(self.val)} val, {len(self.test or [])} test examples, "
                f"{self.nbytes() / 1e6:.1f} MB {where}")

    def for_sharing(self) -> PreparedData:
        """The same data as numpy arrays, for Ray's object store. Ray maps a numpy array's buffer read-only
        into every worker of a node (one copy in shared memory, however many trials read it) but copies a
        torch tensor into each worker that receives it. `shared()` turns it back in the worker. Data from
        a cache travels without its images: each worker maps the cache file itself."""
        unmapped = self.unmapped()
        return replace(unmapped, **{name: _split_as(split, _to_numpy) for name, split in unmapped._splits()})

    def unmapped(self) -> PreparedData:
        """The same data without the cache's mapped images (`shared()` maps them again), to pickle."""
        if self.cache is None:
            return self
        return replace(self, **{name: replace(split, x=torch.empty(0, dtype=torch.uint8))
                                for name, split in self._splits()})

    def shared(self) -> PreparedData:
        """The data received from `for_sharing`, as torch tensors that share its memory (no copy). They
        are read-only: trials index batches out of them and never write to the dataset."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            data = replace(self, **{name: _split_as(split, _to_torch) for name, split in self._splits()})
            if self.cache is None:
                return data
            images = mapped_images(self.cache)
            return replace(data, **{name: replace(split, x=images) for name, split in data._splits()})

    def _splits(self) -> list[tuple[str, Split]]:
        return [(name, split) for name in ("train", "val", "test") if (split := getattr(self, name)) is not None]


def mapped_images(folder: Path) -> torch.Tensor:
    """The images of the cache in `folder`, memory-mapped read-only as a uint8 tensor [N, C, H, W]."""
    found = open_cache(folder)
    if found is None:
        raise FileNotFoundError(f"the decoded-image cache {folder} is missing or damaged on this machine")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(found.array())


def _split_as(split: Split, convert: Any) -> Split:
    rows = convert(split.rows) if split.rows is not None else None
    return replace(split, x=convert(split.x), y=convert(split.y), rows=rows)


def _to_numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, torch.Tensor) else value


def _to_torch(value: Any) -> Any:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value
