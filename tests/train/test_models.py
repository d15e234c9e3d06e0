"""Models and pretrained sources: local state dicts, the MLflow registry, ImageNet weights on disk."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import spec_for
from hpsweep.registry.model_format import describe, log_model
from hpsweep.search.space import SearchSpace
from hpsweep.train.data import prepare
from hpsweep.train.loop import fit
from hpsweep.train.models import BUILDERS, ModelError, build_model
from hpsweep.train.trial import build_net, loop_settings, run_trial


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_takes_grey_or_rgb_and_exposes_its_head(name, channels):
    net = build_model(name, (channels, 32, 32), 7, dropout=0.1)
    assert net(torch.zeros(2, channels, 32, 32)).shape == (2, 7)
    head = {f"head.{n}" for n, _ in net.head.named_parameters()}
    assert head and all(n in dict(net.named_parameters()) for n in head)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_imagenet_weights_come_from_the_local_cache(torch_home):
    with pytest.raises(ModelError, match=r"resnet18-f37072fd\.pth.*not on this machine|not on this machine"):
        build_model("resnet18", (3, 32, 32), 4, pretrained="imagenet")
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    net = build_model("resnet18", (3, 32, 32), 4, pretrained="imagenet")
    assert torch.equal(net.backbone.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    grey = build_model("resnet18", (1, 32, 32), 4, pretrained="imagenet")
    assert torch.allclose(grey.backbone.conv1.weight, reference["conv1.weight"].mean(dim=1, keepdim=True))


def _freeze_then_train(spec, data, net_before):
    """Fine-tune with one frozen epoch; return the backbone/head change per epoch."""
    from hpsweep.registry.weights import pretrained_state

    params = SearchSpace.of(spec).resolve({"lr": 0.01, "freeze_epochs": 1})
    net = build_net(spec, data, params, pretrained_state(spec.model.pretrained, spec.base_dir))
    loaded = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    for key, value in loaded.items():
        assert torch.equal(value, net_before.backbone.state_dict()[key]), key
    snapshots = []
    fit(net, data, params, loop_settings(spec),
        on_epoch=lambda r: snapshots.append({k: v.clone() for k, v in net.backbone.state_dict().items()}))
    assert all(torch.equal(loaded[k], snapshots[0][k]) for k in loaded)  # frozen epoch: backbone kept
    assert any(not torch.equal(loaded[k], snapshots[1][k]) for k in loaded)  # then it trains
    return net


def test_fine_tune_from_a_local_state_dict(tmp_path):
    spec = spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 1})
    data = prepare(spec).for_search()
    net, _ = run_trial(spec, data, {"lr": 0.01})
    torch.save(net.state_dict(), tmp_path / "digits-cnn.pt")
    tuned = spec_for(tmp_path, model={"name": "cnn", "pretrained": "digits-cnn.pt"}, train={"epochs": 2})
    _freeze_then_train(tuned, data, net)


def test_fine_tune_from_the_mlflow_registry_with_a_new_head(tmp_path, monkeypatch, digit_files):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 1})
    data = prepare(spec)
    net, _ = run_trial(spec, data.for_search(), {"lr": 0.01})
    mlflow.set_experiment("registry-test")
    with mlflow.start_run():
        info = log_model(net, describe("cnn", [128], net, data.preprocessing, data.input_shape, data.num_outputs))
    version = mlflow.register_model(info.model_uri, "digits-cnn")
    MlflowClient().set_registered_model_alias("digits-cnn", "champion", version.version)

    five = tmp_path / "five"  # a new task: only digits 0-4, so the head must be replaced
    five.mkdir()
    for f in (digit_files / "filename").iterdir():
        if f.stem[-1] in "01234":
            shutil.copy(f, five / f.name)
    tuned = spec_for(tmp_path, model={"name": "cnn", "pretrained": "models:/digits-cnn@champion"},
                     train={"epochs": 2}, data={"replace": {"source": "filename_labels", "path": "five",
                                                            "pattern": r"_(?P<label>\d)\.png$"}})
    from hpsweep.registry.weights import pretrained_state

    five_data = prepare(tuned).for_search()
    fine = _freeze_then_train(tuned, five_data, net)
    assert fine.head.out_features == 5
    with pytest.raises(ModelError, match="cannot fetch models:/digits-cnn@nobody"):
        pretrained_state("models:/digits-cnn@nobody")
    with pytest.raises(ModelError, match="must be fetched first"):  # the train layer never reads the registry
        build_model("cnn", (1, 8, 8), 5, pretrained="models:/digits-cnn@champion")
