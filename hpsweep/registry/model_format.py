"""The model format hpsweep writes to MLflow, and reading a registered model back for fine-tuning.

A logged model is an MLflow pyfunc whose artifacts are `weights.pt` (a plain state dict) and
`model.json` (architecture and preprocessing). Fine-tuning reads only those two files, with
weights_only=True, so starting from a registry model never unpickles code.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from hpsweep.train.models import ModelError, Net, build_model, load_state_dict

WEIGHTS, DESCRIPTION = "weights.pt", "model.json"


def describe(model_name: str, hidden_sizes: list[int], net: Net, preprocessing: dict[str, Any],
             input_shape: tuple[int, ...], outputs: int) -> dict[str, Any]:
    return {"format": 1, "model": model_name, "hidden_sizes": hidden_sizes, "input_shape": list(input_shape),
            "outputs": outputs, "preprocessing": preprocessing, "is_conv": net.is_conv}


def save_model(folder: Path, net: Net, description: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, folder / WEIGHTS)
    (folder / DESCRIPTION).write_text(json.dumps(description, indent=2), encoding="utf-8")
    return folder


def load_model(folder: Path) -> tuple[Net, dict[str, Any]]:
    description = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
    net = build_model(description["model"], tuple(description["input_shape"]), description["outputs"],
                      hidden_sizes=description["hidden_sizes"])
    net.load_state_dict(load_state_dict(folder / WEIGHTS))
    return net.eval(), description


def log_model(net: Net, description: dict[str, Any], name: str = "model", example: Any = None) -> Any:
    """Log as an MLflow pyfunc in the active run, with a signature and input example when `example`
    (raw inputs) is given; returns MLflow's ModelInfo."""
    import mlflow

    from hpsweep.compat import pinned_requirements_trusted

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model(Path(tmp) / "hpsweep-model", net, description)
        signature = None
        if example is not None:
            from mlflow.models import infer_signature

            predictor = HpsweepModel()
            predictor.net, predictor.description = net.eval(), description
            signature = infer_signature(example, predictor.predict(None, example))
            if description["preprocessing"]["kind"] == "image":
                # the model resizes and converts channels itself: any [N, C, H, W] uint8 batch is valid input
                from mlflow.models import ModelSignature
                from mlflow.types.schema import Schema, TensorSpec

                signature = ModelSignature(Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, -1))]),
                                           signature.outputs)
        with pinned_requirements_trusted():
            return mlflow.pyfunc.log_model(name=name, python_model=HpsweepModel(), artifacts={"model": str(folder)},
                                           pip_requirements=_requirements(), signature=signature,
                                           input_example=example)


def _requirements() -> list[str]:
    """Pinned from this environment, so MLflow need not infer them (which imports the model in a subprocess)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "pandas", "pyyaml", "pydantic", "hpsweep")]


@contextmanager
def fetch_model(uri: str) -> Iterator[Path]:
    """A local folder with the weights and description of `models:/...` or `runs:/...`, fetched from
    MLflow into a temporary folder that is removed when the block ends: load what is needed inside it."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="hpsweep-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as exc:  # MlflowException for unknown names, aliases or versions
            raise ModelError(f"cannot fetch {uri} from MLflow: {exc}") from None
        found = sorted(local.rglob(WEIGHTS))
        if not found or not (found[0].parent / DESCRIPTION).is_file():
            raise ModelError(f"{uri} is not an hpsweep model (no {WEIGHTS} and {DESCRIPTION} among its files)")
        yield found[0].parent


def load_registered(uri: str) -> tuple[Net, dict[str, Any]]:
    """The network (in eval mode) and description of `models:/...` or `runs:/...`; nothing stays on disk."""
    with fetch_model(uri) as folder:
        return load_model(folder)


def registry_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """The weights of `models:/NAME@ALIAS` or `models:/NAME/VERSION`, read as tensors only."""
    with fetch_model(uri) as folder:
        return load_state_dict(folder / WEIGHTS)


def model_inputs(raw: Any, description: dict[str, Any]) -> torch.Tensor:
    """Raw inputs as the network takes them, with the preprocessing stored beside its weights.

    Images: uint8 [N, H, W] or [N, C, H, W] of any size; resized to the training size, made grey or
    RGB as trained, normalised with the training statistics. Tables: the feature columns as in the CSV.
    """
    prep = description["preprocessing"]
    if prep["kind"] == "table":
        import pandas as pd

        from hpsweep.train.data import tabular

        return tabular.transform(pd.DataFrame(raw), prep)
    from hpsweep.train.data.digits import resize_uint8

    images = torch.as_tensor(np.asarray(raw)).to(torch.uint8)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(f"images must be [N, H, W] or [N, C, H, W] (got shape {tuple(images.shape)})")
    channels = prep["channels"]
    if images.shape[1] != channels:
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif channels == 1 and images.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(dim=1, keepdim=True).round().to(torch.uint8)
        else:
            raise ValueError(f"the model takes {channels}-channel images (got {images.shape[1]})")
    images = resize_uint8(images, (prep["size"][0], prep["size"][1]))
    mean = torch.tensor(prep["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(prep["std"]).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


@torch.no_grad()
def raw_outputs(net: Net, description: dict[str, Any], raw: Any, batch_size: int = 256) -> torch.Tensor:
    """The network's outputs (logits, or standardised predictions for regression) for raw inputs."""
    net.eval()
    x = model_inputs(raw, description)
    return torch.cat([net(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def to_predictions(outputs: torch.Tensor, description: dict[str, Any]) -> Any:
    """A table of predictions: label, class name and probability (or the predicted value, for regression)."""
    import pandas as pd

    prep = description["preprocessing"]
    if prep.get("task") == "regression":
        values = outputs.squeeze(1) * prep["target_std"][0] + prep["target_mean"][0]
        return pd.DataFrame({"prediction": values.numpy()})
    probabilities = outputs.softmax(dim=1)
    best = probabilities.argmax(dim=1)
    names = prep["class_names"]
    return pd.DataFrame({"label": best.numpy(), "class_name": [names[i] for i in best.tolist()],
                         "probability": probabilities.max(dim=1).values.numpy()})


class HpsweepModel(PythonModel):  # type: ignore[misc]
    """Predicts from raw values: uint8 images [N, H, W] or [N, C, H, W], or a table with the feature columns."""

    def load_context(self, context: Any) -> None:
        self.net, self.description = load_model(Path(context.artifacts["model"]))

    # MLflow reads predict's type hints; np.ndarray is one it takes without inferring a schema (a table
    # arrives as a DataFrame and is handled all the same).
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> Any:
        return to_predictions(raw_outputs(self.net, self.description, model_input), self.description)
