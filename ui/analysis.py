"""Cached wrappers over the engine's run-level analyses (surfaces, Hessian, trajectory, connectivity,
flatness, gradient noise), keyed on the run's weights hash plus a frozen settings object.

Each analysis has a frozen settings dataclass (:class:`SurfaceSettings`, :class:`HessianSettings`, ...):
the page's widgets return one, it is the cache key, and :meth:`kwargs` gives the engine call's arguments.
Every ``cached_*`` function takes the run folder path, its ``weights_hash`` (the content digest that makes
the key honest: a retrained run at the same path gets a new hash) and the settings, and returns the
engine's result dataclass (``SurfaceResult``, ``CurvatureResult``, ``TrajectoryProjection``, ...). Heavy
objects never enter the key: the run is loaded inside through the shared :func:`ui.cache.load_run_cached`.

Long analyses report progress to an ``st.progress`` bar created by the page. ``st.cache_data`` records
element calls made inside a cached function and cannot replay calls on a block created outside it
("a streamlit element is called on some layout block created outside the function"), so these results
live in :func:`_result_store` instead: a process-wide, lock-protected LRU dict (``st.cache_resource``)
keyed exactly like ``st.cache_data`` would be (function name, run path, weights hash, settings), returning
deep copies so callers can never mutate a cached result (the ``st.cache_data`` contract). Each real
computation (cache miss) adds one to the session counter ``compute:<name>`` (:func:`ui.state.count`).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from landscape_core.analyses import cost as C
from landscape_core.analyses.connectivity import ConnectivityResult, connect_runs, plane_surface
from landscape_core.analyses.flatness import FlatnessResult, flatness_summary
from landscape_core.analyses.hessian import CurvatureResult, analyze_hessian
from landscape_core.analyses.invariance import invariance_demo
from landscape_core.analyses.noise import NoiseSweep, noise_vs_batch_size
from landscape_core.analyses.study import estimator_study, sample_budget
from landscape_core.analyses.surface import SurfaceResult, compute_surface
from landscape_core.analyses.trajectory import TrajectoryProjection, project_trajectory
from landscape_core.constants import DIRECTION_KINDS
from landscape_core.health import run_health
from landscape_core.params import detached_params
from landscape_core.progress import ProgressFn
from landscape_core.surface import Surface

from .cache import load_run_cached
from .state import count

T = TypeVar("T")


class _Store:
    """A bounded LRU of results with a lock (one computation per key at a time)."""

    def __init__(self, max_entries: int = 128) -> None:
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.RLock()
        self.key_locks: dict = {}
        self.max_entries = max_entries

    def get_or_compute(self, key: tuple, fn: Callable[[], T]) -> T:
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


@st.cache_resource(show_spinner=False)
def _result_store() -> _Store:
    """The process-wide result store (shared by sessions, like ``st.cache_data``)."""
    return _Store()


def _cached(name: str, key: tuple, fn: Callable[[], T]) -> T:
    def run() -> T:
        count(f"compute:{name}")
        return fn()

    return _result_store().get_or_compute((name, *key), run)


def has_result(name: str, *key: Any) -> bool:
    """Whether ``cached_<name>(*key)`` is already stored (pages then show it without a button)."""
    store = _result_store()
    with store.lock:
        return (name, *key) in store.data


# --- settings: the cache keys and the engine calls' arguments -----------------------------------------


def _positive(name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be positive, got {value!r}")


def _split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


@dataclass(frozen=True)
class SurfaceSettings:
    """A loss surface: ``directions`` (one of ``DIRECTION_KINDS``), ``runs`` (other run paths for
    ``"runs"``: one for a line, two for a plane; they then set the dimension), grid, span, data subset."""

    directions: str = "random"
    dims: int = 2
    span: float = 1.0
    grid: int = 21
    samples: int | None = 512
    split: str = "train"
    seed: int = 0
    runs: tuple[str, ...] = ()
    normalization: str = "filter"
    ignore_1d: bool = True

    def __post_init__(self) -> None:
        if self.directions not in DIRECTION_KINDS:
            raise ValueError(f"unknown direction kind {self.directions!r}; choose one of {DIRECTION_KINDS}")
        if self.directions == "runs" and len(self.runs) not in (1, 2):
            raise ValueError(f"directions through runs need 1 or 2 other runs, got {len(self.runs)}")
        if self.dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {self.dims!r}")
        _positive("span", self.span)
        _split(self.split)

    @property
    def effective_dims(self) -> int:
        """The surface's dimension: the number of other runs for ``"runs"``, else ``dims``."""
        return len(self.runs) if self.directions == "runs" else self.dims

    @property
    def n_points(self) -> int:
        """Grid points to evaluate."""
        return self.grid ** self.effective_dims

    def kwargs(self) -> dict[str, Any]:
        """``compute_surface`` arguments (the other runs are loaded by :func:`cached_surface`)."""
        d = asdict(self)
        d.pop("runs")
        d["dims"] = self.effective_dims
        return d


