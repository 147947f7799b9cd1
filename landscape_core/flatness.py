"""Flatness of a minimum: perturbation profiles with CIs, epsilon-sharpness, adaptive sharpness, basin radius.

Measures (theta = the trained weights, L = the loss on fixed data, eval mode):

- **Perturbation profile**: ``L(theta + r d) - L(theta)`` for random directions ``d`` normalised per
  filter to the weights' own filter norms (Li et al. 2018), so ``r`` is a *relative* size (r = 0.1
  moves every filter by 10% of its norm). Mean, standard deviation and a 95% Student-t confidence
  interval over directions, at each radius.
- **epsilon-sharpness** (Keskar et al. 2017, "On Large-Batch Training for Deep Learning"):

      100 * max_{z in C_eps} (L(theta + z) - L(theta)) / (1 + L(theta)),
      C_eps = { z : |z_i| <= eps (|theta_i| + 1) },

  maximised by projected (sign-)gradient ascent in the box; the value at the best iterate is
  reported (a lower bound on the true maximum).
- **Adaptive sharpness** (Kwon et al. 2021; Andriushchenko et al. 2023, "A Modern Look at the
  Relationship between Sharpness and Generalization"): worst-case ``L(theta + z) - L(theta)`` over
  ``|| z / |theta| ||_2 <= rho`` (elementwise division), by projected normalised gradient ascent on
  ``u = z / |theta|``. Writing the problem in ``u`` makes it invariant to any elementwise rescaling
  of the weights that leaves the network function unchanged.
- **Basin radius**: per random filter-normalised direction, the smallest ``r`` where the loss
  increase exceeds a threshold (geometric scan, then bisection); mean and CI over directions.

Which measures are reparametrisation-invariant? Scaling a ReLU layer's weights and bias by ``c`` and
the next layer's weights by ``1/c`` leaves the function unchanged. The filter-normalised profile and
adaptive sharpness do not move; epsilon-sharpness (the ``+1`` in its box) and the top Hessian
eigenvalue do (Dinh et al. 2017, "Sharp Minima Can Generalize For Deep Nets").
:mod:`landscape_core.analyses.invariance` shows this on a model; the run-level summary of all measures
is :func:`landscape_core.analyses.flatness.flatness_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .directions import random_direction
from .functional import LossFunction
from .params import Params
from .progress import ProgressFn
from .results import clean as _clean
from .results import floats, unclean
from .stats import mean_ci

Normalization = Literal["filter", "layer", "none"]
DEFAULT_RADII = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _loss(loss_fn: LossFunction, params: Mapping[str, Tensor]) -> float:
    with torch.no_grad():
        return float(loss_fn(params))


def _loss_and_grad(loss_fn: LossFunction, params: Mapping[str, Tensor]) -> tuple[float, Params]:
    p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(p)
    grads = torch.autograd.grad(loss, list(p.values()))
    return float(loss.detach()), {k: g.detach() for k, g in zip(p, grads)}


def _check_normalization(normalization: str) -> None:
    if normalization not in ("filter", "layer", "none"):
        raise ValueError(f"unknown normalization {normalization!r}; choose 'filter', 'layer' or 'none'")


# --- perturbation profile --------------------------------------------------------------------------


def perturbation_directions(
    params: Params, n_directions: int, *, normalization: Normalization = "filter", ignore_1d: bool = True, seed: int = 0
) -> list[Params]:
    """The ``n_directions`` random normalised directions used by the profile and the basin radius.

    Drawn one after another from a single generator seeded with ``seed``
    (``landscape_core.directions.random_direction``).
    """
    _check_normalization(normalization)
    if n_directions < 1:
        raise ValueError(f"n_directions must be >= 1, got {n_directions}")
    g = torch.Generator().manual_seed(int(seed))
    return [random_direction(params, normalization=normalization, ignore_1d=ignore_1d, generator=g) for _ in range(n_directions)]


@dataclass(frozen=True)
class PerturbationProfile:
    """Loss increase ``L(theta + r d) - L(theta)`` over random normalised directions ``d``.

    Attributes:
        radii: the relative radii ``r``.
        mean_increase, std: over directions, per radius.
        ci_low, ci_high: 95% Student-t interval for the mean increase, per radius.
        raw: ``(n_radii, n_directions)`` increases.
        base_loss: ``L(theta)``.
        settings: normalisation, ignore_1d, seed, number of directions.
    """

    radii: tuple[float, ...]
    mean_increase: tuple[float, ...]
    std: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    raw: np.ndarray = field(repr=False, compare=False)
    base_loss: float = float("nan")
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "radii": list(self.radii),
            "mean_increase": [_clean(v) for v in self.mean_increase],
            "std": [_clean(v) for v in self.std],
            "ci_low": [_clean(v) for v in self.ci_low],
            "ci_high": [_clean(v) for v in self.ci_high],
            "raw": [[_clean(v) for v in row] for row in np.asarray(self.raw).tolist()],
            "base_loss": _clean(self.base_loss),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerturbationProfile:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``)."""
        return cls(
            radii=tuple(float(r) for r in d["radii"]), mean_increase=tuple(unclean(v) for v in d["mean_increase"]),
            std=tuple(unclean(v) for v in d["std"]), ci_low=tuple(unclean(v) for v in d["ci_low"]),
            ci_high=tuple(unclean(v) for v in d["ci_high"]), raw=floats(d["raw"]), base_loss=unclean(d["base_loss"]),
            settings=dict(d.get("settings") or {}),
        )


