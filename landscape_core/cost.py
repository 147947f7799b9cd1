"""Cost estimate before heavy work: time one forward, one gradient and one HVP, multiply by the counts.

Shown to the user before a surface, a spectrum or a sweep starts ("~3.2 s (120 HVPs x 25 ms)").
Each unit is timed ``repeats`` times after a warm-up call and the median is used.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from .functional import LossFunction
from .hessian import hessian_operator


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
        seconds_total: ``sum_unit count * seconds_per_unit``.
        per_forward, per_gradient, per_hvp: median seconds of one full-data pass of each kind (``None``
            when that kind was not needed).
        counts: ``{"forwards", "gradients", "hvps"}``.
    """

    seconds_total: float
    per_forward: float | None
    per_gradient: float | None
    per_hvp: float | None
    counts: dict = field(default_factory=dict)

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
            "description": self.describe(),
        }


def _median_time(fn, repeats: int) -> float:
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
) -> CostEstimate:
    """Time one of each needed unit on ``loss_fn`` (all its data) and extrapolate to the given counts."""
    for name, c in (("forwards", forwards), ("gradients", gradients), ("hvps", hvps)):
        if not (isinstance(c, int) and c >= 0):
            raise ValueError(f"{name} must be a non-negative integer, got {c!r}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    p = loss_fn.params0
    per_f = per_g = per_h = None
    if forwards:
        def fwd() -> None:
            with torch.no_grad():
                loss_fn(p)

        per_f = _median_time(fwd, repeats)
    if gradients:
        per_g = _median_time(lambda: loss_fn.gradient(p), repeats)
    if hvps:
        op = hessian_operator(loss_fn, mode=mode, check=False)  # type: ignore[arg-type]
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        v = v.to(op.device, op.dtype)
        per_h = _median_time(lambda: op.matvec(v), repeats)
    total = forwards * (per_f or 0.0) + gradients * (per_g or 0.0) + hvps * (per_h or 0.0)
    return CostEstimate(total, per_f, per_g, per_h, {"forwards": forwards, "gradients": gradients, "hvps": hvps})
