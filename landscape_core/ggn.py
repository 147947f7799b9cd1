"""The generalised Gauss-Newton matrix ``G = J^T H_out J`` as a linear operator (no second derivatives of the net).

Write the loss of batch ``b`` as ``L_b(theta) = ell(z, y)`` with ``z = f(theta, X_b)`` the network's
outputs (logits). The chain rule splits its Hessian in two (Schraudolph 2002; Martens 2020, "New
insights and perspectives on the natural gradient method", section 8):

    d^2 L_b / d theta^2 = J^T H_out J + sum_k (d ell / d z_k) d^2 z_k / d theta^2,

with ``J = dz / d theta`` and ``H_out = d^2 ell / dz^2``. The first term is the GGN: positive
semi-definite whenever ``ell`` is convex in ``z`` (cross-entropy, squared error), and equal to the
Hessian when the network is linear in ``theta``. Its matvec needs one Jacobian-vector product ``J v``,
one product with the small output Hessian, and one vector-Jacobian product ``J^T u``:

- cross-entropy with softmax, per example ``i`` of a batch of ``n``:
  ``H_out = (diag(p_i) - p_i p_i^T) / n``, ``p_i = softmax(z_i)``;
- the engine's squared error ``0.5 * mean((z - y)^2)`` over ``m`` output entries: ``H_out = I / m``.

Batches are **averaged weighted by size** (``w_b = n_b / N``), so the operator is the full-batch GGN
whatever the batch size. :class:`OutputSpaceOperator` is the shared ``J^T M J`` machinery; the Fisher
operators in ``fisher.py`` reuse it with other output matrices ``M``.

Two ways to get ``J v`` (same numbers, different speed per device):

- ``"fwd"``: forward mode, ``torch.func.jvp`` of the network, then ``torch.func.vjp``;
- ``"rev"``: one forward pass with autograd and the double-vjp trick ``J v = d/du <J^T u, v>``.

Example:
    >>> op = ggn_operator(loss_fn)                 # doctest: +SKIP
    >>> lanczos(op, 5).eigenvalues                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.func import jvp, vjp

from .determinism import checked
from .functional import LossFunction
from .operators import ParameterOperator
from .params import Params

JacobianMode = Literal["auto", "analytic", "fwd", "rev"]

#: ``"auto"`` per device type (the same choice as the Hessian's: reverse mode on CPU, forward on CUDA).
AUTO_JACOBIAN_MODE: dict[str, str] = {"cpu": "rev", "cuda": "fwd"}


def output_hessian_product(loss_name: str, z: Tensor, y: Tensor, u: Tensor) -> Tensor:
    """``H_out u`` with ``H_out = d^2 ell(z, y) / dz^2`` of the engine's batch-mean loss (closed form).

    Args:
        loss_name: ``"cross_entropy"`` (``z``: ``(n, C)`` logits) or ``"mse"`` (``0.5 * mean((z - y)^2)``).
        z: network outputs of one batch.
        y: targets (unused by both closed forms except for the shape of the squared error).
        u: a tangent in output space (shape of ``z``).

    Returns:
        ``(p * u - p (p . u)) / n`` for cross-entropy, ``u / m`` for the squared error over ``m`` entries.
    """
    if loss_name == "cross_entropy":
        if z.ndim != 2:
            raise ValueError(f"cross-entropy GGN needs (n, C) logits, got output shape {tuple(z.shape)}")
        p = torch.softmax(z, dim=-1)
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / z.shape[0]
    if loss_name == "mse":
        zs = z.squeeze(-1)
        m = torch.broadcast_shapes(zs.shape, y.shape).numel()
        if m != z.numel():
            raise ValueError(f"mse targets of shape {tuple(y.shape)} do not match outputs {tuple(z.shape)}")
        return u / m
    raise ValueError(f"no output Hessian for loss {loss_name!r}; choose 'cross_entropy' or 'mse'")


class OutputSpaceOperator(ParameterOperator):
    """``sum_b w_b J_b^T M_b J_b`` for a per-batch output-space matrix ``M_b`` given by :meth:`_output_matvec`.

    Subclasses define ``M_b`` (the GGN's output Hessian, a Fisher's sampled outer products). The
    parameter plumbing (point, subset ``names``, dtype, flat vectors) is :class:`ParameterOperator`'s.

    Attributes:
        mode: ``"fwd"`` (forward-mode JVP) or ``"rev"`` (double-vjp from one forward pass); the GGN (and
            the exact Fisher, the same matrix) also ``"analytic"``: the closed form of a plain MLP
            (:mod:`landscape_core.mlp_curvature`), which ``"auto"`` picks when the model is one.
    """

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        mode: JacobianMode = "auto",
    ) -> None:
        if mode not in ("auto", "analytic", "fwd", "rev"):
            raise ValueError(f"unknown Jacobian mode {mode!r}; choose 'auto', 'analytic', 'fwd' or 'rev'")
        super().__init__(loss_fn, params, names=names, dtype=dtype)
        self._rows = None
        if mode in ("auto", "analytic") and isinstance(self, GGNOperator):
            from .mlp_curvature import named_rows

            with torch.no_grad():
                self._rows = named_rows(self.loss_fn, self.point(), self._var)
            if self._rows is None and mode == "analytic":
                raise ValueError("mode 'analytic' needs a plain MLP (Linear layers and elementwise activations) "
                                 "under cross-entropy or squared error")
        if self._rows is not None:
            self.mode = "analytic"
        else:
            self.mode = AUTO_JACOBIAN_MODE.get(self.device.type, "fwd") if mode in ("auto", "analytic") else mode

    def _output_matvec(self, b: int, z: Tensor, yb: Tensor, u: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _forward(self, p: Params, Xb: Tensor) -> Tensor:
        return self.loss_fn.forward({**self._fixed, **p}, Xb)

    def _batch_product(self, b: int, vd: Params, Xb: Tensor, yb: Tensor) -> list[Tensor | None]:
        """``J_b^T M_b J_b v`` for one batch, per differentiated parameter (``None`` = zero)."""
        if self.mode == "fwd":
            z, jv = jvp(lambda p: self._forward(p, Xb), (self._var,), (vd,))
            z, vjp_fn = vjp(lambda p: self._forward(p, Xb), self._var)
            (g,) = vjp_fn(self._output_matvec(b, z.detach(), yb, jv.detach()))
            return [g[k] for k in self._var]
        p = {k: v.detach().requires_grad_(True) for k, v in self._var.items()}
        z = self._forward(p, Xb)
        if not z.requires_grad:  # the outputs do not depend on these parameters
            return [None] * len(p)
        dummy = torch.zeros_like(z, requires_grad=True)
        jtu = torch.autograd.grad(z, list(p.values()), dummy, create_graph=True, allow_unused=True)
        terms = [(g * vd[k]).sum() for g, k in zip(jtu, p) if g is not None and g.requires_grad]
        if not terms:
            return [None] * len(p)
        jv = torch.autograd.grad(torch.stack(terms).sum(), dummy, allow_unused=True)[0]
        jv = torch.zeros_like(z) if jv is None else jv.detach()
        u = self._output_matvec(b, z.detach(), yb, jv)
        return list(torch.autograd.grad(z, list(p.values()), u, allow_unused=True))

    def _apply(self, v: Tensor) -> Tensor:
        if self._rows is not None:
            with torch.no_grad():
                return self._rows("products", v.unsqueeze(0), ggn=True)[0]
        vd = self._unflatten(v)
        acc: Tensor | None = None
        with torch.enable_grad():
            for b, (Xb, yb, w) in enumerate(self.loss_fn.iter_batches()):
                part = self._flatten([None if g is None else g.detach() for g in self._batch_product(b, vd, Xb, yb)])
                acc = w * part if acc is None else acc.add_(part, alpha=w)
        assert acc is not None
        return acc


class GGNOperator(OutputSpaceOperator):
    """The generalised Gauss-Newton ``sum_b w_b J_b^T H_out,b J_b`` at a point, w.r.t. ``names``.

    Build it with :func:`ggn_operator`. Positive semi-definite for cross-entropy and squared error.
    """

    kind = "ggn"

    def _output_matvec(self, b: int, z: Tensor, yb: Tensor, u: Tensor) -> Tensor:
        return output_hessian_product(self.loss_fn.loss_name, z, yb, u)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, mode={self.mode!r}, names={len(self.names)}, matvecs={self.matvecs})"


def ggn_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    mode: JacobianMode = "auto",
    check: bool = True,
) -> GGNOperator:
    """The GGN of ``loss_fn`` at ``params`` (default: the loss function's own weights) as an operator.

    Args:
        loss_fn: fixed-data loss closure (batches averaged weighted by size).
        params: the point (a full or partial parameter dict).
        names: differentiate only these parameters (per-layer / block GGN).
        dtype: compute in this dtype (``torch.float64`` for references).
        mode: ``"fwd"``, ``"rev"`` or ``"auto"`` (see :data:`AUTO_JACOBIAN_MODE`).
        check: refuse a stochastic loss (train-mode BatchNorm, dropout) first.
    """
    return checked(GGNOperator(loss_fn, params, names=names, dtype=dtype, mode=mode), check)