def perturbation_profile(
    loss_fn: LossFunction,
    *,
    radii: Sequence[float] = DEFAULT_RADII,
    n_directions: int = 20,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
    seed: int = 0,
    params: Params | None = None,
    progress: ProgressFn | None = None,
) -> PerturbationProfile:
    """Mean loss increase at relative radius ``r`` along random filter-normalised directions.

    ``raw[i, j] = L(theta + r_i d_j) - L(theta)`` with ``d_j`` from :func:`perturbation_directions`
    (each filter of ``d_j`` has the norm of the matching filter of ``theta``). For a quadratic
    ``L`` this is exactly ``r g^T d + r^2 d^T H d / 2``.

    Args:
        loss_fn: the loss closure.
        radii: relative radii (> 0).
        n_directions: random directions (>= 2, for the confidence interval).
        normalization: ``"filter"`` (Li et al.), ``"layer"`` or ``"none"`` (raw Gaussian).
        ignore_1d: zero biases and norm-layer parameters in the directions.
        seed: direction seed.
        params: the centre (default ``loss_fn.params0``).
        progress: ``progress(fraction, message)``.
    """
    radii_t = tuple(float(r) for r in radii)
    if not radii_t or any(not (r > 0 and math.isfinite(r)) for r in radii_t):
        raise ValueError(f"radii must be positive numbers, got {list(radii)}")
    if n_directions < 2:
        raise ValueError(f"n_directions must be >= 2 for a confidence interval, got {n_directions}")
    theta = loss_fn.params0 if params is None else params
    base = _loss(loss_fn, theta)
    dirs = perturbation_directions(theta, n_directions, normalization=normalization, ignore_1d=ignore_1d, seed=seed)
    raw = np.empty((len(radii_t), n_directions))
    for j, d in enumerate(dirs):
        for i, r in enumerate(radii_t):
            raw[i, j] = _loss(loss_fn, {k: theta[k] + r * d[k] for k in theta}) - base
        if progress is not None:
            progress((j + 1) / n_directions, f"direction {j + 1}/{n_directions}")
    mean, std, lo, hi = mean_ci(raw)
    settings = {"n_directions": n_directions, "normalization": normalization, "ignore_1d": ignore_1d, "seed": seed}
    return PerturbationProfile(
        radii=radii_t, mean_increase=tuple(mean.tolist()), std=tuple(std.tolist()), ci_low=tuple(lo.tolist()),
        ci_high=tuple(hi.tolist()), raw=raw, base_loss=base, settings=settings,
    )


