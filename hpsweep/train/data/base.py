"""What every data source produces: train/val/test splits as tensors, plus what a model needs to know."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from hpsweep.errors import Problem, SpecError


class DataError(SpecError):
    """The data a sweep names is missing or unusable; caught before any training starts."""

    def __init__(self, source: str, field_path: str, message: str) -> None:
        super().__init__(source, [Problem(field_path, message)])


@dataclass(frozen=True)
class Split:
    """One split. Images are uint8 [N, C, H, W] (decoded once, normalised per batch); tables are float32 [N, F]."""

    x: torch.Tensor
    y: torch.Tensor
    ids: tuple[str, ...] = ()  #: where each example came from (file path or row number), for predictions

    def __len__(self) -> int:
        return int(self.y.shape[0])


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
        for split in (self.train, self.val, self.test):
            if split is not None:
                digest.update(split.x.contiguous().numpy().tobytes())
                digest.update(split.y.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def nbytes(self) -> int:
        return sum(s.x.nbytes + s.y.nbytes for s in (self.train, self.val, self.test) if s is not None)

    def for_sharing(self) -> PreparedData:
        """The same data as numpy arrays, for Ray's object store. Ray maps a numpy array's buffer read-only
        into every worker of a node (one copy in shared memory, however many trials read it) but copies a
        torch tensor into each worker that receives it. `shared()` turns it back in the worker."""
        return replace(self, **{name: _split_as(split, _to_numpy) for name, split in self._splits()})

    def shared(self) -> PreparedData:
        """The data received from `for_sharing`, as torch tensors that share its memory (no copy). They
        are read-only: trials index batches out of them and never write to the dataset."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return replace(self, **{name: _split_as(split, _to_torch) for name, split in self._splits()})

    def _splits(self) -> list[tuple[str, Split]]:
        return [(name, split) for name in ("train", "val", "test") if (split := getattr(self, name)) is not None]


def _split_as(split: Split, convert: Any) -> Split:
    return replace(split, x=convert(split.x), y=convert(split.y))


def _to_numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, torch.Tensor) else value


def _to_torch(value: Any) -> Any:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value
