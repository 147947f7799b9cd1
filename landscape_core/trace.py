"""Stochastic trace estimation: Hutchinson (fixed budgets, with a standard error) and Hutch++.

Hutchinson (1989): for probes ``z`` with ``E[z z^T] = I`` (Rademacher or Gaussian),
``E[z^T A z] = tr(A)``; the mean of ``N`` independent estimates has standard error
``std(z_i^T A z_i) / sqrt(N)``. Budgets are fixed up front (or a fixed standard-error target): never
stop on "the running mean changed by less than tol", which stops early on lucky streaks and biases
the result.

Hutch++ (Meyer, Musco, Musco, Woodruff 2021): sketch ``Q = orth(A S)`` with ``s`` probes, take the
top part exactly, ``tr(Q^T A Q)``, and Hutchinson only on the deflated rest
``(I - QQ^T) A (I - QQ^T)``. For spectra dominated by a few large eigenvalues (neural-net Hessians)
the rest has a far smaller variance: error ``O(1/m)`` instead of ``O(1/sqrt(m))`` in ``m`` matvecs.

Control variate: when ``tr(B)`` of a nearby operator is known *exactly*, ``tr(A) = tr(B) + tr(A - B)``
and only ``A - B`` is estimated. For a network Hessian ``A = H`` and its Gauss-Newton part ``B = G``
(exact trace from per-example output gradients, ``mlp_curvature.py``), the per-probe spread of
``z^T (H - G) z`` is a fraction of that of ``z^T H z``: :func:`control_variate_trace`.

Example:
    >>> import torch
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> round(hutchpp(A, 30).mean, 6)   # rank <= 10 is captured exactly by a 10-column sketch
    55.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .operators import LinearOperator, as_operator
from .progress import ProgressFn

Distribution = Literal["rademacher", "gaussian"]


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate.

    Attributes:
        mean: the estimate.
        stderr: its standard error (0 when exact, ``nan`` with fewer than two probes).
        matvecs: operator applications used.
        estimates: per-probe values ``z_i^T A z_i`` (Hutch++: of the deflated part, plus the exact part).
        running_mean: mean of the first ``i`` estimates, for convergence plots.
    """

    mean: float
    stderr: float
    matvecs: int
    estimates: np.ndarray
    running_mean: np.ndarray
    method: str = "hutchinson"

    def to_dict(self) -> dict:
        return {
            "mean": float(self.mean),
            "stderr": float(self.stderr) if math.isfinite(self.stderr) else None,
            "matvecs": int(self.matvecs),
            "method": self.method,
            "estimates": [float(x) for x in self.estimates],
            "running_mean": [float(x) for x in self.running_mean],
        }

    @classmethod
    def from_dict(cls, d: dict) -> TraceResult:
        """Inverse of :meth:`to_dict`."""
        return cls(mean=float(d["mean"]), stderr=float("nan") if d["stderr"] is None else float(d["stderr"]),
                   matvecs=int(d["matvecs"]), estimates=np.asarray(d["estimates"], np.float64),
                   running_mean=np.asarray(d["running_mean"], np.float64), method=d.get("method", "hutchinson"))