# --- worst-case sharpness --------------------------------------------------------------------------


@dataclass(frozen=True)
class SharpnessResult:
    """A worst-case sharpness found by projected gradient ascent.

    Attributes:
        value: the measure (for epsilon-sharpness the Keskar percentage, for adaptive sharpness the
            absolute loss increase) at the best iterate.
        base_loss: ``L(theta)``.
        perturbed_loss: ``L(theta + z*)`` at the best iterate ``z*``.
        history: the measure after each ascent step.
        settings: radius and ascent settings.
    """

    value: float
    base_loss: float
    perturbed_loss: float
    history: tuple[float, ...]
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "value": _clean(self.value),
            "base_loss": _clean(self.base_loss),
            "perturbed_loss": _clean(self.perturbed_loss),
            "history": [_clean(v) for v in self.history],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SharpnessResult:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``)."""
        return cls(value=unclean(d["value"]), base_loss=unclean(d["base_loss"]),
                   perturbed_loss=unclean(d["perturbed_loss"]), history=tuple(unclean(v) for v in d["history"]),
                   settings=dict(d.get("settings") or {}))


def epsilon_sharpness(
    loss_fn: LossFunction,
    *,
    epsilon: float = 1e-3,
    steps: int = 10,
    step_fraction: float = 0.5,
    restarts: int = 1,
    random_start: bool = False,
    seed: int = 0,
    params: Params | None = None,
) -> SharpnessResult:
    """Keskar et al. (2017) sharpness: ``100 max_{|z_i| <= eps(|theta_i| + 1)} (L(theta+z) - L) / (1 + L)``.

    Projected sign-gradient ascent in the box (the L-infinity geometry of ``C_eps``): the first step
    goes to the corner ``bound * sign(grad)`` (the exact maximiser for a linear loss), later steps move
    by ``step_fraction * bound`` and are clipped back into the box. All parameters are perturbed.
    Ascent finds a local maximum; ``restarts`` further runs from seeded uniform random points of the
    box keep the best value found (the result is always a lower bound of the true maximum).

    Args:
        loss_fn: the loss closure.
        epsilon: box size relative to ``|theta_i| + 1``.
        steps: ascent steps.
        step_fraction: later step size as a fraction of the box half-width.
        restarts: number of ascent runs (>= 1); all but the first start at random points of the box.
        random_start: start the first run at a random point of the box too (instead of ``theta``).
        seed: seed of the random starts.
        params: the centre (default ``loss_fn.params0``).
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive number, got {epsilon}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    theta = loss_fn.params0 if params is None else params
    base = _loss(loss_fn, theta)
    bound = {k: epsilon * (v.abs() + 1.0) for k, v in theta.items()}
    g = torch.Generator().manual_seed(int(seed))
    best_loss, history = base, []
    for run in range(restarts):
        rand = random_start or run > 0
        if rand:
            z = {
                k: (2 * torch.rand(v.shape, generator=g, dtype=torch.float64) - 1).to(v.dtype).to(v.device) * bound[k]
                for k, v in theta.items()
            }
        else:
            z = {k: torch.zeros_like(v) for k, v in theta.items()}
        for step in range(steps):
            cur, grad = _loss_and_grad(loss_fn, {k: theta[k] + z[k] for k in theta})
            best_loss = max(best_loss, cur)
            frac = 1.0 if step == 0 and not rand else step_fraction
            z = {k: torch.clamp(z[k] + frac * bound[k] * torch.sign(grad[k]), -bound[k], bound[k]) for k in z}
            new = _loss(loss_fn, {k: theta[k] + z[k] for k in theta})
            best_loss = max(best_loss, new)
            history.append(100.0 * (best_loss - base) / (1.0 + base))
    value = 100.0 * (best_loss - base) / (1.0 + base)
    settings = {
        "epsilon": epsilon, "steps": steps, "step_fraction": step_fraction, "restarts": restarts,
        "random_start": random_start, "seed": seed,
    }
    return SharpnessResult(value=value, base_loss=base, perturbed_loss=best_loss, history=tuple(history), settings=settings)


