"""Hyperparameter sweeps: train a grid of configurations, measure sharpness, correlate it with generalization.

A :class:`SweepSpec` is a base :class:`~landscape_core.training.TrainConfig` (as a dict of fields) plus
grid axes (learning rates, batch sizes, optionally weight decays, SAM radii, optimizers). Its
configurations are the cartesian product. :func:`run_sweep` trains every point and measures, at the
trained weights, on a fixed seeded subset of ``samples`` training examples:

- ``lambda_max``: the top Hessian eigenvalue (Lanczos with full reorthogonalisation);
- ``trace``: the Hessian trace by Hutchinson with a fixed probe budget, with its standard error;
- ``flatness``: the expected loss increase under a random filter-normalised perturbation of relative
  size ``flatness_radius`` (Li et al. 2018 directions), ``E_d[L(theta + r d) - L(theta)]`` over
  ``flatness_directions`` seeded directions (:func:`landscape_core.flatness.perturbation_profile`), with
  its standard error;
- ``per_layer`` (optional): lambda_max of each layer's diagonal Hessian block.

and relates each measure to test accuracy and the generalization gap with Kendall's tau-b (with a
bootstrap interval and p-value, :mod:`landscape_core.stats`), as in Keskar et al. 2017 and Jiang et al.
2020 ("Fantastic generalization measures and where to find them").

Resumable: every finished point leaves its run folder ``runs/<config-hash>/`` and a record
``points/<point-id>.json`` in the sweep folder (both written atomically). Running the same sweep again
reuses every finished point; a trained run without a record (killed while measuring) is measured
without retraining. The training key is a hash of the full training config; the point id also hashes
the measurement settings.

Parallel: points run through :func:`landscape_core.parallel.parallel_map`, i.e. joblib (loky) worker
processes locally, or joblib's Dask backend when a scheduler address / ``distributed.Client`` is given.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .analyses.measures import measure_run
from .progress import ProgressFn
from .results import finite as _finite
from .stats import correlation_table

MEASURES: tuple[str, ...] = ("lambda_max", "trace", "flatness", "per_layer")
TARGETS: tuple[str, ...] = ("test_acc", "gen_gap", "acc_gap")
#: Columns of a sweep's result table, in order (CSV, UI and CLI share them).
COLUMNS: tuple[str, ...] = (
    "id", "optimizer", "lr", "batch_size", "weight_decay", "rho", "epochs", "status",
    "train_loss", "test_loss", "train_acc", "test_acc", "gen_gap", "acc_gap",
    "lambda_max", "trace", "trace_stderr", "flatness", "flatness_stderr", "seconds_per_epoch", "run_path",
)
_AXES = (("lrs", "lr"), ("batch_sizes", "batch_size"), ("weight_decays", "weight_decay"), ("rhos", "rho"),
         ("optimizers", "optimizer"))
_RECORD_VERSION = 2


def _as_tuple(v: Any, name: str, cast: Callable[[Any], Any]) -> tuple | None:
    if v is None:
        return None
    if isinstance(v, (str, int, float)):
        v = [v]
    try:
        out = tuple(cast(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of values, got {v!r}") from None
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values: {list(out)}")
    return out


@dataclass(frozen=True)
class SweepSpec:
    """A grid of training configurations and the sharpness measures to take at each point.

    Attributes:
        base: TrainConfig fields shared by every point (e.g. ``{"dataset": {"name": "digits"},
            "epochs": 2}``); validated by building the configs.
        lrs, batch_sizes: grid axes (always present).
        weight_decays, rhos, optimizers: optional axes (``None``: the base value).
        measures: subset of ``lambda_max``, ``trace``, ``flatness``, ``per_layer``.
        samples: training examples the measures use (a fixed, seeded, stratified subset).
        lanczos_iters: Krylov budget for lambda_max (stops earlier at a relative residual of 1e-4).
        trace_probes: Hutchinson probes (fixed budget; the standard error is reported).
        flatness_radius: relative (filter-normalised) perturbation size ``r``.
        flatness_directions: random directions averaged for the flatness measure.
        seed: seed of the measurement subset, probes and directions.
    """

    base: dict = field(default_factory=dict)
    lrs: tuple[float, ...] = (0.01, 0.1, 0.5)
    batch_sizes: tuple[int, ...] = (32, 128, 512)
    weight_decays: tuple[float, ...] | None = None
    rhos: tuple[float, ...] | None = None
    optimizers: tuple[str, ...] | None = None
    measures: tuple[str, ...] = ("lambda_max", "trace", "flatness")
    samples: int = 512
    lanczos_iters: int = 60
    trace_probes: int = 20
    flatness_radius: float = 0.05
    flatness_directions: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("base", dict(self.base))
        set_("lrs", _as_tuple(self.lrs, "lrs", float))
        set_("batch_sizes", _as_tuple(self.batch_sizes, "batch_sizes", int))
        set_("weight_decays", _as_tuple(self.weight_decays, "weight_decays", float))
        set_("rhos", _as_tuple(self.rhos, "rhos", float))
        set_("optimizers", _as_tuple(self.optimizers, "optimizers", str))
        set_("measures", _as_tuple(self.measures, "measures", str) or ())
        bad = [m for m in self.measures if m not in MEASURES]
        if bad:
            raise ValueError(f"unknown measure {bad[0]!r}; choose from {', '.join(MEASURES)}")
        for name, ok in (("samples", self.samples >= 8), ("lanczos_iters", self.lanczos_iters >= 2),
                         ("trace_probes", self.trace_probes >= 2), ("flatness_directions", self.flatness_directions >= 2),
                         ("flatness_radius", self.flatness_radius > 0 and math.isfinite(self.flatness_radius))):
            if not ok:
                raise ValueError(f"{name} has an invalid value {getattr(self, name)!r}")
        self.configs()  # validates base and axes eagerly

    def configs(self) -> list:
        """The grid as :class:`~landscape_core.training.TrainConfig` objects (cartesian product, in order)."""
        from .training import TrainConfig

        axes = [(ax, getattr(self, name)) for name, ax in _AXES if getattr(self, name) is not None]
        out = []
        for combo in itertools.product(*(vals for _, vals in axes)):
            d = {**self.base, **{ax: v for (ax, _), v in zip(axes, combo)}}
            try:
                out.append(TrainConfig.from_dict(d))
            except TypeError as e:
                raise ValueError(f"invalid sweep base settings: {e}") from None
        return out

    def measure_settings(self) -> dict:
        return {k: getattr(self, k) for k in ("measures", "samples", "lanczos_iters", "trace_probes",
                                              "flatness_radius", "flatness_directions", "seed")}

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepSpec:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown sweep settings: {', '.join(unknown)}")
        return cls(**d)

    def __len__(self) -> int:
        n = 1
        for name, _ in _AXES:
            v = getattr(self, name)
            n *= len(v) if v is not None else 1
        return n


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_key(cfg_dict: Mapping[str, Any]) -> str:
    """Training key: a hash of the full training config (what decides the trained weights)."""
    return _digest({"config": dict(cfg_dict)})


def point_id(cfg_dict: Mapping[str, Any], measure_settings: Mapping[str, Any]) -> str:
    """Point key: the training config plus the measurement settings."""
    return _digest({"config": dict(cfg_dict), "measure": dict(measure_settings), "v": _RECORD_VERSION})


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _row_from(record: Mapping[str, Any]) -> dict:
    cfg = record["config"]
    final = record.get("final") or {}
    m = record.get("measures") or {}
    row = {
        "id": record["id"], "optimizer": cfg["optimizer"], "lr": cfg["lr"], "batch_size": cfg["batch_size"],
        "weight_decay": cfg["weight_decay"], "rho": cfg["rho"], "epochs": cfg["epochs"],
        "status": record.get("status", "ok"),
        **{k: _finite(final.get(k)) for k in ("train_loss", "test_loss", "train_acc", "test_acc", "gen_gap",
                                              "acc_gap")},
        **{k: _finite(m.get(k)) for k in ("lambda_max", "trace", "trace_stderr", "flatness", "flatness_stderr")},
        "seconds_per_epoch": _finite(record.get("seconds_per_epoch")),
        "run_path": record.get("run_path"),
    }
    if m.get("per_layer"):
        row["per_layer"] = dict(m["per_layer"])
    row["config"] = dict(cfg)
    return row


def _run_point(task: Mapping[str, Any], *, progress: ProgressFn | None = None,
               should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Train (unless already trained) and measure one point, then write its record. ``None`` if stopped."""
    from . import training
    from .runs import RunError, load_run

    if task.get("threads"):
        import torch

        torch.set_num_threads(int(task["threads"]))
    out_dir = Path(task["out_dir"])
    cfg_dict, settings, pid = task["config"], task["settings"], task["id"]
    rel = f"runs/{config_key(cfg_dict)}"
    run_dir = out_dir / rel
    record: dict[str, Any] = {"version": _RECORD_VERSION, "id": pid, "config": cfg_dict, "measure_settings": settings,
                              "run_path": rel, "trained": False}
    t0 = time.time()
    run = None
    if run_dir.is_dir():
        try:
            run = load_run(run_dir)
        except RunError:
            run = None
    if run is None:
        cfg = training.TrainConfig.from_dict(cfg_dict)

        def on_train(info: dict) -> None:
            if progress is not None:
                progress(0.9 * float(info.get("fraction", 0.0)), str(info.get("message", "")))

        try:
            res = training.train(cfg, progress=on_train, should_stop=should_stop, path=run_dir,
                                 name=None, extra_meta={"sweep_point": pid})
        except ValueError as e:
            if "diverged" not in str(e):
                raise
            record.update(status="diverged", error=str(e), final=None, measures=None, seconds_per_epoch=None,
                          run_path=None, trained=True, seconds=time.time() - t0)
            _write_json_atomic(out_dir / "points" / f"{pid}.json", record)
            return record
        if res.cancelled:
            return None
        record["trained"] = True
        run = load_run(run_dir)
    if progress is not None:
        progress(0.92, "measuring sharpness")
    meta = run.meta
    record["final"] = dict(meta.get("final", {}))
    record["seconds_per_epoch"] = (meta.get("timings") or {}).get("seconds_per_epoch")
    record["measures"] = measure_run(run, settings)
    record["status"] = "ok"
    record["seconds"] = time.time() - t0
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write_json_atomic(out_dir / "points" / f"{pid}.json", record)
    return record