def _probes(n: int, m: int, distribution: str, gen: torch.Generator, device, dtype) -> Tensor:
    """``m`` probe vectors (columns) drawn on the CPU generator, moved to ``device``."""
    if distribution == "rademacher":
        z = torch.randint(0, 2, (n, m), generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
    elif distribution == "gaussian":
        z = torch.randn(n, m, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"unknown probe distribution {distribution!r}; choose 'rademacher' or 'gaussian'")
    return z.to(device=device, dtype=dtype)


def _stderr(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def _quad(op: LinearOperator, z: Tensor) -> float:
    return float(torch.dot(op.matvec(z).double(), z.double()))


#: Probes per block product: the operator's ``matmat`` gets up to this many columns at once (operators
#: with a block product share work between them; memory ``n x BLOCK``).
BLOCK = 16


def _quads(op: LinearOperator, Z: Tensor) -> np.ndarray:
    """``z_i^T A z_i`` for the columns of ``Z``, by one block product."""
    if Z.shape[1] == 1:
        return np.array([_quad(op, Z[:, 0])])
    return (op.matmat(Z).double() * Z.double()).sum(dim=0).cpu().numpy()


def _probe_block(n: int, m: int, distribution: str, gen: torch.Generator, device, dtype) -> Tensor:
    """``m`` probes drawn one column at a time: the same vectors as ``m`` single draws, in order."""
    return torch.cat([_probes(n, 1, distribution, gen, device, dtype) for _ in range(m)], dim=1)


def hutchinson(
    op: LinearOperator | Tensor,
    num_probes: int,
    *,
    distribution: Distribution = "rademacher",
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TraceResult:
    """Hutchinson's estimator ``tr(A) ~ (1/N) sum_i z_i^T A z_i`` with a fixed budget of ``N`` probes."""
    op = as_operator(op)
    if not (isinstance(num_probes, int) and num_probes >= 1):
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}")
    gen = torch.Generator().manual_seed(seed)
    start = op.matvecs
    est = np.empty(num_probes)
    for i in range(0, num_probes, BLOCK):
        m = min(BLOCK, num_probes - i)
        est[i : i + m] = _quads(op, _probe_block(op.dim, m, distribution, gen, op.device, op.dtype))
        if progress is not None:
            progress((i + m) / num_probes, f"trace probe {i + m}/{num_probes}")
    running = np.cumsum(est) / np.arange(1, num_probes + 1)
    return TraceResult(float(est.mean()), _stderr(est), op.matvecs - start, est, running)


def hutchinson_to_stderr(
    op: LinearOperator | Tensor,
    target_stderr: float,
    max_probes: int,
    *,
    min_probes: int = 10,
    distribution: Distribution = "rademacher",
    seed: int = 0,
) -> TraceResult:
    """Hutchinson until the *standard error* is at most ``target_stderr`` (or ``max_probes`` are used).

    The stopping rule looks at the estimated standard error after at least ``min_probes`` probes, never
    at changes of the running mean.
    """
    op = as_operator(op)
    if not target_stderr > 0:
        raise ValueError(f"target_stderr must be > 0, got {target_stderr}")
    if not (isinstance(max_probes, int) and max_probes >= 2):
        raise ValueError(f"max_probes must be an integer >= 2, got {max_probes!r}")
    min_probes = max(2, min(min_probes, max_probes))
    gen = torch.Generator().manual_seed(seed)
    start = op.matvecs
    # the first min_probes as blocks (no stopping decision before them), then one probe at a time
    est: list[float] = []
    while len(est) < min_probes:
        m = min(BLOCK, min_probes - len(est))
        est.extend(_quads(op, _probe_block(op.dim, m, distribution, gen, op.device, op.dtype)).tolist())
    while _stderr(np.asarray(est)) > target_stderr and len(est) < max_probes:
        z = _probes(op.dim, 1, distribution, gen, op.device, op.dtype)[:, 0]
        est.append(_quad(op, z))
    x = np.asarray(est)
    return TraceResult(float(x.mean()), _stderr(x), op.matvecs - start, x, np.cumsum(x) / np.arange(1, len(x) + 1))


def control_variate_trace(
    exact: float,
    quads: Callable[[Tensor], Tensor],
    dim: int,
    *,
    num_probes: int = 64,
    target_rel_stderr: float | None = None,
    min_probes: int = 8,
    distribution: Distribution = "rademacher",
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    method: str = "control-variate",
) -> TraceResult:
    """``tr(A) = exact + E[z^T (A - B) z]``: Hutchinson on the difference ``A - B`` only, ``tr(B) = exact``.

    Args:
        exact: ``tr(B)``, known exactly.
        quads: probe rows ``Z`` (``m x dim``) -> the ``m`` values ``z^T (A - B) z``.
        num_probes: the budget (all of it used when ``target_rel_stderr`` is ``None``).
        target_rel_stderr: stop, at a block boundary after ``min_probes``, once the standard error is at
            most this fraction of ``|estimate|`` (a standard-error target, never a running-mean rule).
        min_probes, distribution, seed: as for :func:`hutchinson_to_stderr`; blocks of ``min_probes``.

    Returns:
        :class:`TraceResult` whose ``estimates`` are ``exact + z_i^T (A - B) z_i`` and ``matvecs`` the probes
        used (each one evaluation of ``quads``' per-probe work, not a full product).
    """
    if not (isinstance(num_probes, int) and num_probes >= 2):
        raise ValueError(f"num_probes must be an integer >= 2, got {num_probes!r}")
    if target_rel_stderr is not None and not target_rel_stderr > 0:
        raise ValueError(f"target_rel_stderr must be > 0, got {target_rel_stderr}")
    block = max(2, min(min_probes, num_probes))
    gen = torch.Generator().manual_seed(seed)
    est: list[float] = []
    while len(est) < num_probes:
        m = min(block, num_probes - len(est))
        Z = _probes(dim, m, distribution, gen, device, dtype).T.contiguous()
        est.extend(quads(Z).double().cpu().tolist())
        if target_rel_stderr is not None and len(est) >= 2:
            mean = exact + float(np.mean(est))
            if _stderr(np.asarray(est)) <= target_rel_stderr * abs(mean):
                break
    x = exact + np.asarray(est)
    return TraceResult(float(x.mean()), _stderr(x), len(est), x, np.cumsum(x) / np.arange(1, len(x) + 1), method=method)


def hutchpp(
    op: LinearOperator | Tensor,
    num_matvecs: int,
    *,
    sketch_size: int | None = None,
    sketch: Literal["random", "krylov"] = "random",
    distribution: Distribution = "rademacher",
    seed: int = 0,
) -> TraceResult:
    """Hutch++ (Meyer et al. 2021) with ``num_matvecs`` operator applications.

    ``sketch="random"`` (the paper's algorithm): sketch size ``s`` (default ``num_matvecs // 3``),
    ``s`` matvecs for ``A S``, ``s`` for ``A Q``, the remaining ``r = num_matvecs - 2 s`` for Hutchinson
    on the deflated operator.

    ``sketch="krylov"`` (Krylov-aware variant, cf. Chen & Hallman 2023): ``Q`` is an ``s``-step Lanczos
    basis from a random start (default ``s = num_matvecs // 2``); ``tr(Q^T A Q)`` is the sum of the
    Lanczos ``alpha``'s, so the top part costs ``s`` matvecs instead of ``2 s``, and a Krylov space
    captures the top eigenspace far better than one sketch ``A S`` of the same size.

    Both are unbiased for any ``Q`` independent of the residual probes. The standard error is that of
    the deflated Hutchinson part (the sketch part is exact given ``Q``).
    """
    op = as_operator(op)
    if not (isinstance(num_matvecs, int) and num_matvecs >= 3):
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {num_matvecs!r}")
    n = op.dim
    if sketch not in ("random", "krylov"):
        raise ValueError(f"unknown sketch {sketch!r}; choose 'random' or 'krylov'")
    per = 2 if sketch == "random" else 1
    s = num_matvecs // (per + 1) if sketch_size is None else int(sketch_size)
    if not 1 <= s or per * s > num_matvecs:
        raise ValueError(f"sketch_size must be between 1 and num_matvecs/{per}, got {s}")
    s = min(s, n)
    gen = torch.Generator().manual_seed(seed)
    start = op.matvecs
    if sketch == "random":
        S = _probes(n, s, distribution, gen, op.device, op.dtype)
        Q, _ = torch.linalg.qr(op.matmat(S).double())
        Q = Q.to(op.dtype)
        exact = float(torch.einsum("ij,ij->", Q.double(), op.matmat(Q).double()))
    else:
        from .lanczos import krylov_basis

        Q, alpha, _ = krylov_basis(op, _probes(n, 1, distribution, gen, op.device, op.dtype)[:, 0], s)
        exact = float(alpha.sum())
        s = Q.shape[1]
    r = num_matvecs - (op.matvecs - start)
    est = np.empty(r)
    for i in range(0, r, BLOCK):  # residual probes (I - QQ^T) g, in blocks
        G = _probe_block(n, min(BLOCK, r - i), distribution, gen, op.device, op.dtype)
        G = G - Q @ (Q.T @ G)
        est[i : i + G.shape[1]] = _quads(op, G)
    if r:
        mean = exact + float(est.mean())
        se = _stderr(est) if s < n else 0.0
        running = exact + np.cumsum(est) / np.arange(1, r + 1)
    else:
        mean, se, running = exact, (0.0 if s >= n else float("nan")), np.array([exact])
    method = "hutch++" if sketch == "random" else "krylov-hutch++"
    return TraceResult(mean, se, op.matvecs - start, exact + est, running, method=method)
