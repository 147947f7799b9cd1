"""Mode connectivity between two runs: the loss along a linear path or a trained Bezier curve, and the
loss over the plane through A, B and the curve's control point (what the CLI, UI and reports show)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from ..connectivity import (
    CurveKind,
    PathResult,
    _check_pair,
    bezier_curve,
    bezier_plane,
    check_compatible,
    linear_path,
)
from ..directions import DirectionSet, plane_through
from ..functional import LossFunction
from ..models import has_batchnorm
from ..params import Params, detached_params
from ..progress import ProgressFn
from ..results import clean as _clean
from ..surface import Surface, surface_2d
from .resolve import as_run, loss_function


@dataclass(frozen=True)
class ConnectivityResult:
    """Mode connectivity between two runs (what the CLI, UI and reports show).

    Attributes:
        curve: ``"linear"`` or ``"bezier"``.
        path: the loss along the curve.
        endpoints: ``{"a": {...}, "b": {...}}`` with each run's name, loss and accuracy on the path.
        settings: the settings used.
        linear: for a Bezier curve, the linear path on the same data, for comparison.
        plane: for a Bezier curve, coordinates of A, B, C and of the curve points in the orthonormal
            basis of the plane through A, B, C (origin A, first axis towards B); ``None`` otherwise.
        train_history: the Bezier training losses.
        plane_surface: for a Bezier curve asked with ``plane_grid > 0``, the loss over the plane
            through A, B and C in the same basis as ``plane`` (see :func:`plane_surface`).
        control: the trained control point (not in :meth:`to_dict`).
    """

    curve: str
    path: PathResult
    endpoints: dict
    settings: dict
    linear: PathResult | None = None
    plane: dict | None = None
    train_history: tuple[dict, ...] = ()
    plane_surface: Surface | None = None
    control: Params | None = field(default=None, repr=False, compare=False)

    @property
    def barrier(self) -> float:
        return self.path.barrier

    def to_dict(self) -> dict:
        out = {
            "curve": self.curve,
            **self.path.to_dict(),
            "endpoints": self.endpoints,
            "settings": dict(self.settings),
        }
        if self.linear is not None:
            out["linear"] = self.linear.to_dict()
        if self.curve == "bezier":
            out["plane"] = self.plane
            out["train_history"] = list(self.train_history)
            out["plane_surface"] = None if self.plane_surface is None else self.plane_surface.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ConnectivityResult:
        """Inverse of :meth:`to_dict` (the control point's tensors are not in the JSON form)."""
        ps = d.get("plane_surface")
        return cls(
            curve=d["curve"], path=PathResult.from_dict(d), endpoints=dict(d["endpoints"]),
            settings=dict(d.get("settings") or {}),
            linear=None if d.get("linear") is None else PathResult.from_dict(d["linear"]),
            plane=d.get("plane"), train_history=tuple(d.get("train_history") or ()),
            plane_surface=None if ps is None else Surface.from_dict(ps),
        )


def connect_runs(
    run_a: Any,
    run_b: Any,
    *,
    curve: CurveKind = "linear",
    n_points: int = 21,
    samples: int | None = 512,
    split: Literal["train", "test"] = "train",
    seed: int = 0,
    bezier_steps: int = 300,
    bezier_lr: float = 1e-2,
    bezier_batch_size: int = 128,
    dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
    plane_grid: int = 0,
) -> ConnectivityResult:
    """Loss along a linear path or a trained Bezier curve between two runs of the same model and data.

    Both runs are evaluated on the same fixed, seeded subset of ``samples`` examples of ``split``
    (``None`` = all). With BatchNorm every path point gets statistics recomputed over that subset, so
    the endpoint values can differ slightly from each run's own eval loss (they use their training
    statistics); the barrier is computed consistently on the recalibrated path.

    For a Bezier curve with ``plane_grid > 0`` the result also holds ``plane_surface``, the loss over
    the plane through A, B and the trained control point on a ``plane_grid x plane_grid`` grid.

    Raises:
        ValueError: the runs have different model specs or datasets, or settings are invalid.
    """
    run_a, run_b = as_run(run_a), as_run(run_b)
    if curve not in ("linear", "bezier"):
        raise ValueError(f"unknown curve {curve!r}; choose 'linear' or 'bezier'")
    check_compatible(run_a.meta, run_b.meta)
    loss_fn = loss_function(run_a, split=split, samples=samples, seed=seed, dtype=dtype, device=None)
    theta_a = loss_fn.params0
    theta_b = {
        k: v.to(loss_fn.device, loss_fn.dtype)
        for k, v in detached_params(run_b.model).items()
    }
    _check_pair(theta_a, theta_b)
    bn = has_batchnorm(loss_fn.model)
    recal = (loss_fn.X, loss_fn.y) if bn else None
    settings: dict[str, Any] = {
        "curve": curve, "n_points": n_points, "samples": samples, "n_examples": loss_fn.n, "split": split,
        "seed": seed, "batchnorm_recalibrated": bn,
    }
    linear: PathResult | None = None
    plane, history, control = None, (), None
    if curve == "linear":
        path = linear_path(loss_fn, theta_a, theta_b, n_points=n_points, recalibrate_bn=recal, progress=progress)
    else:
        def lin_progress(f: float, msg: str) -> None:
            if progress is not None:
                progress(0.1 * f, f"linear {msg}")

        def bez_progress(f: float, msg: str) -> None:
            if progress is not None:
                progress(0.1 + 0.9 * f, msg)

        linear = linear_path(loss_fn, theta_a, theta_b, n_points=n_points, recalibrate_bn=recal, progress=lin_progress)
        bez = bezier_curve(
            loss_fn, theta_a, theta_b, steps=bezier_steps, lr=bezier_lr, batch_size=bezier_batch_size, seed=seed,
            n_points=n_points, progress=bez_progress,
        )
        path, history, control = bez.path, bez.train_history, bez.control
        plane = bezier_plane(theta_a, theta_b, control, path.ts)
        settings.update({f"bezier_{k}": v for k, v in bez.settings.items() if k != "n_points"})
    endpoints = {
        "a": {"name": run_a.name, "loss": path.loss[0], "accuracy": _clean(path.accuracy[0])},
        "b": {"name": run_b.name, "loss": path.loss[-1], "accuracy": _clean(path.accuracy[-1])},
    }
    res = ConnectivityResult(
        curve=curve, path=path, endpoints=endpoints, settings=settings, linear=linear, plane=plane,
        train_history=tuple(history), control=control,
    )
    if plane_grid and curve == "bezier":
        if progress is not None:
            progress(0.99, "loss over the plane through A, B and the control point")
        res = replace(res, plane_surface=plane_surface(loss_fn, theta_b, res, plane_grid))
    return res


def plane_surface(loss_fn: LossFunction, theta_b: Params, result: ConnectivityResult, grid: int) -> Surface | None:
    """Loss over the plane through A (``loss_fn.params0``), B and the trained Bezier control point C.

    The plane's orthonormal basis is the one of ``result.plane`` (origin A, first axis towards B,
    :func:`~landscape_core.directions.plane_through`), so A, B, C and the curve's coordinates can be
    drawn on it directly. The grid covers their bounding box padded by 25% of its extent per axis.
    ``None`` for a linear path or a control point on the line AB.
    """
    if result.control is None or result.plane is None:
        return None
    theta_a = loss_fn.params0
    theta_b = {k: v.to(loss_fn.device, loss_fn.dtype) for k, v in theta_b.items()}
    control = {k: v.to(loss_fn.device, loss_fn.dtype) for k, v in result.control.items()}
    origin, d1, d2, coords = plane_through(theta_a, theta_b, control)
    pts = np.vstack([coords, np.asarray(result.plane["curve"], np.float64)])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.25 * np.maximum(hi - lo, 1e-9)
    span = ((float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1])))
    ds = DirectionSet("runs", [d1, d2], None, "none", False, labels=("distance along A->B", "distance towards C"))
    return surface_2d(loss_fn, d1, d2, span=span, grid=int(grid), origin=origin, directions=ds)


__all__ = ["ConnectivityResult", "connect_runs", "plane_surface"]