@dataclass(frozen=True)
class HessianSettings:
    """``analyze_hessian`` settings (defaults: the engine's, except a 512-example subset)."""

    top_k: int = 5
    trace: bool = True
    trace_probes: int = 50
    trace_method: str = "auto"
    density: bool = False
    density_probes: int = 4
    lanczos_steps: int = 60
    per_layer: bool = False
    smallest: bool = True
    samples: int | None = 512
    split: str = "train"
    seed: int = 0
    exact: bool = False
    operator: str = "hessian"  # issue 15: curvature matrix (landscape_core.curvature_operators.OPERATOR_KINDS)

    def __post_init__(self) -> None:
        _positive("top_k", self.top_k)
        _split(self.split)

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrajectorySettings:
    """``project_trajectory`` settings plus the PCA-plane surface drawn under the path."""

    samples: int | None = 512
    split: str = "train"
    seed: int = 0
    grid: int = 21
    span: float = 1.0

    def kwargs(self) -> dict[str, Any]:
        return {"samples": self.samples, "split": self.split, "seed": self.seed}

    def surface(self) -> SurfaceSettings:
        """The PCA-plane surface under the path."""
        return SurfaceSettings(directions="pca", dims=2, grid=self.grid, span=self.span, samples=self.samples,
                               split=self.split, seed=self.seed)


@dataclass(frozen=True)
class ConnectivitySettings:
    """``connect_runs`` settings; ``plane_grid > 0`` with a Bezier curve also computes the loss over the
    plane through A, B and the trained control point."""

    curve: str = "linear"
    n_points: int = 21
    samples: int | None = 512
    split: str = "train"
    seed: int = 0
    bezier_steps: int = 200
    bezier_lr: float = 1e-2
    plane_grid: int = 0

    def __post_init__(self) -> None:
        if self.curve not in ("linear", "bezier"):
            raise ValueError(f"curve must be 'linear' or 'bezier', got {self.curve!r}")
        _split(self.split)

    def kwargs(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("plane_grid")
        if self.curve == "linear":
            d.pop("bezier_steps")
            d.pop("bezier_lr")
        return d


@dataclass(frozen=True)
class FlatnessSettings:
    """``flatness_summary`` settings."""

    samples: int | None = 256
    n_directions: int = 10
    rho: float = 0.05
    epsilon: float = 1e-3
    ascent_steps: int = 5
    basin_directions: int = 5
    seed: int = 0
    split: str = "train"

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InvarianceSettings:
    """``invariance_demo`` settings."""

    c: float = 10.0
    samples: int = 128
    n_directions: int = 5
    ascent_steps: int = 5
    seed: int = 0

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NoiseSettings:
    """``noise_vs_batch_size`` settings (batch sizes sorted, at least two)."""

    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    n_batches: int = 10
    samples: int | None = 512
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if len(self.batch_sizes) < 2:
            raise ValueError(f"pick at least two batch sizes, got {list(self.batch_sizes)}")

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


# --- runs ------------------------------------------------------------------------------------------


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
    health_banner([info])
    return run, info


def health_banner(infos: Sequence[dict]) -> None:
    """A red line for every run marked diverged / at chance / suspect (``landscape_core.health``)."""
    for info in infos:
        h = info.get("health")
        if h:
            st.error(f"Run **{info['name']}** is marked **{h['status']}**: {h['message']} The analyses below "
                     "describe weights that did not learn; do not read them as a trained minimum.", icon="⚠️")


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
        "health": run_health(run.meta),
    }


