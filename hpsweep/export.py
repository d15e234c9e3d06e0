"""The model format hpsweep writes to MLflow, and reading a registered model back for fine-tuning.

A logged model is an MLflow pyfunc whose artifacts are `weights.pt` (a plain state dict) and
`model.json` (architecture and preprocessing). Fine-tuning reads only those two files, with
weights_only=True, so starting from a registry model never unpickles code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpsweep.models import ModelError, Net, build_model, load_state_dict

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

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model(Path(tmp) / "hpsweep-model", net, description)
        signature = None
        if example is not None:
            from mlflow.models import infer_signature

            predictor = HpsweepModel()
            predictor.net, predictor.description = net.eval(), description
            signature = infer_signature(example, predictor.predict(None, example))
        return mlflow.pyfunc.log_model(name=name, python_model=HpsweepModel(), artifacts={"model": str(folder)},
                                       pip_requirements=_requirements(), signature=signature,
                                       input_example=example)


def _requirements() -> list[str]:
    """Pinned from this environment, so MLflow need not infer them (which imports the model in a subprocess)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "pandas", "pyyaml", "pydantic", "hpsweep")]


def registry_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """The weights of `models:/NAME@ALIAS` or `models:/NAME/VERSION`, read as tensors only."""
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # MlflowException for unknown names, aliases or versions
        raise ModelError(f"cannot fetch {uri} from the MLflow registry: {exc}") from None
    found = sorted(local.rglob(WEIGHTS))
    if not found:
        raise ModelError(f"{uri} is not an hpsweep model (no {WEIGHTS} among its files)")
    return load_state_dict(found[0])


try:  # the pyfunc wrapper needs mlflow at import time; hpsweep itself does not
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[assignment,misc]


class HpsweepModel(PythonModel):  # type: ignore[misc]
    """Predicts from raw values: uint8 images [N, H, W] or [N, C, H, W], or a table with the feature columns."""

    def load_context(self, context: Any) -> None:
        self.net, self.description = load_model(Path(context.artifacts["model"]))

    # MLflow reads predict's type hints; np.ndarray is one it takes without inferring a schema (a table
    # arrives as a DataFrame and is handled below all the same).
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        from hpsweep.data import tabular

        prep = self.description["preprocessing"]
        if prep["kind"] == "table":
            x = tabular.transform(pd.DataFrame(model_input), prep)
        else:
            images = torch.as_tensor(np.asarray(model_input), dtype=torch.uint8)
            x = images.unsqueeze(1) if images.dim() == 3 else images
            mean = torch.tensor(prep["mean"]).view(1, -1, 1, 1)
            std = torch.tensor(prep["std"]).view(1, -1, 1, 1)
            x = (x.float() / 255.0 - mean) / std
        with torch.no_grad():
            output = self.net(x)
        if prep.get("task") == "regression":
            return pd.DataFrame({"prediction": (output.squeeze(1) * prep["target_std"][0]
                                                + prep["target_mean"][0]).numpy()})
        probabilities = output.softmax(dim=1)
        best = probabilities.argmax(dim=1)
        names = prep["class_names"]
        return pd.DataFrame({"label": best.numpy(), "class_name": [names[i] for i in best.tolist()],
                             "probability": probabilities.max(dim=1).values.numpy()})
