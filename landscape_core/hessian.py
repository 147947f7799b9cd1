"""The loss Hessian as a linear operator: Hessian-vector products over all batches, with a matvec counter.

``hessian_operator(loss_fn)`` never forms the ``n x n`` matrix. Its ``matvec(v)`` returns

    H v = sum_b w_b * d^2 L_b(theta) / d theta^2 . v,     w_b = n_b / N,

the batch Hessians **averaged weighted by batch size**, so the product equals the full-batch Hessian
applied to ``v`` whatever the batch size. Two ways to differentiate twice:

- ``"fwd_rev"``: forward-over-reverse, ``torch.func.jvp(torch.func.grad(L_b), (theta,), (v,))``;
- ``"rev_rev"``: reverse-over-reverse (double backward), ``grad(<grad L_b(theta), v>, theta)``.

``"auto"`` picks the one measured faster on the device (``bench/bench_curvature.py``). The operator
holds detached copies of the parameters; the caller's model and parameter dicts are never touched.
Estimators (Lanczos, trace, density) take such an operator *or a plain dense symmetric tensor*
(wrapped in :class:`~landscape_core.operators.DenseOperator`), never a model.

Example:
    >>> op = hessian_operator(loss_fn)                       # doctest: +SKIP
    >>> torch.allclose(op.dense(), torch.func.hessian(...))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import grad, jvp

from .functional import LossFunction
from .operators import ParameterOperator
from .params import Params

HVPMode = Literal["auto", "fwd_rev", "rev_rev"]

#: Faster HVP mode per device type, measured by ``bench/bench_curvature.py`` (item d). On CPU double
#: backward won for small MLPs and ResNet-20 batches; on CUDA forward-over-reverse is the usual winner.
AUTO_MODE: dict[str, str] = {"cpu": "rev_rev", "cuda": "fwd_rev"}


def default_mode(device: torch.device | str) -> str:
    """The HVP mode ``"auto"`` resolves to on ``device``."""
    return AUTO_MODE.get(torch.device(device).type, "fwd_rev")


class HessianOperator(ParameterOperator):
    """Hessian of ``loss_fn`` at ``params`` with respect to the parameters ``names`` (others fixed).

    Build it with :func:`hessian_operator`. Vectors are flat, in the order of ``names``.

    Attributes:
        names: the differentiated parameters (a layer or block for per-layer analysis).
        dim: their total number of entries.
        matvecs: Hessian-vector products computed so far (each is one pass over all batches).
        mode: ``"fwd_rev"`` or ``"rev_rev"``.
    """

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        mode: HVPMode = "auto",
        dtype: torch.dtype | None = None,
    ) -> None:
        if mode not in ("auto", "fwd_rev", "rev_rev"):
            raise ValueError(f"unknown HVP mode {mode!r}; choose 'auto', 'fwd_rev' or 'rev_rev'")
        super().__init__(loss_fn, params, names=names, dtype=dtype)
        self.mode = default_mode(self.device) if mode == "auto" else mode

    def _batch_hvp(self, vd: Params, Xb: Tensor, yb: Tensor) -> tuple[Tensor, ...]:
        fixed, lf = self._fixed, self.loss_fn

        if self.mode == "fwd_rev":
            def f(p: Params) -> Tensor:
                return lf.batch_loss({**fixed, **p}, Xb, yb)

            _, hv = jvp(grad(f), (self._var,), (vd,))
            return tuple(hv[k] for k in self._var)
        p = {k: v.detach().requires_grad_(True) for k, v in self._var.items()}
        loss = lf.batch_loss({**fixed, **p}, Xb, yb)
        if not loss.requires_grad:  # the loss does not depend on these parameters
            return tuple(None for _ in p)
        g = torch.autograd.grad(loss, list(p.values()), create_graph=True, allow_unused=True)
        terms = [(gi * vd[k]).sum() for gi, k in zip(g, p) if gi is not None and gi.requires_grad]
        if not terms:  # loss at most linear in these parameters: zero Hessian
            return tuple(None for _ in p)
        gv = torch.stack(terms).sum()
        return torch.autograd.grad(gv, list(p.values()), allow_unused=True)

    def _apply(self, v: Tensor) -> Tensor:
        vd = self._unflatten(v)
        acc: list[Tensor] | None = None
        with torch.enable_grad():
            for Xb, yb, w in self.loss_fn.iter_batches():
                hv = self._batch_hvp(vd, Xb, yb)
                hv = [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, self._var.values())]
                if acc is None:
                    acc = [w * h for h in hv]
                else:
                    for a, h in zip(acc, hv):
                        a.add_(h, alpha=w)
        assert acc is not None
        return torch.cat([a.reshape(-1) for a in acc])

    def __repr__(self) -> str:
        return f"HessianOperator(dim={self.dim}, mode={self.mode!r}, names={len(self.names)}, matvecs={self.matvecs})"


def check_deterministic(loss_fn: LossFunction, params: Mapping[str, Tensor] | None = None) -> None:
    """Refuse curvature work on a stochastic loss: train-mode model, active dropout, train-mode BatchNorm.

    Evaluates the loss twice and checks the two values are identical.

    Raises:
        ValueError: naming the offending module or the two differing loss values.
    """
    model = loss_fn.model
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(f"dropout module {name!r} is in train mode (p={m.p}): curvature needs eval mode")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(f"BatchNorm module {name!r} is in train mode: curvature needs eval mode")
    if model.training:
        raise ValueError("the loss function's model copy is in train mode: curvature needs eval mode")
    p = loss_fn.params0 if params is None else {**loss_fn.params0, **params}
    with torch.no_grad():
        a, b = float(loss_fn(p)), float(loss_fn(p))
    if a != b:
        raise ValueError(f"loss is not deterministic: two evaluations gave {a!r} and {b!r}")


def hessian_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    mode: HVPMode = "auto",
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> HessianOperator:
    """The Hessian of ``loss_fn`` at ``params`` (default: the loss function's own weights) as an operator.

    Args:
        loss_fn: fixed-data loss closure (its batches are averaged weighted by batch size).
        params: the point (a full or partial parameter dict; missing entries from ``loss_fn.params0``).
        names: differentiate only these parameters (per-layer / block Hessians); the rest stay fixed.
        mode: ``"fwd_rev"``, ``"rev_rev"`` or ``"auto"`` (faster one on the device, see ``AUTO_MODE``).
        dtype: compute in this dtype (e.g. ``torch.float64`` for references).
        check: run :func:`check_deterministic` first.
    """
    op = HessianOperator(loss_fn, params, names=names, mode=mode, dtype=dtype)
    if check:
        check_deterministic(op.loss_fn, {**op._fixed, **op._var})
    return op


def parameter_groups(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group parameter names by owning module (``net.0.weight`` + ``net.0.bias`` -> ``net.0``), in order."""
    groups: dict[str, list[str]] = {}
    for n in names:
        mod = n.rsplit(".", 1)[0] if "." in n else n
        groups.setdefault(mod, []).append(n)
    return list(groups.items())
