"""Models as users write them elsewhere (their own names and layouts), for the import tests.

Each is a faithful, small re-implementation of a common public layout: an ``nn.Sequential`` MLP, a
class with ``fc1/fc2/fc3``, a Hugging-Face-style classifier, the CIFAR ResNet-20 with projection
shortcuts (named ``shortcut`` or ``downsample``) and an ``fc`` head, the CIFAR ResNet-20 with
parameter-free zero-padding shortcuts ("option A") and a ``linear`` head, and a small Transformer
(outside the registry, for the ONNX path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sequential_mlp(d_in: int = 64, width: int = 12, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, classes))


class FC3(nn.Module):
    """The textbook ``fc1/fc2/fc3`` MLP (tanh)."""

    def __init__(self, d_in: int = 64, h1: int = 12, h2: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d_in, h1), nn.Linear(h1, h2), nn.Linear(h2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class HFClassifier(nn.Module):
    """Hugging-Face-like names: ``dense1``, ``dense2`` and a ``classifier`` head (gelu)."""

    def __init__(self, d_in: int = 64, width: int = 10, classes: int = 10) -> None:
        super().__init__()
        self.dense1, self.dense2 = nn.Linear(d_in, width), nn.Linear(width, width)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.dense1(torch.flatten(x, 1)))
        return self.classifier(F.gelu(self.dense2(x)))


class LightningLike(nn.Module):
    """A LightningModule's usual shape: the network lives in ``self.model`` (keys ``model.0.weight``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = sequential_mlp(width=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _LambdaLayer(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class CifarBlock(nn.Module):
    """The basic block of the public CIFAR ResNets: option "A" (zero padding) or projection shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A",
                 proj_name: str = "shortcut") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.proj_name = proj_name
        short: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":  # as in the original paper: subsample, pad planes//4 zero channels each side
                short = _LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)))
            else:
                short = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        setattr(self, proj_name, short)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + getattr(self, self.proj_name)(x))


class CifarResNet20(nn.Module):
    """conv1/bn1/layer1..3 (3 blocks each)/head; ``head`` is ``linear`` (akamaster style) or ``fc``."""

    def __init__(self, width: int = 4, classes: int = 10, option: str = "A", head: str = "linear",
                 proj_name: str = "shortcut") -> None:
        super().__init__()
        self.head_name = head
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        c_in = width
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(3):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(CifarBlock(c_in, planes, stride, option, proj_name))
                c_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        setattr(self, head, nn.Linear(c_in, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return getattr(self, self.head_name)(out)


class TinyTransformer(nn.Module):
    """Sequence classifier outside the registry: embedding, one pre-norm self-attention block with an MLP,
    mean pooling, head. Attention is written out (matmul, softmax) as in many research codebases; torch's
    fused attention kernel has no double backward, so it could not serve as the HVP reference."""

    def __init__(self, d_in: int = 4, d_model: int = 8, heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Linear(d_in, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff1, self.ff2 = nn.Linear(d_model, 2 * d_model), nn.Linear(2 * d_model, d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        h = h + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        h = h + self.ff2(F.gelu(self.ff1(self.norm2(h))))
        return self.head(h.mean(1))


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so a swapped BN layer would change the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.num_batches_tracked.fill_(7)
    return model.eval()


def onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The user's side of the ONNX path: the one-line export documented in the README."""
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return buf.getvalue()
