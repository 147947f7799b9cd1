"""Parallel execution and the on-disk result cache: joblib (loky) locally, Dask beyond one machine.

``parallel_map(fn, items, n_jobs=, scheduler=)`` runs ``fn`` over ``items`` and returns the results in
order. Locally it uses ``joblib.Parallel`` with the ``loky`` backend (separate processes, so ``fn`` must
be a picklable top-level function). Given a scheduler address (``"tcp://host:8786"``) or a
``distributed.Client``, the *same* code runs through joblib's ``dask`` backend on that cluster.

``disk_cache()`` is a ``joblib.Memory`` rooted at ``$LANDSCAPE_CACHE`` (default ``.landscape_cache/``
in the working directory; private to the app since entries are unpickled). ``cached_call(fn, *args,
key=...)`` stores one result per explicit key (hashed together with :data:`CODE_VERSION`, because
joblib only hashes a function's own source, not the code it calls). A truncated or otherwise unreadable
entry is discarded and recomputed, never an error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import joblib

from .progress import ProgressFn

#: Bump when a cached computation's code changes meaning (part of every cache key).
CODE_VERSION = "landscape-1"


def cache_dir() -> Path:
    """``$LANDSCAPE_CACHE`` or ``./.landscape_cache``."""
    return Path(os.environ.get("LANDSCAPE_CACHE", ".landscape_cache"))


def disk_cache() -> joblib.Memory:
    """A ``joblib.Memory`` at :func:`cache_dir` (use ``.cache`` on pure, top-level functions)."""
    return joblib.Memory(str(cache_dir() / "memory"), verbose=0)


def _key_path(key: str) -> Path:
    digest = hashlib.sha256(f"{CODE_VERSION}\0{key}".encode()).hexdigest()
    return cache_dir() / "calls" / digest[:2] / f"{digest}.pkl"


def cached_call(fn: Callable[..., Any], *args: Any, key: str, use_cache: bool = True, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, memoised on disk under ``key`` (+ :data:`CODE_VERSION`).

    The caller builds ``key`` from everything the result depends on (e.g. a run's weights hash and all
    settings). Writes are atomic (temporary file + rename). An entry that cannot be read (truncated,
    corrupted, written by an incompatible version) is deleted and the value recomputed.
    """
    if not use_cache:
        return fn(*args, **kwargs)
    path = _key_path(key)
    if path.is_file():
        try:
            return joblib.load(path)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(f"discarding unreadable cache entry {path.name}: {type(e).__name__}", stacklevel=2)
            path.unlink(missing_ok=True)
    value = fn(*args, **kwargs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pkl", dir=path.parent)
        os.close(fd)
        joblib.dump(value, tmp)
        os.replace(tmp, path)
    except OSError as e:  # a read-only or full disk must not break the computation
        warnings.warn(f"could not write cache entry: {e}", stacklevel=2)
    return value


def is_cached(key: str) -> bool:
    """Whether a (readable-looking) entry exists for ``key``."""
    return _key_path(key).is_file()


def clear_cache() -> None:
    """Delete everything under :func:`cache_dir`."""
    shutil.rmtree(cache_dir(), ignore_errors=True)


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """``(client, owned)``: a ``distributed.Client`` for an address (owned) or the client passed in."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask is an optional extra
        raise ValueError("a Dask scheduler was given but dask.distributed is not installed") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or "://" not in scheduler and ":" not in scheduler:
        raise ValueError(f"scheduler must be an address like 'tcp://127.0.0.1:8786' or a Client, got {scheduler!r}")
    try:
        return Client(scheduler, timeout="10s", set_as_default=False), True
    except OSError as e:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    n_jobs: int = 1,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
) -> list[Any]:
    """``[fn(x) for x in items]``, in parallel, results in input order.

    Args:
        fn: a picklable top-level function of one argument.
        items: the work items (each is pickled to a worker when running in parallel).
        n_jobs: local worker processes (``1``: run in this process; ``-1``: all cores). Ignored with a
            scheduler (the cluster decides).
        scheduler: ``None`` (local), a Dask scheduler address, or a ``distributed.Client``.
        progress: ``progress(fraction_done, message)`` after each finished item (called in this
            process).
    """
    items = list(items)
    n = len(items)
    if n == 0:
        return []
    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be >= 1 or -1, got {n_jobs}")
    out: list[Any] = []

    def consume(results: Iterable[Any]) -> list[Any]:
        for i, r in enumerate(results, 1):
            out.append(r)
            if progress is not None:
                progress(i / n, f"{i}/{n} chunks")
        return out

    if scheduler is not None:
        client, owned = _connect(scheduler)
        try:
            with joblib.parallel_config(backend="dask", client=client, wait_for_workers_timeout=30):
                par = joblib.Parallel(n_jobs=-1, return_as="generator")
                return consume(par(joblib.delayed(fn)(x) for x in items))
        finally:
            if owned:
                client.close()
    if n_jobs == 1 or n == 1:
        return consume(fn(x) for x in items)
    par = joblib.Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
    return consume(par(joblib.delayed(fn)(x) for x in items))


def split_evenly(seq: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``seq`` cut into ``parts`` contiguous, nearly equal, non-empty slices."""
    parts = max(1, min(parts, len(seq)))
    bounds = [round(i * len(seq) / parts) for i in range(parts + 1)]
    return [seq[bounds[i] : bounds[i + 1]] for i in range(parts)]


__all__ = [
    "CODE_VERSION", "cache_dir", "cached_call", "clear_cache", "disk_cache", "is_cached", "parallel_map",
    "split_evenly",
]