# -- results ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """A (possibly partial) sweep.

    Attributes:
        spec: the sweep.
        rows: one table row per finished point (see :data:`COLUMNS`; plus ``config`` and ``per_layer``).
        correlations: Kendall tau-b of each measure vs each target (:func:`landscape_core.stats.correlation_table`).
        out_dir: the sweep folder.
        reused: points taken from an earlier (interrupted) run of the sweep; ``computed``: points done now.
        total: grid size; ``cancelled``: stopped before every point finished.
    """

    spec: SweepSpec
    rows: tuple[dict, ...]
    correlations: tuple[dict, ...]
    out_dir: Path
    reused: int
    computed: int
    total: int
    cancelled: bool

    def table(self) -> list[dict]:
        """Flat rows (only :data:`COLUMNS`), e.g. for CSV."""
        return [{c: r.get(c) for c in COLUMNS} for r in self.rows]

    def to_dict(self) -> dict:
        return {
            "spec": self.spec.to_dict(), "rows": [dict(r) for r in self.rows],
            "correlations": [dict(c) for c in self.correlations], "out_dir": str(self.out_dir),
            "reused": self.reused, "computed": self.computed, "total": self.total, "finished": len(self.rows),
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepResult:
        """Inverse of :meth:`to_dict` (``finished`` is derived)."""
        return cls(spec=SweepSpec.from_dict(d["spec"]), rows=tuple(dict(r) for r in d["rows"]),
                   correlations=tuple(dict(c) for c in d["correlations"]), out_dir=Path(d["out_dir"]),
                   reused=int(d["reused"]), computed=int(d["computed"]), total=int(d["total"]),
                   cancelled=bool(d["cancelled"]))


def _tasks(spec: SweepSpec, out_dir: Path) -> list[dict]:
    settings = spec.measure_settings()
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    tasks = []
    for cfg in spec.configs():
        d = cfg.to_dict()
        tasks.append({"id": point_id(d, settings), "config": d, "settings": settings, "out_dir": str(out_dir)})
    return tasks


def _read_record(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("version") == _RECORD_VERSION else None


def _result(spec: SweepSpec, out_dir: Path, records: Sequence[dict], reused: int, computed: int,
            cancelled: bool, n_boot: int = 1000) -> SweepResult:
    rows = [_row_from(r) for r in records]
    ok = [r for r in rows if r["status"] == "ok"]
    measures = [m for m in spec.measures if m != "per_layer"]
    corr = correlation_table(ok, measures, TARGETS, n_boot=n_boot, seed=spec.seed)
    return SweepResult(spec, tuple(rows), tuple(corr), out_dir, reused, computed, len(spec), cancelled)


def load_sweep(out_dir: str | os.PathLike, spec: SweepSpec | None = None) -> SweepResult:
    """The finished points of the sweep in ``out_dir`` (spec from ``sweep.json`` unless given)."""
    out_dir = Path(out_dir)
    if spec is None:
        f = out_dir / "sweep.json"
        if not f.is_file():
            raise ValueError(f"{out_dir} is not a sweep folder (no sweep.json)")
        spec = SweepSpec.from_dict(json.loads(f.read_text()))
    tasks = _tasks(spec, out_dir)
    records = [r for t in tasks if (r := _read_record(out_dir / "points" / f"{t['id']}.json")) is not None]
    return _result(spec, out_dir, records, len(records), 0, len(records) < len(tasks))


def run_sweep(
    spec: SweepSpec,
    *,
    out_dir: str | os.PathLike,
    n_jobs: int = 1,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    n_boot: int = 1000,
) -> SweepResult:
    """Train and measure every point of ``spec`` (reusing finished points in ``out_dir``).

    Args:
        spec: the grid and measures.
        out_dir: the sweep folder (``sweep.json``, ``runs/``, ``points/``); running again resumes.
        n_jobs: local worker processes (1: in this process, with per-step progress and prompt stopping).
        scheduler: a Dask scheduler address or ``distributed.Client`` (runs the points on that cluster).
        progress: ``progress(fraction, message)``; at least once per finished point.
        should_stop: polled between steps (in-process) or between batches of points (parallel);
            finished points stay saved.
        n_boot: bootstrap resamples for the correlation intervals.

    Returns:
        :class:`SweepResult` over every finished point.
    """
    from .parallel import parallel_map

    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be >= 1 or -1, got {n_jobs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(out_dir / "sweep.json", spec.to_dict())
    tasks = _tasks(spec, out_dir)
    total = len(tasks)
    done: dict[str, dict] = {}
    for t in tasks:
        rec = _read_record(out_dir / "points" / f"{t['id']}.json")
        if rec is not None:
            done[t["id"]] = rec
    reused = len(done)
    todo = [t for t in tasks if t["id"] not in done]
    if progress is not None:
        progress(reused / total, f"{reused}/{total} points already finished" if reused else f"0/{total} points")
    cancelled = False

    def label(t: Mapping[str, Any]) -> str:
        c = t["config"]
        extra = "".join(f" {ax}={c[ax]}" for name, ax in _AXES[2:] if getattr(spec, name) is not None)
        return f"lr={c['lr']:g} bs={c['batch_size']}{extra}"

    def finished(rec: dict, t: Mapping[str, Any]) -> None:
        done[t["id"]] = rec
        if progress is not None:
            acc = (rec.get("final") or {}).get("test_acc")
            lam = (rec.get("measures") or {}).get("lambda_max")
            tail = f"test acc {acc:.3f}" if acc is not None else rec.get("status", "")
            tail += f", lambda_max {lam:.3g}" if lam is not None else ""
            progress(len(done) / total, f"point {len(done)}/{total} ({label(t)}): {tail}")

    local = scheduler is None and (n_jobs == 1 or len(todo) <= 1)
    if local:
        for t in todo:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            k = len(done)

            def sub(frac: float, msg: str, k: int = k, t: Mapping[str, Any] = t) -> None:
                if progress is not None:
                    progress((k + frac) / total, f"point {k + 1}/{total} ({label(t)}): {msg}")

            rec = _run_point(t, progress=sub, should_stop=should_stop)
            if rec is None:
                cancelled = True
                break
            finished(rec, t)
    else:
        workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1)) if scheduler is None else 1
        todo = [{**t, "threads": threads} for t in todo]
        batch = max(1, workers) if should_stop is not None else len(todo)
        for start in range(0, len(todo), batch):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            chunk = todo[start : start + batch]
            n0 = len(done)

            def par_progress(frac: float, _msg: str, n0: int = n0, m: int = len(chunk)) -> None:
                if progress is not None:
                    progress((n0 + frac * m) / total, f"{n0 + round(frac * m)}/{total} points finished")

            recs = parallel_map(_run_point, chunk, n_jobs=n_jobs, scheduler=scheduler, progress=par_progress)
            for rec, t in zip(recs, chunk):
                finished(rec, t)
    records = [done[t["id"]] for t in tasks if t["id"] in done]
    return _result(spec, out_dir, records, reused, len(records) - reused, cancelled or len(records) < total,
                   n_boot=n_boot)


__all__ = ["COLUMNS", "MEASURES", "TARGETS", "SweepResult", "SweepSpec", "config_key", "load_sweep",
           "measure_run", "point_id", "run_sweep"]
