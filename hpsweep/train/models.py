"""Model registry: every network is a backbone followed by a head, so freezing and head learning rates
work the same way for all of them. Pretrained weights come from a local file, never from the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsweep.errors import ModelError

log = logging.getLogger(__name__)


class Net(nn.Module):
    """backbone -> head. The head is what is replaced for a new class count and trained while frozen."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, is_conv: bool, nhwc_on_cpu: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.is_conv = is_conv  #: conv nets take channels_last on CUDA under autocast
        #: trains faster in channels_last on a CPU too (oneDNN's convolutions; bench/RESULTS-cpu.md)
        self.nhwc_on_cpu = nhwc_on_cpu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _mlp(input_shape: tuple[int, ...], outputs: int, dropout: float, hidden_sizes: list[int]) -> Net:
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(torch.tensor(input_shape).prod())
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
        width = size
    layers.append(nn.Dropout(dropout))
    return Net(nn.Sequential(*layers), nn.Linear(width, outputs), is_conv=False)


def _cnn(input_shape: tuple[int, ...], outputs: int, dropout: float, hidden_sizes: list[int]) -> Net:
    """A small VGG-style net: three conv blocks, global average pooling; fits 8x8 up to large images."""
    channels = input_shape[0]

    def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return [*layers, nn.MaxPool2d(2)] if pool else layers

    side = min(input_shape[1:])
    backbone = nn.Sequential(
        *block(channels, 32, side >= 8), *block(32, 64, side >= 16), *block(64, 128, side >= 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
    )
    # channels_last: an epoch of this net 0.5-0.8x as long on a CPU; ResNet-18 gains little and
    # MobileNetV3's depthwise convolutions can lose, so they stay NCHW on a CPU
    return Net(backbone, nn.Linear(128, outputs), is_conv=True, nhwc_on_cpu=True)


def _torchvision(name: str) -> Callable[..., Net]:
    def build(input_shape: tuple[int, ...], outputs: int, dropout: float, hidden_sizes: list[int],
              imagenet: bool = False) -> Net:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        if imagenet:
            model.load_state_dict(imagenet_state_dict(name))
        if name == "resnet18":
            width = model.fc.in_features
            model.fc = nn.Identity()
            head: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, outputs))
            first = ("conv1",)
        else:
            classifier = model.classifier
            classifier[2] = nn.Dropout(dropout, inplace=True)
            classifier[3] = nn.Linear(classifier[3].in_features, outputs)
            head, model.classifier = classifier, nn.Identity()
            first = ("features", "0", "0")
        if input_shape[0] != 3:
            _adapt_first_conv(model, first, input_shape[0])
        return Net(model, head, is_conv=True)

    return build


BUILDERS: dict[str, Callable[..., Net]] = {
    "mlp": _mlp, "cnn": _cnn,
    "resnet18": _torchvision("resnet18"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large"),
}


def _adapt_first_conv(model: nn.Module, path: tuple[str, ...], channels: int) -> None:
    """Grey (or other) input: a first conv for `channels`, whose weights are the RGB kernels averaged,
    so pretrained features still respond to intensity."""
    parent = model
    for name in path[:-1]:
        parent = getattr(parent, name) if not name.isdigit() else parent[int(name)]
    old: nn.Conv2d = getattr(parent, path[-1]) if not path[-1].isdigit() else parent[int(path[-1])]
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    if path[-1].isdigit():
        parent[int(path[-1])] = new
    else:
        setattr(parent, path[-1], new)


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the local torch hub cache; never downloaded here."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    filename = weights.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise ModelError(f"ImageNet weights for {name} are not on this machine: put {filename} "
                         f"(from {weights.url}) in {path.parent}, or point TORCH_HOME at a folder whose "
                         f"hub/checkpoints holds it")
    return load_state_dict(path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors only (weights_only=True): a file that would run code when unpickled is refused."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError for refused globals, RuntimeError for bad files
        raise ModelError(f"cannot load {path} as weights only ({type(exc).__name__}): a state dict or an hpsweep "
                         f"checkpoint is needed, and files that would run code when loaded are refused") from None
    if isinstance(loaded, Mapping) and "model" in loaded and isinstance(loaded["model"], Mapping):
        loaded = loaded["model"]  # an hpsweep checkpoint
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path} holds no state dict")
    return dict(loaded)


def file_state(pretrained: str, base_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The weights in a state-dict or hpsweep checkpoint file named by `model.pretrained` (relative to the
    sweep file's folder). Weights from the MLflow registry are fetched by `hpsweep.registry.weights`."""
    path = Path(pretrained).expanduser()
    return load_state_dict(path if path.is_absolute() or base_dir is None else base_dir / path)


def build_model(name: str, input_shape: tuple[int, ...], outputs: int, *, dropout: float = 0.0,
                hidden_sizes: list[int] | None = None, pretrained: str | None = None,
                base_dir: Path | None = None, state: Mapping[str, torch.Tensor] | None = None) -> Net:
    """A model for `outputs` classes (1 for regression), with pretrained weights where asked.

    pretrained: 'imagenet' (torchvision models), 'models:/NAME@ALIAS' or 'models:/NAME/VERSION' (a model
    from the MLflow registry), or a path to a state-dict / hpsweep checkpoint file. The backbone is
    loaded; the head too when its shape matches, otherwise it stays freshly initialised. `state` gives
    those weights already read (see pretrained_state).
    """
    kwargs: dict[str, Any] = {"imagenet": True} if pretrained == "imagenet" else {}
    net = BUILDERS[name](input_shape, outputs, dropout, hidden_sizes or [128], **kwargs)
    if pretrained and pretrained != "imagenet":
        if state is None and pretrained.startswith("models:/"):
            raise ModelError(f"{pretrained}: weights from the model registry must be fetched first "
                             "(hpsweep.registry.weights.pretrained_state)")
        load_matching(net, state if state is not None else file_state(pretrained, base_dir), source=pretrained)
    return net


def load_matching(net: Net, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every tensor whose name and shape match; the backbone must match, a head may differ."""
    own = net.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    missing = [k for k in backbone if k not in state or state[k].shape != own[k].shape]
    if missing:
        raise ModelError(f"{source} does not fit this model: {len(missing)} backbone tensors missing or of "
                         f"another shape (first: {missing[0]})")
    matched = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    net.load_state_dict(matched, strict=False)
    if any(k.startswith("head.") and k not in matched for k in own):
        log.info("%s: head replaced (its shape differs); backbone loaded", source)


def head_parameter_names(net: Net) -> set[str]:
    return {f"head.{n}" for n, _ in net.head.named_parameters()}
