"""Cached wrappers over the engine's high-level analyses (surfaces, Hessian, trajectory, connectivity,
flatness, gradient noise), keyed on the run's weights hash plus plain settings.

Every public ``cached_*`` function takes the run folder path and its ``weights_hash`` (the content
digest that makes the cache key honest: a retrained run at the same path gets a new hash) and plain,
hashable settings, and returns the engine result's ``to_dict()`` (JSON-able, safe to pickle and copy).
Heavy objects never enter the key: the run is loaded inside through the shared
:func:`ui.cache.load_run_cached`.

Long analyses report progress to an ``st.progress`` bar created by the page. ``st.cache_data`` records
element calls made inside a cached function and cannot replay calls on a block created outside it
("a streamlit element is called on some layout block created outside the function"), so these results
live in :func:`_result_store` instead: a process-wide, lock-protected LRU dict (``st.cache_resource``)
keyed exactly like ``st.cache_data`` would be (function name, run path, weights hash, frozen settings),
returning deep copies so callers can never mutate a cached result (the ``st.cache_data`` contract).
Quick analyses without progress use ``st.cache_data`` directly.

A module-level counter (:data:`COMPUTE_COUNT`) counts real computations (cache misses) per analysis;
pages show it so users, and the browser test, can see that a display-only change recomputed nothing.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from landscape_core.constants import DIRECTION_KINDS

from .cache import load_run_cached

Progress = Callable[[float, str], None]
COMPUTE_COUNT: Counter = Counter()


def _count(name: str) -> None:
    COMPUTE_COUNT[name] += 1


class _Store:
    """A bounded LRU of results with a lock (one computation per key at a time)."""

    def __init__(self, max_entries: int = 128) -> None:
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.RLock()
        self.key_locks: dict = {}
        self.max_entries = max_entries

    def get_or_compute(self, key: tuple, fn: Callable[[], dict]) -> dict:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return copy.deepcopy(self.data[key])
            klock = self.key_locks.setdefault(key, threading.Lock())
        with klock:  # a second session asking for the same key waits for the first
            with self.lock:
                if key in self.data:
                    return copy.deepcopy(self.data[key])
            value = fn()
            with self.lock:
                self.data[key] = copy.deepcopy(value)
                while len(self.data) > self.max_entries:
                    self.data.popitem(last=False)
                self.key_locks.pop(key, None)
            return value

    def clear(self) -> None:
        with self.lock:
            self.data.clear()


@st.cache_resource(show_spinner=False)
def _result_store() -> _Store:
    """The process-wide result store (shared by sessions, like ``st.cache_data``)."""
    return _Store()


def _cached(name: str, key: tuple, fn: Callable[[], dict]) -> dict:
    def run() -> dict:
        _count(name)
        out = fn()
        out["computed_at"] = time.time()
        return out

    return _result_store().get_or_compute((name, *key), run)


def has_result(name: str, *key: Any, **settings: Any) -> bool:
    """Whether ``cached_<name>(*key, **settings)`` is already stored (pages then show it without a button)."""
    settings.pop("progress", None)
    full = (name, *key, _freeze(settings)) if settings else (name, *key)
    store = _result_store()
    with store.lock:
        return full in store.data


def clear_results() -> None:
    """Forget every stored analysis result."""
    _result_store().clear()


def _freeze(settings: Mapping[str, Any]) -> tuple:
    """Settings as a sorted tuple of pairs (lists -> tuples) so they hash the same way every time."""

    def fz(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(fz(x) for x in v)
        if isinstance(v, Mapping):
            return tuple(sorted((k, fz(x)) for k, x in v.items()))
        return v

    return tuple(sorted((k, fz(v)) for k, v in settings.items()))


def _thaw(frozen: tuple) -> dict[str, Any]:
    return {k: v for k, v in frozen}


def run_meta(run_path: str) -> dict:
    """``run.json`` of a run folder (through the shared cached run)."""
    return dict(load_run_cached(run_path).meta)


def picked_run() -> tuple[str, dict]:
    """The page's run picker and that run's summary; stops the page (guidance when there are no runs,
    a one-line error for a broken run folder) when there is nothing to analyse."""
    from .common import run_picker, show_error

    run = run_picker()
    if run is None:
        st.stop()
    try:
        info = run_summary(run)
    except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
        show_error(e)
        st.stop()
    return run, info


def run_summary(run_path: str) -> dict:
    """Name, weights hash, parameter count and whether the run stored a trajectory."""
    from landscape_core.models import count_parameters
    from landscape_core.runs import TRAJ_FILE

    run = load_run_cached(run_path)
    return {
        "name": run.name,
        "weights_hash": run.weights_hash,
        "num_params": int(count_parameters(run.model)),
        "has_trajectory": (run.path / TRAJ_FILE).is_file(),
        "n_train": int(len(run.train_data[1])),
        "lr": (run.meta.get("config") or run.meta.get("optimizer") or {}).get("lr"),
    }


def _loss_fn(run: Any, samples: int | None, split: str, seed: int) -> Any:
    from landscape_core.analyses.resolve import loss_function

    return loss_function(run, split=split, samples=samples, seed=seed, device=None)


# --- surfaces -------------------------------------------------------------------------------------


def compute_surface_dict(run_path: str, settings: Mapping[str, Any], progress: Progress | None = None) -> dict:
    """The uncached surface: ``landscape_core.surface.compute_surface(run, ...).to_dict()`` plus
    ``labels`` (axis labels), ``run_coords`` / ``run_names`` (runs' positions in a plane through runs)
    and ``request`` (the settings asked for).

    Settings: ``directions`` (``random``, ``pca``, ``hessian``, ``gradient``, ``runs``), ``runs`` (other
    run paths for ``runs``: one for a line, two for a plane), ``dims``, ``span``, ``grid``, ``samples``,
    ``split``, ``seed``, ``normalization``, ``ignore_1d``.
    """
    from landscape_core.analyses.surface import compute_surface

    s = dict(settings)
    kind = s.pop("directions", "random")
    others = tuple(s.pop("runs", ()) or ())
    if kind not in DIRECTION_KINDS:
        raise ValueError(f"unknown direction kind {kind!r}; choose one of {DIRECTION_KINDS}")
    run = load_run_cached(run_path)
    if kind == "runs":
        if len(others) not in (1, 2):
            raise ValueError(f"directions through runs need 1 or 2 other runs, got {len(others)}")
        s["dims"] = len(others)
        directions: Any = ("runs", [load_run_cached(p) for p in others])
    else:
        directions = kind
    out = compute_surface(run, directions=directions, progress=progress, **s).to_dict()
    out["labels"] = list((out.get("directions") or {}).get("labels") or [])
    pts = out.get("points") or []
    out["run_coords"] = [list(p["coords"]) for p in pts] or None
    out["run_names"] = [p["run"] for p in pts] or None
    out["request"] = {"directions": kind, "runs": list(others),
                      **{k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}}
    return out


def cached_surface(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached loss surface of a run (``Surface.to_dict()`` plus overlays, see :func:`compute_surface_dict`).

    Pass ``progress=callable`` to follow a first (uncached) computation.
    """
    progress = settings.pop("progress", None)
    frozen = _freeze(settings)
    return _cached("surface", (run_path, weights_hash, frozen),
                   lambda: compute_surface_dict(run_path, _thaw(frozen), progress))


# --- curvature -----------------------------------------------------------------------------------


def cached_hessian(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached ``analyze_hessian(run, **settings).to_dict()`` (``progress=`` optional, never hashed)."""
    from landscape_core.analyses.hessian import analyze_hessian

    progress = settings.pop("progress", None)
    frozen = _freeze(settings)
    return _cached("hessian", (run_path, weights_hash, frozen),
                   lambda: analyze_hessian(load_run_cached(run_path), progress=progress, **_thaw(frozen)).to_dict())


def resmooth_density(density: Mapping[str, Any], sigma: float, grid_size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Re-smooth a stored SLQ density (its Ritz nodes and weights) with Gaussian width ``sigma``:
    no new Hessian-vector products (``landscape_core.density.smooth``)."""
    from landscape_core.density import default_grid, smooth

    nodes, weights = density["ritz_values"], density["ritz_weights"]
    grid = default_grid(nodes, sigma, grid_size)
    return grid, smooth(nodes, weights, grid, sigma)


def ritz_history(alpha: Sequence[float], beta: Sequence[float]) -> list[list[float]]:
    """Ritz values after each Lanczos step (``landscape_core.analyses.hessian.ritz_history``)."""
    from landscape_core.analyses.hessian import ritz_history as _ritz_history

    return _ritz_history(alpha, beta)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_estimator_study(run_path: str, weights_hash: str, samples: int | None = 512, split: str = "train",
                           seed: int = 0, lanczos_steps: int = 40, probes: int = 100, exact: bool = True) -> dict:
    """How the estimators converge against the number of HVPs, against the exact spectrum when small.

    Returns Ritz values per Lanczos iteration, per-probe Hutchinson samples (running mean with its
    standard error is drawn from them), and, for models with at most ``exact.MAX_EXACT_PARAMS``
    parameters, the exact eigenvalues and trace of the dense float64 Hessian.
    """
    from landscape_core.analyses.study import estimator_study

    _count("estimators")
    out = estimator_study(load_run_cached(run_path), samples=samples, split=split, seed=seed,
                          lanczos_steps=lanczos_steps, probes=probes, exact=exact).to_dict()
    out["computed_at"] = time.time()
    return out


def cached_sample_budget(run_path: str, weights_hash: str, budgets: Sequence[int], seeds: Sequence[int] = (0, 1, 2),
                         split: str = "train", progress: Progress | None = None) -> dict:
    """lambda_max and trace estimated on data subsets of several sizes and seeds: how estimates stabilise
    as the sample budget grows (the spread across seeds is the subsampling variance)."""
    from landscape_core.analyses.study import sample_budget

    budgets, seeds = tuple(int(b) for b in budgets), tuple(int(s) for s in seeds)
    return _cached("sample_budget", (run_path, weights_hash, budgets, seeds, split),
                   lambda: sample_budget(load_run_cached(run_path), budgets, seeds, split=split,
                                         progress=progress).to_dict())


# --- trajectory, connectivity, flatness, noise ---------------------------------------------------


def _as_dict(x: Any) -> dict:
    return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def cached_trajectory(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached ``project_trajectory(run, **settings).to_dict()`` (``progress=`` optional)."""
    from landscape_core.analyses.trajectory import project_trajectory

    progress = settings.pop("progress", None)
    frozen = _freeze(settings)
    return _cached("trajectory", (run_path, weights_hash, frozen),
                   lambda: _as_dict(project_trajectory(load_run_cached(run_path), progress=progress, **_thaw(frozen))))


@st.cache_data(show_spinner=False, max_entries=32)
def cached_pca_variance(run_path: str, weights_hash: str, k: int = 10) -> list[float]:
    """Explained-variance ratios of the top ``k`` PCA directions of the run's trajectory (``k`` capped
    at the number of snapshots)."""
    from landscape_core.directions import pca_directions
    from landscape_core.params import detached_params

    run = load_run_cached(run_path)
    snaps, _ = run.trajectory()
    s = int(next(iter(snaps.values())).shape[0])
    pca = pca_directions(snaps, detached_params(run.model), k=max(1, min(k, s)))
    return [float(x) for x in pca.explained_variance_ratio]


def _plane_surface(run_a: Any, run_b: Any, res: Any, settings: Mapping[str, Any], grid: int) -> dict | None:
    """Loss over the plane through A, B and the trained Bezier control point C, in the basis of the
    result's ``plane`` coordinates (``landscape_core.analyses.connectivity.plane_surface``)."""
    from landscape_core.analyses.connectivity import plane_surface
    from landscape_core.params import detached_params

    lf = _loss_fn(run_a, settings.get("samples", 512), settings.get("split", "train"), int(settings.get("seed", 0)))
    surf = plane_surface(lf, detached_params(run_b.model), res, grid)
    if surf is None:
        return None
    out = surf.to_dict()
    out["labels"] = list(surf.directions.labels)
    return out


def cached_connectivity(path_a: str, hash_a: str, path_b: str, hash_b: str, *, plane_grid: int = 0,
                        **settings: Any) -> dict:
    """Cached ``connect_runs(run_a, run_b, **settings).to_dict()`` (``progress=`` optional).

    For a Bezier curve with ``plane_grid > 0`` the result also holds ``plane_surface``: the loss over the
    plane through A, B and the trained control point (see :func:`_plane_surface`).
    """
    from landscape_core.analyses.connectivity import connect_runs

    progress = settings.pop("progress", None)
    frozen = _freeze(settings)

    def compute() -> dict:
        run_a, run_b = load_run_cached(path_a), load_run_cached(path_b)
        res = connect_runs(run_a, run_b, progress=progress, **_thaw(frozen))
        out = _as_dict(res)
        if plane_grid and res.curve == "bezier":
            if progress is not None:
                progress(0.99, "loss over the plane through A, B and the control point")
            out["plane_surface"] = _plane_surface(run_a, run_b, res, _thaw(frozen), plane_grid)
        return out

    return _cached("connectivity", (path_a, hash_a, path_b, hash_b, plane_grid, frozen), compute)


def cached_flatness(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached ``flatness_summary(run, **settings).to_dict()`` (``progress=`` optional)."""
    from landscape_core.analyses.flatness import flatness_summary

    progress = settings.pop("progress", None)
    frozen = _freeze(settings)
    return _cached("flatness", (run_path, weights_hash, frozen),
                   lambda: _as_dict(flatness_summary(load_run_cached(run_path), progress=progress, **_thaw(frozen))))


def cached_invariance(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached ``invariance_demo(run, **settings)`` as a dict.

    A function-preserving rescale needs positively homogeneous activations (ReLU). For a run whose
    network uses another activation (tanh...), the demo runs on the same architecture and weights with
    ReLU instead, and says so (``"relu_substitute": True``): no rescaling preserves a tanh network.
    """
    from landscape_core.analyses.invariance import invariance_demo

    frozen = _freeze(settings)
    return _cached("invariance", (run_path, weights_hash, frozen),
                   lambda: invariance_demo(load_run_cached(run_path), substitute_relu=True, **_thaw(frozen)).to_dict())


def cached_noise(run_path: str, weights_hash: str, **settings: Any) -> dict:
    """Cached ``noise_vs_batch_size(run, **settings)`` as a dict (``progress=`` optional)."""
    from landscape_core.analyses.noise import noise_vs_batch_size

    progress = settings.pop("progress", None)
    frozen = _freeze(settings)
    return _cached("noise", (run_path, weights_hash, frozen),
                   lambda: _as_dict(noise_vs_batch_size(load_run_cached(run_path), progress=progress, **_thaw(frozen))))


# --- cost ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=32)
def cost_string(run_path: str, weights_hash: str, samples: int | None, forwards: int = 0, hvps: int = 0,
                plan: str | None = None, settings: tuple = ()) -> str:
    """Human-readable cost estimate from the engine's one planner (``landscape_core.analyses.cost``: times
    one forward / gradient / HVP on the same analysis subset and multiplies by the planned counts).

    ``plan="hessian" | "surface" | "connectivity"`` with ``settings`` (sorted ``(name, value)`` pairs of
    the analysis call's arguments) takes the counts from the analysis itself (e.g. ``planned_hvps``);
    without ``plan``, ``forwards`` and ``hvps`` are used as given.
    """
    from landscape_core.analyses import cost as C

    run = load_run_cached(run_path)
    kw = dict(settings)
    if plan is None:
        est = C.plan_units(run, forwards=forwards, hvps=hvps, samples=samples)
    elif plan == "hessian":
        est = C.plan_hessian(run, **{"samples": samples, **kw})
    elif plan == "surface":
        est = C.plan_surface(run, **{"samples": samples, **kw})
    elif plan == "connectivity":
        est = C.plan_connectivity(run, **{"samples": samples, **kw})
    else:
        raise ValueError(f"unknown cost plan {plan!r}; choose 'hessian', 'surface' or 'connectivity'")
    return est.describe()
