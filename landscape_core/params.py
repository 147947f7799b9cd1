"""Tree math on parameter dicts (``dict[str, Tensor]``): the algebra every analysis is written in.

All functions are pure: they return new dicts and never modify their inputs, so
``theta0 + a*d1 + b*d2`` reads as ``add_scaled(add_scaled(theta0, d1, a), d2, b)`` and ``theta0``
is still the trained point afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


def _check_same_keys(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))
        raise ValueError(f"parameter dicts differ in keys: {missing[:5]}")


def detached_params(model: nn.Module, *, clone: bool = True) -> Params:
    """Trainable parameters of ``model`` as a detached dict (cloned by default, so nothing aliases)."""
    return {n: (p.detach().clone() if clone else p.detach()) for n, p in model.named_parameters()}


def detached_buffers(model: nn.Module, *, clone: bool = True) -> Params:
    """Buffers (e.g. BatchNorm running statistics) of ``model`` as a detached dict."""
    return {n: (b.detach().clone() if clone else b.detach()) for n, b in model.named_buffers()}


def add_scaled(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float = 1.0) -> Params:
    """``a + alpha * b``."""
    _check_same_keys(a, b)
    return {k: a[k] + alpha * b[k] for k in a}


def sub(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Params:
    """``a - b``."""
    return add_scaled(a, b, -1.0)


def scale(a: Mapping[str, Tensor], alpha: float) -> Params:
    """``alpha * a``."""
    return {k: alpha * v for k, v in a.items()}


def lincomb(base: Mapping[str, Tensor], terms: Iterable[tuple[float, Mapping[str, Tensor]]]) -> Params:
    """``base + sum_i c_i * d_i`` computed in one pass (never by accumulating in-place steps)."""
    out = {k: v.clone() for k, v in base.items()}
    for c, d in terms:
        _check_same_keys(base, d)
        for k in out:
            out[k] = out[k] + c * d[k]
    return out


def zeros_like(a: Mapping[str, Tensor]) -> Params:
    return {k: torch.zeros_like(v) for k, v in a.items()}


def randn_like(a: Mapping[str, Tensor], generator: torch.Generator) -> Params:
    """Standard Gaussian dict shaped like ``a``, drawn from ``generator`` in sorted-key order."""
    out = {}
    for k in sorted(a):
        v = a[k]
        out[k] = torch.randn(v.shape, generator=generator, dtype=v.dtype, device="cpu").to(v.device)
    return {k: out[k] for k in a}


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Inner product accumulated in float64."""
    _check_same_keys(a, b)
    return float(sum((a[k].double() * b[k].double()).sum() for k in a))


def norm(a: Mapping[str, Tensor]) -> float:
    """Euclidean norm over all entries, accumulated in float64."""
    return float(sum((v.double() ** 2).sum() for v in a.values())) ** 0.5


def numel(a: Mapping[str, Tensor]) -> int:
    return sum(v.numel() for v in a.values())


def flatten(a: Mapping[str, Tensor]) -> Tensor:
    """Concatenate all entries (in dict order) into one vector."""
    return torch.cat([v.reshape(-1) for v in a.values()]) if a else torch.zeros(0)


def unflatten(vec: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Inverse of :func:`flatten`: split ``vec`` into tensors shaped like ``like``."""
    n = numel(like)
    if vec.numel() != n:
        raise ValueError(f"vector has {vec.numel()} entries, parameters have {n}")
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vec[i : i + v.numel()].reshape(v.shape).to(v.dtype)
        i += v.numel()
    return out


def to(a: Mapping[str, Tensor], device=None, dtype=None) -> Params:
    """Move / cast every tensor (floating tensors only are cast)."""
    return {
        k: v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None)
        for k, v in a.items()
    }


def weights_hash(state: Mapping[str, Tensor]) -> str:
    """SHA-256 content hash of a state dict: keys, dtypes, shapes and bytes (order independent)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous().reshape(-1)
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(state[k].shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_hash(model: nn.Module) -> str:
    """Content hash of a model's full state dict (parameters and buffers)."""
    return weights_hash(model.state_dict())