def _loss_fn(run: Any, samples: int | None, split: str, seed: int) -> Any:
    from landscape_core.functional import loss_function_for_run

    return loss_function_for_run(run, split=split, samples=samples, seed=seed)


# --- surfaces -------------------------------------------------------------------------------------


def compute_surface_result(run_path: str, settings: SurfaceSettings, progress: ProgressFn | None = None
                           ) -> SurfaceResult:
    """The uncached surface: ``compute_surface(run, ...)`` with the other runs loaded for ``"runs"``."""
    run = load_run_cached(run_path)
    kw = settings.kwargs()
    if settings.directions == "runs":
        kw["directions"] = ("runs", [load_run_cached(p) for p in settings.runs])
    return compute_surface(run, progress=progress, **kw)


def cached_surface(run_path: str, weights_hash: str, settings: SurfaceSettings,
                   progress: ProgressFn | None = None) -> SurfaceResult:
    """Cached loss surface of a run (``progress`` follows a first, uncached computation)."""
    return _cached("surface", (run_path, weights_hash, settings),
                   lambda: compute_surface_result(run_path, settings, progress))


# --- curvature -----------------------------------------------------------------------------------


def cached_hessian(run_path: str, weights_hash: str, settings: HessianSettings,
                   progress: ProgressFn | None = None) -> CurvatureResult:
    """Cached ``analyze_hessian(run, **settings.kwargs())``."""
    return _cached("hessian", (run_path, weights_hash, settings),
                   lambda: analyze_hessian(load_run_cached(run_path), progress=progress, **settings.kwargs()))


