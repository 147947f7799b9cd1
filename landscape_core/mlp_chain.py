"""Which models are plain MLP chains, and the first and second derivatives of their activations.

:func:`parse_chain` reads an :class:`~landscape_core.models.MLP` without BatchNorm or a plain
``nn.Sequential`` (optional leading ``Flatten``, ``Linear`` layers, elementwise activations, identity /
eval dropout, ending in a ``Linear``) as a list of :class:`ChainLayer`; anything else gives ``None``.
:func:`derivatives` gives ``(f'(y), f''(y))`` of an activation module from ``y`` and ``x = f(y)``;
:data:`ACT_FORWARD` its forward. Used by :mod:`landscape_core.mlp_curvature`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: ``(y, x = f(y)) -> (f'(y), f''(y))``; ``None`` stands for 1 (f') or 0 (f'').
Derivs = Callable[[Tensor, Tensor], tuple[Tensor | None, Tensor | None]]


def _tanh(y: Tensor, x: Tensor):
    d1 = 1 - x * x
    return d1, -2 * x * d1


def _sigmoid(y: Tensor, x: Tensor):
    d1 = x * (1 - x)
    return d1, d1 * (1 - 2 * x)


def _gelu(y: Tensor, x: Tensor):
    phi = torch.exp(-0.5 * y * y) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(y / math.sqrt(2)))
    return Phi + y * phi, phi * (2 - y * y)


def derivatives(m: nn.Module) -> Derivs | None:
    """Derivatives of an elementwise activation module, or ``None`` if it is not one we know."""
    t = type(m)
    if t is nn.Tanh:
        return _tanh
    if t is nn.Sigmoid:
        return _sigmoid
    if t is nn.ReLU:
        return lambda y, x: ((y > 0).to(y.dtype), None)
    if t is nn.LeakyReLU:
        s = m.negative_slope
        return lambda y, x: (1 + (s - 1) * (y <= 0).to(y.dtype), None)  # slope in y's dtype (not float32)
    if t is nn.ELU:
        a = m.alpha
        return lambda y, x: (torch.where(y > 0, 1.0, x + a), torch.where(y > 0, 0.0, x + a))
    if t is nn.GELU and m.approximate == "none":
        return _gelu
    if t is nn.Softplus:
        beta, thr = m.beta, m.threshold

        def softplus(y: Tensor, x: Tensor):
            s = torch.sigmoid(beta * y)
            lin = beta * y > thr  # torch's softplus is the identity there
            return torch.where(lin, 1.0, s), torch.where(lin, 0.0, beta * s * (1 - s))
        return softplus
    return None


ACT_FORWARD: dict[type, Callable[[nn.Module, Tensor], Tensor]] = {
    nn.Tanh: lambda m, y: torch.tanh(y),
    nn.Sigmoid: lambda m, y: torch.sigmoid(y),
    nn.ReLU: lambda m, y: torch.relu(y),
    nn.LeakyReLU: lambda m, y: nn.functional.leaky_relu(y, m.negative_slope),
    nn.ELU: lambda m, y: nn.functional.elu(y, m.alpha),
    nn.GELU: lambda m, y: nn.functional.gelu(y),
    nn.Softplus: lambda m, y: nn.functional.softplus(y, m.beta, m.threshold),
}


@dataclass(frozen=True)
class ChainLayer:
    weight: str
    bias: str | None
    act: nn.Module | None  # the activation after this layer (None: identity / the output layer)


def parse_chain(model: nn.Module) -> tuple[bool, list[ChainLayer]] | None:
    """``(flatten_first, layers)`` for a supported chain, else ``None``."""
    from .model_chain import chain_leaves
    from .models import MLP

    if type(model) not in (MLP, nn.Sequential):  # subclasses may override forward
        return None
    leaves = chain_leaves(model)
    if not leaves:
        return None
    flatten, layers = False, []
    pending: nn.Module | None = None  # an activation waiting for the next Linear
    for i, (prefix, m) in enumerate(leaves):
        def full(n: str, p: str = prefix) -> str:
            return f"{p}.{n}" if p else n

        t = type(m)
        if t is nn.Flatten:
            if i != 0 or m.start_dim != 1 or m.end_dim != -1:
                return None
            flatten = True
        elif t in (nn.Identity, nn.Dropout):
            continue
        elif t is nn.Linear:
            if layers:
                layers[-1] = ChainLayer(layers[-1].weight, layers[-1].bias, pending)
            elif pending is not None:  # an activation before the first Linear
                return None
            layers.append(ChainLayer(full("weight"), full("bias") if m.bias is not None else None, None))
            pending = None
        elif derivatives(m) is not None:
            if not layers or pending is not None:  # leading or doubled activations: not a plain chain
                return None
            pending = m
        else:
            return None
    if not layers or pending is not None:  # must end with a Linear
        return None
    return flatten, layers


__all__ = ["ACT_FORWARD", "ChainLayer", "derivatives", "parse_chain"]
