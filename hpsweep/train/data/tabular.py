"""Tabular CSV: numeric columns standardised, categorical columns one-hot, missing values handled.

Every statistic (means, deviations, medians, categories) is fitted on the training rows only and
kept in a plain dictionary, so the same preprocessing can travel with a served model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)

MISSING = "<missing>"


def read_table(path: Path, fail: Callable[[str, str], Exception]) -> pd.DataFrame:
    if not path.is_file():
        raise fail("data.path", f"file not found: {path}")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise fail("data.path", f"cannot read {path}: {exc}") from None
    if table.empty:
        raise fail("data.path", f"no rows in {path}")
    return table


def fit_preprocessing(train: pd.DataFrame, features: list[str], categorical: set[str]) -> dict[str, Any]:
    """Learn per-column statistics from the training rows."""
    columns: list[dict[str, Any]] = []
    for name in features:
        column = train[name]
        if name in categorical or not pd.api.types.is_numeric_dtype(column):
            values = sorted({str(v) for v in column.fillna(MISSING)})
            columns.append({"name": name, "kind": "categorical", "categories": values})
        else:
            column = _finite(column)
            filled = column.fillna(column.median() if column.notna().any() else 0.0)
            std = float(filled.std(ddof=0)) or 1.0
            columns.append({"name": name, "kind": "numeric", "median": float(filled.median()),
                            "mean": float(filled.mean()), "std": std})
    return {"columns": columns}


def _finite(column: pd.Series) -> pd.Series:
    """Infinite values as missing ones: one inf would make the column's mean and deviation infinite."""
    return column.replace([np.inf, -np.inf], np.nan)


def warn_non_finite(table: pd.DataFrame, features: list[str], categorical: set[str], source: str) -> None:
    """Log each numeric feature column that holds infinite values (read as missing), with the first row."""
    for name in features:
        column = table[name]
        if name in categorical or not pd.api.types.is_numeric_dtype(column):
            continue
        infinite = np.isinf(column.to_numpy(dtype=np.float64))
        if infinite.any():
            log.warning("%s: column %r has %d infinite value(s), read as missing", source, name, int(infinite.sum()))


def transform(table: pd.DataFrame, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Apply fitted preprocessing: float32 [N, F]. Unseen categories encode as all zeros."""
    blocks: list[np.ndarray] = []
    for column in preprocessing["columns"]:
        values = table[column["name"]]
        if column["kind"] == "numeric":
            filled = _finite(pd.to_numeric(values, errors="coerce")).fillna(column["median"]).to_numpy(dtype=np.float64)
            blocks.append(((filled - column["mean"]) / column["std"])[:, None])
        else:
            strings = values.fillna(MISSING).astype(str).to_numpy()
            blocks.append((strings[:, None] == np.asarray(column["categories"])[None, :]).astype(np.float64))
    return torch.as_tensor(np.concatenate(blocks, axis=1), dtype=torch.float32)
