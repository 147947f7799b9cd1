"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ), Gaussian-smoothed.

For a unit probe ``v``, ``m`` Lanczos steps give ``T_m = S diag(theta) S^T``; the Gauss quadrature
nodes ``theta_j`` with weights ``tau_j = S_{1j}^2`` approximate the spectral measure seen from ``v``,
``v^T f(A) v ~ sum_j tau_j f(theta_j)``. Averaged over random probes (Ghorbani, Krishnan, Xiao 2019;
Lin, Saad, Yang 2016) and smoothed by a Gaussian of width ``sigma``,

    phi(t) = (1/P) sum_p sum_j tau_j^(p) N(t; theta_j^(p), sigma^2),

a density that integrates to 1 with first moment ``~ tr(A)/n``. The smoothing width is exposed; the
UI can re-smooth the stored nodes and weights with :func:`smooth` without new matvecs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .lanczos import lanczos_tridiagonal, lanczos_tridiagonals
from .operators import LinearOperator, as_operator

#: Bytes the probes' Lanczos bases may hold together when they run in lockstep (one block product per
#: step); beyond it the probes run one after the other with one basis at a time.
LOCKSTEP_BYTES = 256 * 2**20


@dataclass(frozen=True)
class DensityResult:
    """Smoothed spectral density.

    Attributes:
        grid: ``(G,)`` eigenvalue axis.
        density: ``(G,)`` values (integrates to 1 over the grid).
        ritz_values: one array of quadrature nodes per probe.
        ritz_weights: matching weights (each probe's weights sum to 1).
        sigma: absolute Gaussian width used.
        matvecs, seconds: cost.
    """

    grid: np.ndarray
    density: np.ndarray
    ritz_values: tuple[np.ndarray, ...]
    ritz_weights: tuple[np.ndarray, ...]
    sigma: float
    matvecs: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "grid": [float(x) for x in self.grid],
            "density": [float(x) for x in self.density],
            "ritz_values": [[float(x) for x in r] for r in self.ritz_values],
            "ritz_weights": [[float(x) for x in w] for w in self.ritz_weights],
            "sigma": float(self.sigma),
            "matvecs": int(self.matvecs),
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DensityResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            grid=np.asarray(d["grid"], np.float64), density=np.asarray(d["density"], np.float64),
            ritz_values=tuple(np.asarray(r, np.float64) for r in d["ritz_values"]),
            ritz_weights=tuple(np.asarray(w, np.float64) for w in d["ritz_weights"]),
            sigma=float(d["sigma"]), matvecs=int(d.get("matvecs", 0)), seconds=float(d.get("seconds", 0.0)),
        )


def smooth(ritz_values, ritz_weights, grid, sigma: float) -> np.ndarray:
    """Gaussian-smoothed density on ``grid`` from per-probe nodes and weights (pure NumPy)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    grid = np.asarray(grid, dtype=np.float64)
    out = np.zeros_like(grid)
    P = len(ritz_values)
    if P == 0:
        raise ValueError("need Ritz values of at least one probe")
    for th, tau in zip(ritz_values, ritz_weights):
        th = np.asarray(th, dtype=np.float64)
        tau = np.asarray(tau, dtype=np.float64)
        z = (grid[:, None] - th[None, :]) / sigma
        out += (np.exp(-0.5 * z * z) * tau[None, :]).sum(axis=1)
    return out / (P * sigma * math.sqrt(2 * math.pi))


def default_grid(ritz_values, sigma: float, grid_size: int = 400) -> np.ndarray:
    """A grid from ``min - 5 sigma`` to ``max + 5 sigma`` of all nodes."""
    allv = np.concatenate([np.asarray(r, dtype=np.float64) for r in ritz_values])
    return np.linspace(allv.min() - 5 * sigma, allv.max() + 5 * sigma, grid_size)


def slq_density(
    op: LinearOperator | Tensor,
    *,
    num_probes: int = 4,
    lanczos_steps: int = 60,
    sigma: float | None = None,
    grid_size: int = 400,
    seed: int = 0,
) -> DensityResult:
    """SLQ spectral density of ``op``.

    Args:
        num_probes: independent Rademacher probes.
        lanczos_steps: Lanczos steps per probe (capped at ``n``).
        sigma: *relative* smoothing width, a fraction of the node range (default 0.01).
        grid_size: points of the output grid.
        seed: probe seed.
    """
    op = as_operator(op)
    if not (isinstance(num_probes, int) and num_probes >= 1):
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}")
    if not (isinstance(lanczos_steps, int) and lanczos_steps >= 1):
        raise ValueError(f"lanczos_steps must be a positive integer, got {lanczos_steps!r}")
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2, got {grid_size}")
    rel = 0.01 if sigma is None else float(sigma)
    if not rel > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    t0 = time.perf_counter()
    start = op.matvecs
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    Z = [torch.randint(0, 2, (op.dim,), generator=gen).to(torch.float64) * 2 - 1 for _ in range(num_probes)]
    itemsize = torch.empty(0, dtype=op.dtype).element_size()
    if num_probes > 1 and num_probes * min(lanczos_steps, op.dim) * op.dim * itemsize <= LOCKSTEP_BYTES:
        tridiagonals = lanczos_tridiagonals(op, torch.stack(Z, dim=1), lanczos_steps)  # one matmat per step
    else:
        tridiagonals = [lanczos_tridiagonal(op, z, lanczos_steps) for z in Z]
    for a, b in tridiagonals:
        T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
        th, S = np.linalg.eigh(T)
        nodes.append(th)
        weights.append(S[0, :] ** 2)
    allv = np.concatenate(nodes)
    span = float(allv.max() - allv.min())
    sig = rel * (span if span > 0 else max(abs(float(allv.max())), 1.0))
    grid = default_grid(nodes, sig, grid_size)
    return DensityResult(
        grid=grid,
        density=smooth(nodes, weights, grid, sig),
        ritz_values=tuple(nodes),
        ritz_weights=tuple(weights),
        sigma=sig,
        matvecs=op.matvecs - start,
        seconds=time.perf_counter() - t0,
    )
