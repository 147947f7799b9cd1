"""Sequence and signal models for the registry: a small Transformer, LSTM / GRU classifiers, a 1-D CNN.

All are plain ``nn.Module`` compositions of ``Linear`` / ``Embedding`` / ``LayerNorm`` / ``Conv1d``
with explicit loops and matrix products (no fused RNN kernels, no attention fast paths), so every
``torch.func`` transform the engine uses works on them: ``functional_call``, forward-mode JVP (GGN,
Hessian ``fwd_rev``), double backward (``rev_rev``), ``vmap`` (per-example gradients, batched surfaces).
No dropout anywhere: analysis runs the model as trained.

Token models take int64 ids ``(n, T)`` with ``input_shape = (T,)`` and a ``vocab_size``; they classify
from the last position (``readout="last"``, the ``=`` token of modular addition) or the mean over
positions (``"mean"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

READOUTS = ("last", "mean")
#: Activations of :class:`SignalCNN` (the names ``models.ACTIVATIONS`` uses; ``models`` imports this module).
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
                                           "elu": nn.ELU, "softplus": nn.Softplus}


def _check_tokens(input_shape: Sequence[int], vocab_size: int, what: str) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"{what} needs token sequences (T,), got input shape {tuple(input_shape)}")
    if not (isinstance(vocab_size, int) and vocab_size >= 2):
        raise ValueError(f"{what} needs vocab_size >= 2 (a token dataset), got {vocab_size!r}")
    return int(input_shape[0])


def _readout(h: Tensor, readout: str) -> Tensor:
    return h[:, -1] if readout == "last" else h.mean(1)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017), written out."""

    def __init__(self, d_model: int, heads: int, causal: bool) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"width {d_model} is not divisible by heads={heads}")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (n, heads, t, t)
        if self.causal:
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # (n, heads, t, d_head)
        return self.out(att.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (LayerNorm optional)."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int, causal: bool, layernorm: bool) -> None:
        super().__init__()
        self.ln1: nn.Module = nn.LayerNorm(d_model) if layernorm else nn.Identity()
        self.attn = SelfAttention(d_model, heads, causal)
        self.ln2: nn.Module = nn.LayerNorm(d_model) if layernorm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.ReLU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """A small Transformer classifier over token sequences (the grokking model of Nanda et al. 2023 at ``layers=1``).

    Args:
        input_shape: ``(T,)`` sequence length.
        num_classes: output classes.
        vocab_size: token ids ``0..vocab_size-1``.
        width: model width ``d_model``. heads: attention heads (divide ``width``). depth: blocks.
        mlp_ratio: hidden width of the block MLP in multiples of ``width``.
        causal: mask attention to earlier positions.
        layernorm: pre-LN blocks and a final LayerNorm (``False``: the grokking papers' plain variant).
        readout: ``"last"`` position or ``"mean"`` over positions.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        vocab_size: int,
        width: int = 128,
        heads: int = 4,
        depth: int = 1,
        mlp_ratio: int = 4,
        causal: bool = False,
        layernorm: bool = True,
        readout: str = "last",
    ) -> None:
        super().__init__()
        t = _check_tokens(input_shape, vocab_size, "transformer")
        if not (1 <= depth <= 8 and width >= 1 and heads >= 1 and mlp_ratio >= 1):
            raise ValueError(f"transformer needs 1 <= depth <= 8, width, heads, mlp_ratio >= 1; got depth={depth}, "
                             f"width={width}, heads={heads}, mlp_ratio={mlp_ratio}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose from {READOUTS}")
        self.readout = readout
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.randn(t, width) / math.sqrt(width))  # learned positional embedding
        self.blocks = nn.Sequential(*[TransformerBlock(width, heads, mlp_ratio, causal, layernorm)
                                      for _ in range(depth)])
        self.ln: nn.Module = nn.LayerNorm(width) if layernorm else nn.Identity()
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self.pos
        h = self.ln(self.blocks(h))
        return self.head(_readout(h, self.readout))


class _RecurrentClassifier(nn.Module):
    """Embedding, a stack of recurrent cells unrolled in Python, a linear head on the readout."""

    gates = 4

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        vocab_size: int,
        width: int = 64,
        depth: int = 1,
        embed: int = 16,
        readout: str = "last",
    ) -> None:
        super().__init__()
        _check_tokens(input_shape, vocab_size, type(self).__name__.lower())
        if not (1 <= depth <= 4 and width >= 1 and embed >= 1):
            raise ValueError(f"recurrent model needs 1 <= depth <= 4, width >= 1, embed >= 1; got depth={depth}, "
                             f"width={width}, embed={embed}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose from {READOUTS}")
        self.width, self.readout = width, readout
        self.embed = nn.Embedding(vocab_size, embed)
        self.ih = nn.ModuleList([nn.Linear(embed if i == 0 else width, self.gates * width) for i in range(depth)])
        self.hh = nn.ModuleList([nn.Linear(width, self.gates * width, bias=False) for _ in range(depth)])
        self.head = nn.Linear(width, num_classes)

    def _cell(self, gx: Tensor, gh: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        seq = self.embed(x)  # (n, T, e)
        for ih, hh in zip(self.ih, self.hh):
            gx = ih(seq)  # input part of every gate, all steps at once
            h = c = gx.new_zeros(x.shape[0], self.width)
            outs = []
            for t in range(x.shape[1]):
                h, c = self._cell(gx[:, t], hh(h), h, c)
                outs.append(h)
            seq = torch.stack(outs, 1)
        return self.head(_readout(seq, self.readout))


class LSTMClassifier(_RecurrentClassifier):
    """LSTM (Hochreiter & Schmidhuber 1997) classifier: ``c' = f c + i g``, ``h' = o tanh(c')``."""

    gates = 4

    def _cell(self, gx: Tensor, gh: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = (gx + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GRUClassifier(_RecurrentClassifier):
    """GRU (Cho et al. 2014) classifier: ``h' = (1 - z) n + z h``, ``n = tanh(x_n + r * (W_hn h))``."""

    gates = 3

    def _cell(self, gx: Tensor, gh: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c


class SignalCNN(nn.Module):
    """1-D CNN for signals ``(C, L)`` such as MNIST-1D: three conv-act layers (stride 2) and a linear head.

    The layout of the MNIST-1D paper's CNN (Greydanus 2020): kernel 5, stride 2, padding 1.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: int = 25,
        activation: str = "relu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        if len(input_shape) != 2:
            raise ValueError(f"cnn1d needs signal input (C, L), got input shape {tuple(input_shape)}")
        c, length = input_shape
        layers: list[nn.Module] = []
        for _ in range(3):
            layers.append(nn.Conv1d(c, channels, 5, stride=2, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(_ACTIVATIONS[activation]())
            c, length = channels, (length + 2 - 5) // 2 + 1
        if length < 1:
            raise ValueError(f"cnn1d: signals of length {input_shape[1]} are too short for three stride-2 convolutions")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * length, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
