"""Model zoo and registry: MLP, a small CNN and ResNet-20, rebuilt from the spec stored in a run.

A *model spec* is a plain JSON-able dict ``{"name": "mlp", "kwargs": {...}}``; the kwargs always
include ``input_shape`` (without batch dim) and ``num_classes`` so a run folder alone rebuilds its
model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .seqmodels import GRUClassifier, LSTMClassifier, SignalCNN, TinyTransformer

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Fully connected net: ``depth`` hidden layers of ``width`` units (``--width 64 --depth 2`` = 64-64-C).

    ``widths`` (a list) overrides width/depth for uneven nets. Input is flattened first.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: int = 64,
        depth: int = 2,
        activation: str = "relu",
        batchnorm: bool = False,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if widths is None:
            if width < 1 or depth < 0:
                raise ValueError(f"MLP needs width >= 1 and depth >= 0, got width={width}, depth={depth}")
            widths = [width] * depth
        d_in = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for w in widths:
            layers.append(nn.Linear(d_in, w))
            if batchnorm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(_activation(activation))
            d_in = w
        layers.append(nn.Linear(d_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks (conv-[BN]-act-pool) and a linear head; works on 8x8 digits up to 32x32 CIFAR."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: int = 16,
        activation: str = "relu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs image input (C, H, W), got input shape {tuple(input_shape)}")
        c, h, w = input_shape
        blocks: list[nn.Module] = []
        c_in = c
        for c_out in (channels, 2 * channels):
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if batchnorm:
                blocks.append(nn.BatchNorm2d(c_out))
            blocks.append(_activation(activation))
            blocks.append(nn.MaxPool2d(2))
            c_in = c_out
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


SHORTCUTS = ("projection", "zeropad")


class _ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut ("option A", He et al. 2016, Sec. 4.2): subsample, then zero-pad channels.

    ``x[:, :, ::s, ::s]`` keeps every ``s``-th pixel; the ``c_out - c_in`` new channels are zeros, split
    evenly before and after the existing ones (for ``c_out = 2 c_in``: ``c_out / 4`` on each side, the
    layout of the widely used public CIFAR ResNet-20 checkpoints).
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out < c_in:
            raise ValueError(f"zero-padding shortcut cannot shrink channels ({c_in} -> {c_out})")
        self.stride, self.before, self.after = stride, (c_out - c_in) // 2, c_out - c_in - (c_out - c_in) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.before, self.after))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str = "projection") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "zeropad":
                self.shortcut = _ZeroPadShortcut(c_in, c_out, stride)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20, CIFAR variant (He et al. 2016): 3 stages x 3 basic blocks, 16/32/64 channels.

    ``shortcut`` chooses the blocks that change shape: ``"projection"`` (1x1 conv + BN, "option B", the
    default) or ``"zeropad"`` (parameter-free subsample + zero channels, "option A", the CIFAR paper's
    choice; 0.27M instead of 0.28M parameters at width 16).
    """

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, width: int = 16, shortcut: str = "projection"
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"resnet20 needs image input (C, H, W), got input shape {tuple(input_shape)}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose from {', '.join(SHORTCUTS)}")
        c = input_shape[0]
        self.conv = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            for j in range(3):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(_BasicBlock(c_in, c_out, stride, shortcut))
                c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.conv(x)))
        out = self.layers(out)
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SmallCNN, "resnet20": ResNet20}
# sequence and signal models (landscape_core.seqmodels): token models take a ``vocab_size`` kwarg
MODELS.update({"transformer": TinyTransformer, "lstm": LSTMClassifier, "gru": GRUClassifier, "cnn1d": SignalCNN})
#: Registry names whose inputs are int64 token ids (their spec needs the dataset's ``vocab_size``).
TOKEN_MODELS = ("transformer", "lstm", "gru")


def model_spec(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> dict:
    """A JSON-able spec: ``{"name", "kwargs"}`` with ``input_shape`` and ``num_classes`` included."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    kw = {"input_shape": list(input_shape), "num_classes": int(num_classes), **kwargs}
    return {"name": name, "kwargs": kw}


def build_model(spec: dict, *, seed: int | None = None) -> nn.Module:
    """Rebuild a model from its spec (optionally with a seeded initialisation). Returned in eval mode."""
    try:
        name, kwargs = spec["name"], dict(spec.get("kwargs", {}))
    except (KeyError, TypeError):
        raise ValueError(f"model spec must be a dict with 'name' and 'kwargs', got {spec!r}") from None
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS[name](**kwargs)
    else:
        model = MODELS[name](**kwargs)
    return model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
