"""`hpsweep predict`: a registered (or logged) model applied to a folder of images, a CSV of image paths,
or a tabular CSV; one output row per input, in input order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hpsweep.errors import UserError
from hpsweep.train.data.decode import decode_images
from hpsweep.train.data.images import IMAGE_SUFFIXES


class PredictError(UserError):
    """Input that cannot be predicted on; one line, exit code 2."""


def _fail(field: str, message: str) -> PredictError:
    """decode_images names the spec field at fault; for predict the file in the message is what counts."""
    return PredictError(message)


def predict(model_uri: str, source: Path, uri: str | None = None) -> pd.DataFrame:
    import mlflow

    from hpsweep.registry.model_format import load_registered, raw_outputs, to_predictions
    from hpsweep.track.writer import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(uri))
    net, description = load_registered(model_uri)
    prep = description["preprocessing"]
    names, inputs = _read_inputs(source, prep)
    try:
        predictions = to_predictions(raw_outputs(net, description, inputs), description)
    except (KeyError, ValueError) as exc:
        raise PredictError(f"{source}: the model cannot take this input: {exc}") from None
    predictions.insert(0, "input", names)
    return predictions


def _read_inputs(source: Path, prep: dict[str, Any]) -> tuple[list[str], Any]:
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise PredictError(f"{source}: no images in this folder")
        return [str(p.relative_to(source)) for p in files], _decode(files, prep)
    if not source.is_file():
        raise PredictError(f"{source}: no such file or folder")
    try:
        table = pd.read_csv(source)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise PredictError(f"{source}: not a readable CSV ({exc})") from None
    if prep["kind"] == "table":
        missing = [c["name"] for c in prep["columns"] if c["name"] not in table.columns]
        if missing:
            raise PredictError(f"{source}: missing the model's feature column(s): {', '.join(missing)}")
        return [f"row {i + 2}" for i in range(len(table))], table
    column = "path" if "path" in table.columns else table.columns[0]
    files = [(source.parent / str(p)).resolve() for p in table[column]]
    for path in files:
        if not path.is_file():
            raise PredictError(f"{source}: lists an image that does not exist: {path}")
    return [str(p) for p in table[column]], _decode(files, prep)


def _decode(files: list[Path], prep: dict[str, Any]) -> Any:
    height, width = prep["size"]
    color = "grey" if prep["channels"] == 1 else "rgb"
    return decode_images(files, height if height == width else None, color, _fail)
