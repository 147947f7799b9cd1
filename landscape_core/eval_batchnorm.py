"""Eval-mode BatchNorm with a cheap second derivative, for Hessian-vector products through BN nets.

In eval mode BatchNorm is a per-channel affine map, ``y = a (x - mu) / s * ... = (x - mu) r gamma + beta``
with ``r = 1 / sqrt(var + eps)`` fixed. PyTorch's generic double backward of ``native_batch_norm``
(``batchnorm_double_backward``) also forms the training-mode terms, several full-size temporaries per
layer: on ResNet-20 (batch 128) it is a fifth of a retained-graph Hessian-vector product.

:class:`EvalBatchNorm` computes the same forward and first backward with the native kernels and writes
the second derivative out (``once_differentiable``: Hessian-vector products need no third derivative).
For ``gx = a gy``, ``g_gamma = r sum(gy (x - mu))``, ``g_beta = sum(gy)`` (``a = gamma r``), the
adjoints of incoming ``(ggx, gg_gamma, gg_beta)`` are::

    d/d gy    = a ggx + (x - mu) r gg_gamma + gg_beta      (one eval batch norm of x, plus a ggx)
    d/d x     = r gg_gamma gy
    d/d gamma = r sum(ggx gy)

:func:`with_eval_batchnorm` gives a private copy of a model with every eval-mode affine BatchNorm swapped
for one (same parameter and buffer names, so ``functional_call`` dicts still fit). Only the Hessian
operator's graph building uses it; every other computation keeps the native module.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _channel(x: Tensor) -> tuple[int, ...]:
    return (1, -1) + (1,) * (x.ndim - 2)


def _reduce_dims(x: Tensor) -> list[int]:
    return [0, *range(2, x.ndim)]


class _EvalBNBackward(torch.autograd.Function):
    """``(gy, x, gamma) -> (gx, g_gamma, g_beta)`` by the native kernel; its own backward written out."""

    @staticmethod
    def forward(ctx, gy: Tensor, x: Tensor, w: Tensor, mean: Tensor, var: Tensor, eps: float):
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(gy, x, w, mean, var, None, None, False, eps,
                                                               [True, True, True])
        ctx.save_for_backward(gy, x, w, mean, var)
        ctx.eps = eps
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx: Tensor | None, ggw: Tensor | None, ggb: Tensor | None):
        gy, x, w, mean, var = ctx.saved_tensors
        r = torch.rsqrt(var + ctx.eps)
        s = _channel(x)
        g_gy = g_x = g_w = None
        if ggw is not None or ggb is not None:
            zeros = torch.zeros_like(w)
            g_gy = torch.batch_norm(x, zeros if ggw is None else ggw, zeros if ggb is None else ggb, mean, var,
                                    False, 0.0, ctx.eps, True)
        if ggx is not None:
            t = ggx * (w * r).view(s)
            g_gy = t if g_gy is None else g_gy.add_(t)
            g_w = (ggx * gy).sum(_reduce_dims(x)) * r
        if ggw is not None:
            g_x = gy * (r * ggw).view(s)
        return g_gy, g_x, g_w, None, None, None


class _EvalBN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor, mean: Tensor, var: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(x, w, mean, var)
        ctx.eps = eps
        return torch.batch_norm(x, w, b, mean, var, False, 0.0, eps, True)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, w, mean, var = ctx.saved_tensors
        gx, gw, gb = _EvalBNBackward.apply(gy, x, w, mean, var, ctx.eps)
        return gx, gw, gb, None, None, None


class EvalBatchNorm(nn.Module):
    """An eval-mode affine BatchNorm (1d/2d/3d) with the same parameters and buffers, cheap to differentiate twice."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        if bn.num_batches_tracked is not None:
            self.register_buffer("num_batches_tracked", bn.num_batches_tracked)

    def forward(self, x: Tensor) -> Tensor:
        return _EvalBN.apply(x, self.weight, self.bias, self.running_mean, self.running_var, self.eps)


def _swappable(m: nn.Module) -> bool:
    return (type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) and not m.training and m.affine
            and m.running_mean is not None and not (m._forward_hooks or m._forward_pre_hooks))


def with_eval_batchnorm(model: nn.Module) -> nn.Module | None:
    """A deep copy of ``model`` with every eval-mode affine BatchNorm replaced by :class:`EvalBatchNorm`, or
    ``None`` when there is none (nothing to gain)."""
    if not any(_swappable(m) for m in model.modules()):
        return None
    out = copy.deepcopy(model)

    def walk(m: nn.Module) -> None:
        for name, child in m._modules.items():
            if child is None:
                continue
            if _swappable(child):
                m._modules[name] = EvalBatchNorm(child)
            else:
                walk(child)

    walk(out)
    return out


__all__ = ["EvalBatchNorm", "with_eval_batchnorm"]
