"""Curvature as linear operators: the one interface every estimator takes.

An operator is symmetric, has ``dim``, ``device``, ``dtype``, ``matvec(v)`` / ``matmat(V)`` and a
``matvecs`` counter. Estimators (Lanczos, power, trace, density, exact) take an operator *or a plain
dense symmetric tensor* (wrapped by :func:`as_operator`), never a model, so each can be tested against
a dense matrix in a few lines.

:class:`ParameterOperator` is the common base of the model curvature operators (Hessian in
``hessian.py``; GGN and Fisher beside it): it holds a fixed-data :class:`LossFunction`, a point
``theta`` (detached copies, the caller's model is never touched), the differentiated parameter subset
``names`` (the rest stay fixed) and the flat-vector <-> parameter-dict conversion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .functional import LossFunction
from .params import Params

#: Largest operator ``dense()`` builds (``n`` matvecs and an ``n x n`` matrix).
MAX_DENSE = 20000


class LinearOperator:
    """Minimal symmetric linear operator protocol: ``shape``, ``dim``, ``matvec``, ``matmat``, counter."""

    dim: int
    device: torch.device
    dtype: torch.dtype
    matvecs: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def _apply(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for a 1-D tensor ``v`` of length ``dim`` (counted in ``matvecs``)."""
        if v.ndim != 1 or v.numel() != self.dim:
            raise ValueError(f"matvec needs a 1-D vector of length {self.dim}, got shape {tuple(v.shape)}")
        out = self._apply(v.to(device=self.device, dtype=self.dtype))
        self.matvecs += 1
        return out

    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` for an ``n x m`` matrix, column by column."""
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"matmat needs a ({self.dim}, m) matrix, got shape {tuple(V.shape)}")
        cols = [self.matvec(V[:, j]) for j in range(V.shape[1])]
        if not cols:
            return torch.zeros(self.dim, 0, device=self.device, dtype=self.dtype)
        return torch.stack(cols, dim=1)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v) if v.ndim == 1 else self.matmat(v)

    def dense(self) -> Tensor:
        """The full matrix, built column by column with ``dim`` matvecs (small operators only)."""
        if self.dim > MAX_DENSE:
            raise ValueError(f"dense() refused: {self.dim} x {self.dim} matrix (limit {MAX_DENSE}); use estimators")
        return self.matmat(torch.eye(self.dim, device=self.device, dtype=self.dtype))


class DenseOperator(LinearOperator):
    """A dense symmetric matrix seen as an operator (counts matvecs like the Hessian operator)."""

    def __init__(self, A: Tensor) -> None:
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        self.A = A
        self.dim = int(A.shape[0])
        self.device = A.device
        self.dtype = A.dtype
        self.matvecs = 0

    def _apply(self, v: Tensor) -> Tensor:
        return self.A @ v

    def dense(self) -> Tensor:
        return self.A.clone()


class DiagonalOperator(LinearOperator):
    """``diag(d)``: an operator with a known spectrum, for testing eigen-solvers and trace estimators."""

    def __init__(self, d: Tensor) -> None:
        if d.ndim != 1:
            raise ValueError(f"diagonal must be 1-D, got shape {tuple(d.shape)}")
        self.d = d
        self.dim = int(d.numel())
        self.device = d.device
        self.dtype = d.dtype
        self.matvecs = 0

    def _apply(self, v: Tensor) -> Tensor:
        return self.d * v


class ScaledOperator(LinearOperator):
    """``D A D`` for a diagonal ``D = diag(s)``: e.g. the symmetric form ``P^-1/2 H P^-1/2``."""

    def __init__(self, op: LinearOperator, s: Tensor) -> None:
        if s.ndim != 1 or s.numel() != op.dim:
            raise ValueError(f"scaling vector needs {op.dim} entries, got shape {tuple(s.shape)}")
        self.op = op
        self.s = s.to(device=op.device, dtype=op.dtype)
        self.dim, self.device, self.dtype = op.dim, op.device, op.dtype
        self.matvecs = 0

    def _apply(self, v: Tensor) -> Tensor:
        return self.s * self.op.matvec(self.s * v)


def as_operator(op: LinearOperator | Tensor) -> LinearOperator:
    """Pass operators through; wrap a dense symmetric tensor in :class:`DenseOperator`."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, Tensor):
        return DenseOperator(op)
    raise ValueError(f"expected a linear operator or a dense square tensor, got {type(op).__name__}")


def _recast(loss_fn: LossFunction, dtype: torch.dtype) -> LossFunction:
    if dtype == loss_fn.dtype:
        return loss_fn
    return LossFunction(
        loss_fn.model, loss_fn.X, loss_fn.y, batch_size=loss_fn.batch_size, loss=loss_fn.loss_name,
        dtype=dtype, device=loss_fn.device,
    )



class ParameterOperator(LinearOperator):
    """Base of the model curvature operators: a loss closure, a point, and a parameter subset.

    Args:
        loss_fn: fixed-data loss closure (batches averaged weighted by batch size).
        params: the point (a full or partial parameter dict; missing entries from ``loss_fn.params0``).
        names: differentiate only these parameters (per-layer / block curvature); the rest stay fixed.
        dtype: compute in this dtype (e.g. ``torch.float64`` for references).

    Attributes:
        names: the differentiated parameters, in vector order.
        dim: their total number of entries.
        matvecs: products computed so far (each is one pass over all batches).
    """

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if dtype is not None:
            loss_fn = _recast(loss_fn, dtype)
        self.loss_fn = loss_fn
        self.device = loss_fn.device
        self.dtype = loss_fn.dtype
        full: Params = {k: v.detach().clone() for k, v in loss_fn.params0.items()}
        if params is not None:
            unknown = sorted(set(params) - set(full))
            if unknown:
                raise ValueError(f"unknown parameter names {unknown[:3]}; the model has {list(full)[:5]}...")
            for k, v in params.items():
                if tuple(v.shape) != tuple(full[k].shape):
                    raise ValueError(f"parameter {k!r} has shape {tuple(v.shape)}, expected {tuple(full[k].shape)}")
                full[k] = v.detach().to(device=self.device, dtype=self.dtype).clone()
        if names is None:
            names = list(full)
        names = list(names)
        if not names:
            raise ValueError("names must select at least one parameter")
        bad = [n for n in names if n not in full]
        if bad:
            raise ValueError(f"unknown parameter name {bad[0]!r}; choose from {list(full)}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        self.names: list[str] = names
        self._var: Params = {k: full[k] for k in names}
        self._fixed: Params = {k: v for k, v in full.items() if k not in self._var}
        self.dim = sum(v.numel() for v in self._var.values())
        self.matvecs = 0

    def params(self) -> Params:
        """The differentiated parameters (copies)."""
        return {k: v.clone() for k, v in self._var.items()}

    def point(self) -> Params:
        """The full parameter dict the operator is evaluated at (fixed and differentiated entries)."""
        return {**self._fixed, **self._var}

    def _unflatten(self, v: Tensor) -> Params:
        out, i = {}, 0
        for k, p in self._var.items():
            out[k] = v[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return out

    def _flatten(self, parts: Sequence[Tensor | None]) -> Tensor:
        """Concatenate per-parameter results (``None`` = zero) into one flat vector, in ``names`` order."""
        return torch.cat([
            (torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(parts, self._var.values())
        ])