def adaptive_sharpness(
    loss_fn: LossFunction,
    *,
    rho: float = 0.05,
    steps: int = 10,
    step_fraction: float = 0.5,
    eta: float = 0.0,
    random_start: bool = False,
    seed: int = 0,
    params: Params | None = None,
) -> SharpnessResult:
    """Worst-case adaptive sharpness ``max_{||z / (|theta| + eta)||_2 <= rho} L(theta + z) - L(theta)``.

    Andriushchenko et al. (2023) / Kwon et al. (2021, ASAM). Ascent runs on ``u = z / (|theta| + eta)``
    (the gradient in ``u`` is ``(|theta| + eta) * grad``): the first step is ``rho * g_u / ||g_u||``
    (the one-step ASAM perturbation), later ones add ``step_fraction * rho * g_u / ||g_u||`` and
    project back onto the ball. With ``eta = 0`` (default) the value is invariant to elementwise
    function-preserving rescalings of the weights.

    Args:
        loss_fn: the loss closure.
        rho: radius in the rescaled space.
        steps: ascent steps.
        step_fraction: later step size relative to ``rho``.
        eta: added to ``|theta|`` (ASAM uses 0.01 to let zero weights move; breaks exact invariance).
        random_start: start at a random point of the ball (seeded) instead of ``u = 0``.
        seed: seed of the random start.
        params: the centre (default ``loss_fn.params0``).
    """
    if not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a positive number, got {rho}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    theta = loss_fn.params0 if params is None else params
    base = _loss(loss_fn, theta)
    scale = {k: v.abs() + eta for k, v in theta.items()}

    def project(u: Params) -> Params:
        n = math.sqrt(sum(float((v.double() ** 2).sum()) for v in u.values()))
        return u if n <= rho else {k: v * (rho / n) for k, v in u.items()}

    if random_start:
        g = torch.Generator().manual_seed(int(seed))
        u = {k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(v.dtype).to(v.device) for k, v in theta.items()}
        n = math.sqrt(sum(float((v.double() ** 2).sum()) for v in u.values()))
        u = {k: v * (0.5 * rho / max(n, 1e-30)) for k, v in u.items()}
    else:
        u = {k: torch.zeros_like(v) for k, v in theta.items()}
    best_loss, history = base, []
    for step in range(steps):
        cur, grad = _loss_and_grad(loss_fn, {k: theta[k] + scale[k] * u[k] for k in theta})
        best_loss = max(best_loss, cur)
        gu = {k: scale[k] * grad[k] for k in grad}
        gn = math.sqrt(sum(float((v.double() ** 2).sum()) for v in gu.values()))
        if gn == 0.0:
            history.append(best_loss - base)
            break
        frac = 1.0 if step == 0 and not random_start else step_fraction
        u = project({k: u[k] + (frac * rho / gn) * gu[k] for k in u})
        new = _loss(loss_fn, {k: theta[k] + scale[k] * u[k] for k in theta})
        best_loss = max(best_loss, new)
        history.append(best_loss - base)
    settings = {"rho": rho, "steps": steps, "step_fraction": step_fraction, "eta": eta, "random_start": random_start, "seed": seed}
    return SharpnessResult(
        value=best_loss - base, base_loss=base, perturbed_loss=best_loss, history=tuple(history), settings=settings
    )


