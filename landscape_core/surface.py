"""Loss surfaces: the loss (and accuracy) on a 1-D line or 2-D plane through the trained weights.

A grid point is always evaluated at ``theta0 + a*d1 + b*d2`` computed fresh from the origin (never by
accumulating steps), on fixed data in eval mode, as the dataset-mean loss (batch means weighted by
batch size), exactly as :class:`~landscape_core.functional.LossFunction` defines it.

Points are evaluated many at a time by the batched evaluator (:mod:`landscape_core.evaluator`, whose
docstring explains how it is fast); the run-level ``compute_surface`` (directions from a run, disk
cache) lives in :mod:`landscape_core.analyses.surface`.

Orientation: for a 2-D surface, ``loss[j, i]`` is the loss at ``(alphas[i], betas[j])``: rows follow
the second direction (the y axis), columns the first (the x axis), as plotting libraries expect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from .directions import DirectionSet
from .evaluator import DEFAULT_MEMORY_BUDGET, BatchedEvaluator, evaluate_points
from .params import Params
from .progress import ProgressFn
from .results import floats

Span = float | tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]

# --- surfaces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surface:
    """A 1-D or 2-D loss surface and everything needed to reproduce it.

    Attributes:
        alphas: ``(na,)`` coordinates along the first direction.
        betas: ``(nb,)`` coordinates along the second direction (``None`` for 1-D).
        loss: 1-D ``(na,)``; 2-D ``(nb, na)`` with ``loss[j, i]`` at ``(alphas[i], betas[j])``.
        accuracy: same shape as ``loss`` (``nan`` for regression losses).
        center_loss: loss at the origin (theta0), evaluated directly by the loss closure.
        center_accuracy: accuracy at the origin.
        directions: the directions with their kind, seed and settings.
        seed: the direction seed (``None`` if not random).
        settings: grid, span, data and loss settings.
        seconds: wall-clock time of the evaluation.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray
    center_loss: float
    center_accuracy: float
    directions: DirectionSet
    seed: int | None
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dims(self) -> int:
        return 1 if self.betas is None else 2

    @property
    def min_loss(self) -> float:
        return float(np.nanmin(self.loss))

    @property
    def grid(self) -> list[int]:
        return [len(self.alphas)] if self.betas is None else [len(self.alphas), len(self.betas)]

    def to_dict(self) -> dict:
        """JSON-able form (lists; non-finite values become ``None``)."""
        def lst(a: np.ndarray | None) -> Any:
            if a is None:
                return None
            return [lst(x) for x in a] if a.ndim > 1 else [float(x) if np.isfinite(x) else None for x in a]

        return {
            "dims": self.dims,
            "grid": self.grid,
            "alphas": lst(self.alphas),
            "betas": lst(self.betas),
            "loss": lst(self.loss),
            "accuracy": lst(self.accuracy),
            "center_loss": self.center_loss,
            "center_accuracy": self.center_accuracy if math.isfinite(self.center_accuracy) else None,
            "min_loss": self.min_loss,
            "directions": self.directions.to_dict(),
            "seed": self.seed,
            "settings": self.settings,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Surface:
        """Inverse of :meth:`to_dict` (``None`` entries come back as ``nan``)."""
        betas = floats(d.get("betas"))
        return cls(
            alphas=floats(d["alphas"]), betas=betas, loss=floats(d["loss"]), accuracy=floats(d["accuracy"]),
            center_loss=float(d["center_loss"]),
            center_accuracy=float("nan") if d.get("center_accuracy") is None else float(d["center_accuracy"]),
            directions=DirectionSet.from_dict(d["directions"]), seed=d.get("seed"),
            settings=dict(d.get("settings") or {}), seconds=float(d.get("seconds") or 0.0),
        )


def _span_1d(span: Any) -> tuple[float, float]:
    if isinstance(span, (int, float)):
        lo, hi = -float(span), float(span)
    else:
        try:
            lo, hi = (float(x) for x in span)
        except (TypeError, ValueError):
            raise ValueError(f"span must be a positive number or a (lo, hi) pair, got {span!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"span must be positive (lo < hi), got {span!r}")
    return lo, hi


def _span_2d(span: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    if isinstance(span, (int, float)):
        return _span_1d(span), _span_1d(span)
    try:
        a, b = span
    except (TypeError, ValueError):
        raise ValueError(f"span must be a number or ((a0, a1), (b0, b1)), got {span!r}") from None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _span_1d((a, b)), _span_1d((a, b))
    return _span_1d(a), _span_1d(b)


def _check_grid(n: Any, what: str = "grid") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"{what} must be an integer >= 2, got {n!r}")
    if n > 1001:
        raise ValueError(f"{what} must be at most 1001 points per axis, got {n}")
    return int(n)


def _as_set(d: Sequence[Mapping[str, Tensor]], directions: DirectionSet | None) -> DirectionSet:
    if directions is not None:
        return directions
    return DirectionSet(kind="custom", directions=[dict(x) for x in d], seed=None, normalization="none", ignore_1d=False)


def _base_settings(loss_fn: Any) -> dict:
    return {"n_examples": int(loss_fn.n), "loss": loss_fn.loss_name, "dtype": str(loss_fn.dtype).replace("torch.", "")}


def surface_1d(
    loss_fn: Any,
    d: Params,
    *,
    span: Span = 1.0,
    grid: int = 51,
    origin: Params | None = None,
    progress: ProgressFn | None = None,
    chunk: int | None = None,
    n_jobs: int = 1,
    scheduler: Any = None,
    directions: DirectionSet | None = None,
) -> Surface:
    """Loss along ``theta0 + a*d`` for ``grid`` values of ``a`` in ``span`` (``s`` means ``[-s, s]``)."""
    lo, hi = _span_1d(span)
    na = _check_grid(grid)
    t0 = time.perf_counter()
    alphas = np.linspace(lo, hi, na)
    loss, acc = evaluate_points(
        loss_fn, [d], alphas[:, None], origin=origin, n_jobs=n_jobs, scheduler=scheduler, progress=progress, chunk=chunk
    )
    c_loss, c_acc = loss_fn.evaluate(origin)
    ds = _as_set([d], directions)
    settings = {**_base_settings(loss_fn), "grid": [na], "span": [lo, hi]}
    return Surface(alphas, None, loss, acc, c_loss, c_acc, ds, ds.seed, settings, time.perf_counter() - t0)


def surface_2d(
    loss_fn: Any,
    d1: Params,
    d2: Params,
    *,
    span: Span = 1.0,
    grid: int | tuple[int, int] = 41,
    origin: Params | None = None,
    progress: ProgressFn | None = None,
    n_jobs: int = 1,
    scheduler: Any = None,
    chunk: int | None = None,
    directions: DirectionSet | None = None,
) -> Surface:
    """Loss and accuracy on the plane ``theta0 + a*d1 + b*d2`` (Li et al. 2018).

    Args:
        loss_fn: the loss closure (fixed data, eval mode).
        d1, d2: directions (e.g. from :func:`~landscape_core.directions.random_plane`).
        span: ``s`` (both axes ``[-s, s]``), ``(lo, hi)`` (both axes) or ``((a0, a1), (b0, b1))``.
        grid: points per axis, ``n`` or ``(na, nb)``.
        origin: centre point (default ``loss_fn.params0``).
        progress: ``progress(fraction, message)``.
        n_jobs, scheduler: parallel evaluation (see :func:`landscape_core.parallel.parallel_map`).
        chunk: grid points per evaluation chunk (default: from a 512 MB memory budget).
        directions: the :class:`DirectionSet` the directions came from (recorded in the result).
    """
    (a0, a1), (b0, b1) = _span_2d(span)
    na, nb = (grid, grid) if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool) else tuple(grid)
    na, nb = _check_grid(na), _check_grid(nb)
    t0 = time.perf_counter()
    alphas, betas = np.linspace(a0, a1, na), np.linspace(b0, b1, nb)
    A, B = np.meshgrid(alphas, betas)  # (nb, na)
    coords = np.stack([A.ravel(), B.ravel()], axis=1)
    loss, acc = evaluate_points(
        loss_fn, [d1, d2], coords, origin=origin, n_jobs=n_jobs, scheduler=scheduler, progress=progress, chunk=chunk
    )
    c_loss, c_acc = loss_fn.evaluate(origin)
    ds = _as_set([d1, d2], directions)
    settings = {**_base_settings(loss_fn), "grid": [na, nb], "span": [[a0, a1], [b0, b1]]}
    return Surface(
        alphas, betas, loss.reshape(nb, na), acc.reshape(nb, na), c_loss, c_acc, ds, ds.seed, settings,
        time.perf_counter() - t0,
    )


def progressive_surface_2d(
    loss_fn: Any,
    d1: Params,
    d2: Params,
    *,
    span: Span = 1.0,
    levels: Sequence[int] = (11, 21, 41),
    origin: Params | None = None,
    directions: DirectionSet | None = None,
    n_jobs: int = 1,
    scheduler: Any = None,
) -> Iterator[Surface]:
    """Yield the surface on coarse, then finer grids (for a display that sharpens as it computes).

    Points of a coarser level that lie on the finer grid (e.g. 11 -> 21 -> 41, where ``(n_f - 1)`` is a
    multiple of ``(n_c - 1)``) are reused, not recomputed.
    """
    (a0, a1), (b0, b1) = _span_2d(span)
    levels = [_check_grid(n, "level") for n in levels]
    if not levels:
        raise ValueError("levels must not be empty")
    known: dict[tuple[int, int], tuple[float, float]] = {}  # key: exact grid position at the finest level
    finest = max(levels)
    c_loss, c_acc = loss_fn.evaluate(origin)
    ds = _as_set([d1, d2], directions)
    for n in levels:
        t0 = time.perf_counter()
        alphas, betas = np.linspace(a0, a1, n), np.linspace(b0, b1, n)
        keys: list[tuple[int, int] | None] = []
        for j in range(n):
            for i in range(n):
                fi, fj = i * (finest - 1), j * (finest - 1)
                keys.append((fi // (n - 1), fj // (n - 1)) if fi % (n - 1) == 0 and fj % (n - 1) == 0 else None)
        todo = [p for p, key in enumerate(keys) if key is None or key not in known]
        todo_set = set(todo)
        A, B = np.meshgrid(alphas, betas)
        coords = np.stack([A.ravel(), B.ravel()], axis=1)
        loss = np.empty(n * n)
        acc = np.empty(n * n)
        if todo:
            lo, ac = evaluate_points(loss_fn, [d1, d2], coords[todo], origin=origin, n_jobs=n_jobs, scheduler=scheduler)
            loss[todo], acc[todo] = lo, ac
        for p, key in enumerate(keys):
            if key is not None:
                if p not in todo_set:
                    loss[p], acc[p] = known[key]
                else:
                    known[key] = (loss[p], acc[p])
        settings = {**_base_settings(loss_fn), "grid": [n, n], "span": [[a0, a1], [b0, b1]],
                    "level": n, "levels": list(levels), "new_points": len(todo)}
        yield Surface(alphas, betas, loss.reshape(n, n), acc.reshape(n, n), c_loss, c_acc, ds, ds.seed, settings,
                      time.perf_counter() - t0)


__all__ = ["DEFAULT_MEMORY_BUDGET", "BatchedEvaluator", "Surface", "evaluate_points", "progressive_surface_2d",
           "surface_1d", "surface_2d"]