def resmooth_density(density: Mapping[str, Any], sigma: float, grid_size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Re-smooth a stored SLQ density (its Ritz nodes and weights) with Gaussian width ``sigma``:
    no new Hessian-vector products (``landscape_core.density.smooth``)."""
    from landscape_core.density import default_grid, smooth

    nodes, weights = density["ritz_values"], density["ritz_weights"]
    grid = default_grid(nodes, sigma, grid_size)
    return grid, smooth(nodes, weights, grid, sigma)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_estimator_study(run_path: str, weights_hash: str, samples: int | None = 512, split: str = "train",
                           seed: int = 0, lanczos_steps: int = 40, probes: int = 100, exact: bool = True) -> dict:
    """How the estimators converge against the number of HVPs, against the exact spectrum when small.

    Returns Ritz values per Lanczos iteration, per-probe Hutchinson samples (running mean with its
    standard error is drawn from them), and, for models with at most ``exact.MAX_EXACT_PARAMS``
    parameters, the exact eigenvalues and trace of the dense float64 Hessian.
    """
    count("compute:estimators")
    return estimator_study(load_run_cached(run_path), samples=samples, split=split, seed=seed,
                           lanczos_steps=lanczos_steps, probes=probes, exact=exact).to_dict()


def cached_sample_budget(run_path: str, weights_hash: str, budgets: Sequence[int], seeds: Sequence[int] = (0, 1, 2),
                         split: str = "train", progress: ProgressFn | None = None) -> dict:
    """lambda_max and trace estimated on data subsets of several sizes and seeds: how estimates stabilise
    as the sample budget grows (the spread across seeds is the subsampling variance)."""
    budgets, seeds = tuple(int(b) for b in budgets), tuple(int(s) for s in seeds)

    return _cached("sample_budget", (run_path, weights_hash, budgets, seeds, split),
                   lambda: sample_budget(load_run_cached(run_path), budgets, seeds, split=split,
                                         progress=progress).to_dict())


# --- trajectory, connectivity, flatness, noise ---------------------------------------------------


def cached_trajectory(run_path: str, weights_hash: str, settings: TrajectorySettings,
                      progress: ProgressFn | None = None) -> TrajectoryProjection:
    """Cached ``project_trajectory(run, samples=, split=, seed=)``."""
    kw = settings.kwargs()
    return _cached("trajectory", (run_path, weights_hash, tuple(sorted(kw.items()))),
                   lambda: project_trajectory(load_run_cached(run_path), progress=progress, **kw))


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


def _plane_surface(run_a: Any, run_b: Any, res: ConnectivityResult, settings: Mapping[str, Any],
                   grid: int) -> Surface | None:
    """Loss over the plane through A, B and the trained Bezier control point (same data subset as the path;
    ``landscape_core.analyses.connectivity.plane_surface``), ``None`` for a linear path."""
    lf = _loss_fn(run_a, settings.get("samples", 512), settings.get("split", "train"), int(settings.get("seed", 0)))
    return plane_surface(lf, detached_params(run_b.model), res, grid)


def cached_connectivity(path_a: str, hash_a: str, path_b: str, hash_b: str, settings: ConnectivitySettings,
                        progress: ProgressFn | None = None) -> tuple[ConnectivityResult, Surface | None]:
    """Cached ``connect_runs(run_a, run_b, **settings.kwargs())`` and, for a Bezier curve with
    ``settings.plane_grid > 0``, the loss over the plane through A, B and the trained control point
    (:func:`_plane_surface`; ``None`` otherwise)."""
    kw = settings.kwargs()

    def compute() -> tuple[ConnectivityResult, Surface | None]:
        run_a, run_b = load_run_cached(path_a), load_run_cached(path_b)
        res = connect_runs(run_a, run_b, progress=progress, **kw)
        plane = None
        if settings.plane_grid and res.curve == "bezier":
            if progress is not None:
                progress(0.99, "loss over the plane through A, B and the control point")
            plane = _plane_surface(run_a, run_b, res, kw, settings.plane_grid)
        return res, plane

    return _cached("connectivity", (path_a, hash_a, path_b, hash_b, settings), compute)


def cached_flatness(run_path: str, weights_hash: str, settings: FlatnessSettings,
                    progress: ProgressFn | None = None) -> FlatnessResult:
    """Cached ``flatness_summary(run, **settings.kwargs())``."""
    return _cached("flatness", (run_path, weights_hash, settings),
                   lambda: flatness_summary(load_run_cached(run_path), progress=progress, **settings.kwargs()))


def cached_invariance(run_path: str, weights_hash: str, settings: InvarianceSettings) -> dict:
    """Cached ``invariance_demo(run, substitute_relu=True, **settings).to_dict()``.

    A function-preserving rescale needs positively homogeneous activations (ReLU). For a run whose
    network uses another activation (tanh...), the demo runs on the same architecture and weights with
    ReLU instead, and says so (``"relu_substitute": True``): no rescaling preserves a tanh network. Each
    measure row states whether it stayed ``invariant`` within the engine's stated ``tolerance``.
    """
    return _cached("invariance", (run_path, weights_hash, settings),
                   lambda: invariance_demo(load_run_cached(run_path), substitute_relu=True,
                                           **settings.kwargs()).to_dict())


def cached_noise(run_path: str, weights_hash: str, settings: NoiseSettings,
                 progress: ProgressFn | None = None) -> NoiseSweep:
    """Cached ``noise_vs_batch_size(run, **settings.kwargs())``."""
    return _cached("noise", (run_path, weights_hash, settings),
                   lambda: noise_vs_batch_size(load_run_cached(run_path), progress=progress, **settings.kwargs()))


# --- cost ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=32)
def cost_string(run_path: str, weights_hash: str, settings: SurfaceSettings | HessianSettings | ConnectivitySettings,
                compare: int = 0) -> str:
    """Human-readable estimate of an analysis' cost from the engine's one planner
    (``landscape_core.analyses.cost``: one forward / gradient / HVP timed on the same subset, times the
    analysis' planned counts); ``compare``: further runs' surfaces with the same settings."""
    run = load_run_cached(run_path)
    if isinstance(settings, HessianSettings):
        est = C.plan_hessian(run, **settings.kwargs())
    elif isinstance(settings, SurfaceSettings):
        est = C.plan_surface(run, grid=settings.grid, dims=settings.effective_dims, surfaces=1 + compare,
                             samples=settings.samples, split=settings.split, seed=settings.seed)
    else:
        est = C.plan_connectivity(run, **settings.kwargs(), plane_grid=settings.plane_grid)
    return est.describe()