# --- basin radius ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasinRadius:
    """Per-direction distance (relative, filter-normalised units) to where the loss rises by ``threshold``.

    Attributes:
        radii: one radius per direction (``max_radius`` where it never rose enough: censored).
        censored: per direction, whether the threshold was not reached within ``max_radius``.
        mean, std, ci_low, ci_high: over directions (censored ones count as ``max_radius``, so the
            mean is then a lower bound).
        settings: threshold, max_radius, directions, seed.
    """

    radii: tuple[float, ...]
    censored: tuple[bool, ...]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "radii": list(self.radii),
            "censored": list(self.censored),
            "n_censored": int(sum(self.censored)),
            "mean": _clean(self.mean),
            "std": _clean(self.std),
            "ci_low": _clean(self.ci_low),
            "ci_high": _clean(self.ci_high),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BasinRadius:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``)."""
        return cls(radii=tuple(float(r) for r in d["radii"]), censored=tuple(bool(c) for c in d["censored"]),
                   mean=unclean(d["mean"]), std=unclean(d["std"]), ci_low=unclean(d["ci_low"]),
                   ci_high=unclean(d["ci_high"]), settings=dict(d.get("settings") or {}))


def basin_radius(
    loss_fn: LossFunction,
    *,
    threshold: float = 0.1,
    n_directions: int = 10,
    max_radius: float = 1.0,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
    scan_points: int = 12,
    bisection_steps: int = 20,
    seed: int = 0,
    params: Params | None = None,
    progress: ProgressFn | None = None,
) -> BasinRadius:
    """Smallest ``r`` with ``L(theta + r d) - L(theta) > threshold``, per random normalised direction.

    A geometric scan ``max_radius * 2^-k`` (k = scan_points-1 ... 0) finds the first radius past the
    threshold; bisection between it and the previous scan point then narrows it to
    ``bisection_steps`` halvings. Directions are :func:`perturbation_directions` (same seed, same
    directions as the profile).

    Args:
        loss_fn: the loss closure.
        threshold: absolute loss increase (> 0).
        n_directions: random directions (>= 2).
        max_radius: largest relative radius searched.
        normalization, ignore_1d: as in :func:`perturbation_profile`.
        scan_points: points of the geometric scan.
        bisection_steps: halvings of the bracketing interval.
        seed: direction seed.
        params: the centre (default ``loss_fn.params0``).
        progress: ``progress(fraction, message)``.
    """
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a positive number, got {threshold}")
    if not (max_radius > 0 and math.isfinite(max_radius)):
        raise ValueError(f"max_radius must be a positive number, got {max_radius}")
    if n_directions < 2:
        raise ValueError(f"n_directions must be >= 2, got {n_directions}")
    if scan_points < 1:
        raise ValueError(f"scan_points must be >= 1, got {scan_points}")
    theta = loss_fn.params0 if params is None else params
    base = _loss(loss_fn, theta)
    dirs = perturbation_directions(theta, n_directions, normalization=normalization, ignore_1d=ignore_1d, seed=seed)
    grid = [max_radius * 2.0 ** (-k) for k in range(scan_points - 1, -1, -1)]
    out, cens = [], []
    for j, d in enumerate(dirs):

        def rise(r: float, d: Params = d) -> float:
            return _loss(loss_fn, {k: theta[k] + r * d[k] for k in theta}) - base

        lo, hi = 0.0, None
        for r in grid:
            if rise(r) > threshold:
                hi = r
                break
            lo = r
        if hi is None:
            out.append(max_radius)
            cens.append(True)
        else:
            for _ in range(bisection_steps):
                mid = 0.5 * (lo + hi)
                if rise(mid) > threshold:
                    hi = mid
                else:
                    lo = mid
            out.append(hi)
            cens.append(False)
        if progress is not None:
            progress((j + 1) / n_directions, f"basin direction {j + 1}/{n_directions}")
    mean, std, lo_ci, hi_ci = (float(v) for v in mean_ci(np.asarray(out)))
    settings = {
        "threshold": threshold, "max_radius": max_radius, "n_directions": n_directions,
        "normalization": normalization, "ignore_1d": ignore_1d, "seed": seed,
    }
    return BasinRadius(
        radii=tuple(out), censored=tuple(cens), mean=mean, std=std, ci_low=lo_ci, ci_high=hi_ci, settings=settings
    )


__all__ = [
    "DEFAULT_RADII", "BasinRadius", "PerturbationProfile", "SharpnessResult", "adaptive_sharpness", "basin_radius",
    "epsilon_sharpness", "perturbation_directions", "perturbation_profile",
]
