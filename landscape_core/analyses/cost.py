"""The one cost planner: time one forward, one gradient and one HVP, multiply by the planned counts.

Shown to the user before a surface, a spectrum, a path or a sweep starts ("~3.2 s (120 HVPs x 25 ms)").
Each unit is timed ``repeats`` times after a warm-up call and the median is used. The counts come from
the analyses themselves (:func:`landscape_core.analyses.hessian.planned_hvps` for the Hessian, grid
points for surfaces, path points and training steps for connectivity), so the UI never writes its own
formula.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..curvature_operators import curvature_operator
from ..functional import LossFunction
from ..hessian import hessian_operator, parameter_groups
from .hessian import planned_hvps
from .resolve import loss_function


def _fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


@dataclass(frozen=True)
class CostEstimate:
    """Predicted wall time of a job from measured unit costs.

    Attributes:
        seconds_total: ``sum_unit count * seconds_per_unit + setup``.
        per_forward, per_gradient, per_hvp: median seconds of one full-data pass of each kind (``None``
            when that kind was not needed).
        counts: ``{"forwards", "gradients", "hvps"}``.
        setup: one-off seconds per analysis (building the retained gradient graph the HVPs reuse).
    """

    seconds_total: float
    per_forward: float | None
    per_gradient: float | None
    per_hvp: float | None
    counts: dict = field(default_factory=dict)
    setup: float = 0.0

    def describe(self) -> str:
        """Human summary, e.g. ``"~3.2 s (120 HVPs x 25 ms)"``."""
        parts = []
        for key, label, unit in (
            ("hvps", "HVPs", self.per_hvp),
            ("gradients", "gradients", self.per_gradient),
            ("forwards", "forwards", self.per_forward),
        ):
            c = self.counts.get(key, 0)
            if c and unit is not None:
                parts.append(f"{c} {label} x {_fmt_seconds(unit)}")
        inner = " + ".join(parts) if parts else "nothing to do"
        return f"~{_fmt_seconds(self.seconds_total)} ({inner})"

    def to_dict(self) -> dict:
        return {
            "seconds_total": self.seconds_total,
            "per_forward": self.per_forward,
            "per_gradient": self.per_gradient,
            "per_hvp": self.per_hvp,
            "counts": dict(self.counts),
            "setup": self.setup,
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CostEstimate:
        """Inverse of :meth:`to_dict` (the description is derived, not stored)."""
        return cls(d["seconds_total"], d.get("per_forward"), d.get("per_gradient"), d.get("per_hvp"),
                   dict(d.get("counts") or {}), float(d.get("setup") or 0.0))


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one untimed warm-up call."""
    fn()  # warm-up (allocations, lazy initialisation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def estimate_cost(
    loss_fn: LossFunction,
    *,
    forwards: int = 0,
    gradients: int = 0,
    hvps: int = 0,
    repeats: int = 3,
    mode: str = "auto",
    operator: str = "hessian",
    mc_samples: int = 10,
) -> CostEstimate:
    """Time one of each needed unit on ``loss_fn`` (all its data) and extrapolate to the given counts.

    ``hvps`` are products with the curvature matrix ``operator`` (Hessian, GGN, Fisher, ...)."""
    for name, c in (("forwards", forwards), ("gradients", gradients), ("hvps", hvps)):
        if not (isinstance(c, int) and c >= 0):
            raise ValueError(f"{name} must be a non-negative integer, got {c!r}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    p = loss_fn.params0
    per_f = per_g = per_h = None
    setup = 0.0
    if forwards:
        def fwd() -> None:
            with torch.no_grad():
                loss_fn(p)

        per_f = median_time(fwd, repeats)
    if gradients:
        per_g = median_time(lambda: loss_fn.gradient(p), repeats)
    if hvps:
        if operator == "hessian":
            op = hessian_operator(loss_fn, mode=mode, check=False)  # type: ignore[arg-type]
        else:
            op = curvature_operator(operator, loss_fn, mc_samples=mc_samples, check=False)
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        v = v.to(op.device, op.dtype)
        op.matvec(v)  # the first product builds the retained gradient graph (or picks the mode): once
        setup = float(getattr(op, "setup_seconds", 0.0) or 0.0)
        per_h = median_time(lambda: op.matvec(v), repeats)
    total = forwards * (per_f or 0.0) + gradients * (per_g or 0.0) + hvps * (per_h or 0.0)
    total += setup  # counted once per analysis, not per product
    return CostEstimate(total, per_f, per_g, per_h, {"forwards": forwards, "gradients": gradients, "hvps": hvps},
                        setup)


_HESSIAN_COUNTED = ("top_k", "trace", "trace_probes", "density", "density_probes", "lanczos_steps", "per_layer",
                    "smallest")
_HESSIAN_OTHER = ("trace_method", "exact", "tol", "max_iter", "mode", "progress", "split", "seed", "device",
                  "samples", "operator", "mc_samples")


def plan_hessian(source: Any, *, samples: int | None = 512, split: str = "train", seed: int = 0,
                 device: str = "cpu", **settings: Any) -> CostEstimate:
    """Cost of ``analyze_hessian(source, **settings)``: one timed HVP on the same loss (same subset)
    times :func:`~landscape_core.analyses.hessian.planned_hvps`.

    Raises:
        ValueError: a setting ``analyze_hessian`` does not take.
    """
    unknown = sorted(set(settings) - set(_HESSIAN_COUNTED) - set(_HESSIAN_OTHER))
    if unknown:
        raise ValueError(f"unknown analysis setting {unknown[0]!r}")
    lf = loss_function(source, samples=samples, split=split, seed=seed, device=device)
    names = list(lf.params0)
    n = sum(v.numel() for v in lf.params0.values())
    hv = planned_hvps(n, num_layers=len(parameter_groups(names)),
                      **{k: v for k, v in settings.items() if k in _HESSIAN_COUNTED})
    return estimate_cost(lf, hvps=hv, repeats=2, operator=settings.get("operator", "hessian"),
                         mc_samples=settings.get("mc_samples", 10))


#: kept under its former name (``landscape_core.curvature.estimate_analysis_cost``)
estimate_analysis_cost = plan_hessian


_SURFACE_OTHER = ("directions", "span", "normalization", "ignore_1d", "n_jobs", "scheduler", "progress",
                  "use_cache", "runs")
_CONNECT_OTHER = ("bezier_lr", "dtype", "progress")


def _check_known(settings: dict, known: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} setting {unknown[0]!r}")


def plan_surface(source: Any, *, grid: int = 41, dims: int = 2, surfaces: int = 1, samples: int | None = 512,
                 split: str = "train", seed: int = 0, **settings: Any) -> CostEstimate:
    """Cost of ``surfaces`` loss surfaces of ``grid ** dims`` points each (one forward per point).

    Takes ``compute_surface``'s other settings too (they do not change the count).
    """
    _check_known(settings, _SURFACE_OTHER, "surface")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    lf = loss_function(source, samples=samples, split=split, seed=0)
    return estimate_cost(lf, forwards=int(surfaces) * int(grid) ** int(dims), repeats=2)


def plan_connectivity(source: Any, *, n_points: int = 21, curve: str = "linear", bezier_steps: int = 300,
                      bezier_batch_size: int = 128, plane_grid: int = 0, samples: int | None = 512,
                      split: str = "train", seed: int = 0, **settings: Any) -> CostEstimate:
    """Cost of ``connect_runs``: ``n_points`` forwards per path (a Bezier curve also evaluates the
    linear path), ``bezier_steps`` gradients on batches of ``bezier_batch_size`` (counted as
    full-data gradients in proportion to the batch) and ``plane_grid ** 2`` forwards for the plane."""
    _check_known(settings, _CONNECT_OTHER, "connectivity")
    if curve not in ("linear", "bezier"):
        raise ValueError(f"unknown curve {curve!r}; choose 'linear' or 'bezier'")
    lf = loss_function(source, samples=samples, split=split, seed=seed)
    forwards = int(n_points) * (2 if curve == "bezier" else 1)
    gradients = 0
    if curve == "bezier":
        forwards += int(plane_grid) ** 2
        gradients = math.ceil(int(bezier_steps) * min(1.0, int(bezier_batch_size) / max(lf.n, 1)))
    return estimate_cost(lf, forwards=forwards, gradients=gradients, repeats=2)


def plan_units(source: Any, *, forwards: int = 0, gradients: int = 0, hvps: int = 0, samples: int | None = 512,
               split: str = "train", seed: int = 0) -> CostEstimate:
    """Cost of explicit counts of forwards, gradients and HVPs on ``source``'s analysis loss."""
    lf = loss_function(source, samples=samples, split=split, seed=seed)
    return estimate_cost(lf, forwards=forwards, gradients=gradients, hvps=hvps, repeats=2)


__all__ = ["CostEstimate", "estimate_analysis_cost", "estimate_cost", "median_time", "plan_connectivity", "plan_hessian",
           "plan_surface", "plan_units"]
