"""Finding image files and their labels: class folders, a CSV of paths, or labels in file names."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

Fail = Callable[[str, str], Exception]  #: (field path, message) -> the error to raise


@dataclass(frozen=True)
class Listing:
    """Image files and their class labels (indices into class_names)."""

    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def list_folder_classes(folder: Path, fail: Fail, field: str, class_names: Sequence[str] | None = None) -> Listing:
    """One sub-folder per class; every class must hold at least one image."""
    if not folder.is_dir():
        raise fail(field, f"folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if class_names is not None:
        missing = sorted(set(class_names) - set(classes))
        if missing:
            raise fail(field, f"class folder {missing[0]!r} is missing from {folder}")
        classes = list(class_names)
    if not classes:
        raise fail(field, f"no class sub-folders in {folder}")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = image_files(folder / name)
        if not files:
            raise fail(field, f"class {name!r} has no images in {folder / name}")
        paths += files
        labels += [index] * len(files)
    return Listing(tuple(paths), tuple(labels), tuple(classes))


def list_csv(csv: Path, path_column: str, label_column: str, fail: Fail,
             class_names: Sequence[str] | None = None) -> Listing:
    """A CSV of image paths (relative to the CSV's folder) and labels."""
    if not csv.is_file():
        raise fail("data.csv", f"file not found: {csv}")
    try:
        table = pd.read_csv(csv, dtype={label_column: str, path_column: str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise fail("data.csv", f"cannot read {csv}: {exc}") from None
    for column, field in ((path_column, "data.path_column"), (label_column, "data.label_column")):
        if column not in table.columns:
            raise fail(field, f"column {column!r} is not in {csv} (columns: {', '.join(map(str, table.columns))})")
    if table.empty:
        raise fail("data.csv", f"no rows in {csv}")
    empty = table[label_column].str.strip() == ""
    if empty.any():
        raise fail("data.label_column", f"{csv} row {int(empty.idxmax()) + 2} has no label")
    classes = sorted(table[label_column].unique(), key=natural_key)
    if class_names is not None:
        unknown = ~table[label_column].isin(class_names)
        if unknown.any():
            row = int(unknown.idxmax())
            raise fail("data.label_column", f"{csv} row {row + 2} has label {table[label_column][row]!r}, "
                       f"which is not in data.class_names")
        classes = list(class_names)
    index = {name: i for i, name in enumerate(classes)}
    paths = tuple((csv.parent / p).resolve() for p in table[path_column])
    for path in paths:
        if not path.is_file():
            raise fail("data.csv", f"{csv} lists an image that does not exist: {path}")
    return Listing(paths, tuple(index[v] for v in table[label_column]), tuple(classes))


def list_by_filename(folder: Path, pattern: str, class_names: Sequence[str] | None, fail: Fail) -> Listing:
    """Images whose file name holds the label, captured by the (?P<label>...) group of `pattern`."""
    if not folder.is_dir():
        raise fail("data.path", f"folder not found: {folder}")
    regex = re.compile(pattern)
    found: list[tuple[Path, str]] = []
    files = image_files(folder)
    if not files:
        raise fail("data.path", f"no images found in {folder}")
    for path in files:
        match = regex.search(path.name)
        if match:
            found.append((path, match.group("label")))
    if not found:
        raise fail("data.pattern", f"matches none of the {len(files)} image names in {folder} "
                   f"(e.g. {files[0].name!r})")
    labels = sorted({label for _, label in found}, key=natural_key)
    names = tuple(labels)
    if class_names is not None:
        if len(class_names) != len(labels):
            raise fail("data.class_names", f"lists {len(class_names)} names but the files hold "
                       f"{len(labels)} labels ({', '.join(labels)})")
        names = tuple(class_names)
    index = {label: i for i, label in enumerate(labels)}
    return Listing(tuple(p for p, _ in found), tuple(index[label] for _, label in found), names)


def natural_key(label: str) -> tuple[int, float | str]:
    """Numeric labels sort as numbers (2 before 10), others as text."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)
