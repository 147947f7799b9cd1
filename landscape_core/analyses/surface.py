"""The loss surface of a run around its trained weights: ``compute_surface`` (what the CLI and the UI call).

Builds the directions (random filter-normalised, PCA of the trajectory, Hessian eigenvectors, the
gradient, or the plane through other runs), evaluates the grid with :mod:`landscape_core.surface` and
caches the result on disk keyed on the weights hash and every setting.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import directions as D
from ..constants import DIRECTION_KINDS
from ..directions import NORMALIZATIONS
from ..parallel import cached_call
from ..params import Params, dot, norm
from ..progress import ProgressFn
from ..surface import Surface, _check_grid, surface_1d, surface_2d
from ..trajectory import TrajectoryProjection, project_snapshots
from .resolve import as_run, loss_function


@dataclass(frozen=True)
class SurfaceResult:
    """A run's surface plus provenance (what :func:`compute_surface` returns and caches).

    Attributes:
        surface: the :class:`Surface`.
        run_name, weights_hash: which weights it was computed at.
        settings: every setting that determines it (the cache key is built from these).
        trajectory: for PCA directions, the projected training trajectory.
        points: for ``("runs", ...)`` directions, each run's name and coordinates on the plot.
        cached: whether this result came from the disk cache.
    """

    surface: Surface
    run_name: str
    weights_hash: str
    settings: dict
    trajectory: TrajectoryProjection | None = None
    points: list[dict] | None = None
    cached: bool = False

    def to_dict(self) -> dict:
        d = self.surface.to_dict()
        d.update(
            run=self.run_name,
            weights_hash=self.weights_hash,
            settings={**d["settings"], **self.settings},
            trajectory=None if self.trajectory is None else self.trajectory.to_dict(),
            points=self.points,
            cached=self.cached,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SurfaceResult:
        """Inverse of :meth:`to_dict` (the run-level settings are kept merged with the surface's)."""
        traj = d.get("trajectory")
        return cls(
            surface=Surface.from_dict(d), run_name=d["run"], weights_hash=d["weights_hash"],
            settings=dict(d.get("settings") or {}),
            trajectory=None if traj is None else TrajectoryProjection.from_dict(traj),
            points=d.get("points"), cached=bool(d.get("cached", False)),
        )

    @property
    def labels(self) -> list[str]:
        """Axis labels of the surface (from its directions)."""
        return list(self.surface.directions.labels)


def _padded_box(pts: np.ndarray, span: float) -> list[tuple[float, float]]:
    """Bounding box of ``pts`` (with the origin), padded by ``0.25 * span`` of its extent per axis."""
    pts = np.vstack([pts, np.zeros((1, pts.shape[1]))])
    lo, hi = pts.min(0), pts.max(0)
    ext = np.maximum(hi - lo, 1e-12)
    pad = 0.25 * span * ext
    return [(float(lo[j] - pad[j]), float(hi[j] + pad[j])) for j in range(pts.shape[1])]


def _align_zero(lo: float, hi: float, n: int) -> tuple[float, float]:
    """Widen ``[lo, hi]`` (containing 0) by at most one step so that 0 is a node of ``linspace(lo, hi, n)``."""
    h = (hi - lo) / max(n - 2, 1)
    lo2 = h * math.floor(lo / h)
    return lo2, lo2 + (n - 1) * h


def _scaled(d: Params, target: float) -> Params:
    n = norm(d)
    return {k: v * (target / max(n, 1e-300)) for k, v in d.items()}


def _compute_surface_uncached(run: Any, opts: dict, other_runs: list, n_jobs: int, scheduler: Any,
                              progress: ProgressFn | None) -> SurfaceResult:
    dims, kind, grid, span, seed = opts["dims"], opts["directions"], opts["grid"], opts["span"], opts["seed"]
    nz, ig = opts["normalization"], opts["ignore_1d"]
    loss_fn = loss_function(run, split=opts["split"], samples=opts["samples"], seed=opts["data_seed"], device=None)
    theta0 = loss_fn.params0
    trajectory, points, extra = None, None, {}
    labels: tuple[str, ...] = ("alpha", "beta")[:dims]
    ev = None
    if kind == "random":
        dirs = [D.random_direction(theta0, normalization=nz, ignore_1d=ig, seed=seed)] if dims == 1 else list(
            D.random_plane(theta0, normalization=nz, ignore_1d=ig, seed=seed))
        box = [(-span, span)] * dims
    elif kind == "gradient":
        g = D.gradient_direction(loss_fn, normalization=nz, ignore_1d=ig)
        dirs = [g]
        labels = ("-gradient", "random (orthogonalised)")[:dims]
        if dims == 2:
            r = D.random_direction(theta0, normalization=nz, ignore_1d=ig, seed=seed)
            c = dot(r, g) / max(dot(g, g), 1e-300)
            r = {k: r[k] - c * g[k] for k in r}
            dirs.append(_scaled(r, norm(g)))
        box = [(-span, span)] * dims
    elif kind == "hessian":
        vecs, vals = D.hessian_directions(loss_fn, k=dims, seed=seed)
        scale = norm(theta0) if nz != "none" else 1.0
        dirs = [_scaled(v, scale) for v in vecs]
        extra = {"eigenvalues": [float(x) for x in vals], "scale": scale}
        labels = tuple(f"Hessian eigvec {i + 1} (lambda={v:.3g})" for i, v in enumerate(vals))
        box = [(-span, span)] * dims
    elif kind == "pca":
        snaps, steps = run.trajectory()
        pca = D.pca_directions(snaps, theta0, k=dims)
        dirs = pca.directions
        ev = tuple(float(x) for x in pca.explained_variance_ratio)
        labels = tuple(f"PC{i + 1} ({100 * x:.1f}%)" for i, x in enumerate(ev))
        trajectory = project_snapshots(loss_fn, snaps, steps, pca=pca)
        box = _padded_box(trajectory.coords, span)
    else:  # runs
        others = [loss_function(r, split=opts["split"], samples=1, seed=0, device=None).params0 for r in other_runs]
        for r, th in zip(other_runs, others):
            bad = [k for k in theta0 if k not in th or th[k].shape != theta0[k].shape]
            if bad or th.keys() != theta0.keys():
                raise ValueError(f"run {r.name!r} has a different architecture from {run.name!r} (parameter {bad[:1]})")
        names = [run.name] + [r.name for r in other_runs]
        if dims == 1:
            _, d = D.line_through(theta0, others[0])
            dirs = [d]
            coords = np.array([[0.0], [1.0]])
            labels = (f"t: {names[0]} -> {names[1]}",)
        else:
            _, d1, d2, coords = D.plane_through(theta0, others[0], others[1])
            dirs = [d1, d2]
            labels = ("distance along A->B", "distance towards C")
        points = [{"run": n, "coords": [float(x) for x in c]} for n, c in zip(names, coords)]
        box = _padded_box(coords, span)
    if kind in ("pca", "runs"):
        box = [_align_zero(lo, hi, grid) for lo, hi in box]
    dset = D.DirectionSet(
        kind=kind, directions=dirs, seed=seed if kind in ("random", "hessian") or (kind == "gradient" and dims == 2) else None,
        normalization=nz, ignore_1d=ig, explained_variance=ev, labels=labels, extra=extra,
    )
    common = {"progress": progress, "n_jobs": n_jobs, "scheduler": scheduler, "directions": dset}
    if dims == 1:
        surf = surface_1d(loss_fn, dirs[0], span=box[0], grid=grid, **common)
    else:
        surf = surface_2d(loss_fn, dirs[0], dirs[1], span=(box[0], box[1]), grid=grid, **common)
    settings = {k: v for k, v in opts.items()}
    settings["other_runs"] = [r.name for r in other_runs]
    return SurfaceResult(surf, run.name, run.weights_hash, settings, trajectory, points)


def compute_surface(
    run: Any,
    *,
    dims: int = 2,
    directions: str | tuple = "random",
    grid: int = 41,
    span: float = 1.0,
    samples: int | None = 512,
    split: str = "train",
    seed: int = 0,
    normalization: str = "filter",
    ignore_1d: bool = True,
    n_jobs: int = 1,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
    use_cache: bool = True,
) -> SurfaceResult:
    """The loss surface of a run around its trained weights (what the CLI and the UI call).

    Args:
        run: a loaded :class:`~landscape_core.runs.Run` (or a path to one).
        dims: 1 (a line) or 2 (a plane).
        directions: ``"random"`` (filter-normalised Gaussian, Li et al. 2018), ``"pca"`` (of the
            stored trajectory; the result carries the projected trajectory), ``"hessian"`` (top
            eigenvectors by Lanczos, scaled to ``||theta0||`` unless ``normalization="none"``),
            ``"gradient"`` (steepest descent, plus an orthogonalised random direction for 2-D), or
            ``("runs", [run_b])`` / ``("runs", [run_b, run_c])``: the line / plane through the runs,
            each run at its true coordinates.
        grid: points per axis (>= 2).
        span: half-width of the grid in normalised units for random / gradient / hessian; for PCA and
            runs, the padding around the points as a multiple of 25% of their extent.
        samples: examples of the fixed analysis subset (``None``: all).
        split: ``"train"`` or ``"test"``.
        seed: direction seed.
        normalization, ignore_1d: see :mod:`landscape_core.directions`.
        n_jobs, scheduler: parallel evaluation (local processes or a Dask cluster).
        use_cache: read / write the disk cache (keyed on the weights hash, all settings and the code
            version).
    """
    run = as_run(run)
    other_runs: list = []
    if isinstance(directions, (tuple, list)):
        if len(directions) != 2 or directions[0] != "runs":
            raise ValueError(f"directions must be a kind or ('runs', [run_b, ...]), got {directions!r}")
        other_runs = [as_run(r) for r in directions[1]]
        kind = "runs"
    else:
        kind = directions
    if kind not in DIRECTION_KINDS:
        raise ValueError(f"unknown directions {kind!r}; choose from {', '.join(DIRECTION_KINDS)}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if kind == "runs" and len(other_runs) != dims:
        raise ValueError(f"a {dims}-D surface through runs needs {dims} other run(s), got {len(other_runs)}")
    _check_grid(grid)
    if not (isinstance(span, (int, float)) and math.isfinite(span) and span > 0):
        raise ValueError(f"span must be a positive number, got {span!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose 'filter', 'layer' or 'none'")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    opts = {
        "dims": int(dims), "directions": kind, "grid": int(grid), "span": float(span), "samples": samples,
        "split": split, "seed": int(seed), "normalization": normalization, "ignore_1d": bool(ignore_1d),
        "data_seed": 0,
    }
    key = json.dumps({"surface": opts, "weights": run.weights_hash, "dataset": run.meta.get("dataset"),
                      "others": [r.weights_hash for r in other_runs]}, sort_keys=True, default=str)
    computed = []

    def work() -> SurfaceResult:
        computed.append(True)
        return _compute_surface_uncached(run, opts, other_runs, n_jobs, scheduler, progress)

    res = cached_call(work, key=key, use_cache=use_cache)
    if not computed:
        res = replace(res, cached=True)
        if progress is not None:
            progress(1.0, "loaded from cache")
    return res


__all__ = ["DIRECTION_KINDS", "SurfaceResult", "compute_surface"]
