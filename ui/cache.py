"""Cached access to run folders: loaded runs (shared objects) and the run listing.

``load_run_cached`` uses ``st.cache_resource``: the returned :class:`~landscape_core.runs.Run` is
shared between sessions and reruns, so callers must never mutate it (engine functions take parameter
dicts and never mutate a model). The key is the folder path plus a stamp of ``run.json`` (mtime and
weights hash), so a rewritten run is reloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from landscape_core import runs as _runs
from landscape_core.runs import Run
from landscape_core.threads import apply_policy


def _set_torch_threads() -> int:
    """The app's thread policy (``landscape_core.threads.apply_policy("app")``).

    Each browser session runs in its own script thread; on a machine with <= 2 cores the app keeps one
    intra-op torch thread per computation so two sessions run side by side instead of contending
    (measured under load: a 21x21 surface plus top-1 Lanczos took 3-10x longer with 2 threads; HVPs
    18x, see ``bench/bench_threads.py``), the idle cores on larger machines; NumPy/SciPy BLAS on one thread.
    ``$LANDSCAPE_TORCH_THREADS`` overrides (0 = keep torch's default).
    """
    return apply_policy("app")


TORCH_THREADS = _set_torch_threads()


def _run_stamp(path: Path) -> str:
    f = path / _runs.RUN_JSON
    try:
        meta = _runs.read_meta(path)
        return f"{f.stat().st_mtime_ns}:{meta.get('weights_hash', '')}"
    except (OSError, _runs.RunError):
        return "missing"


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(path: str, stamp: str) -> Run:
    return _runs.load_run(path)


def load_run_cached(path: str) -> Run:
    """Load (once) the run at ``path``. Raises ``RunError`` / ``DataError`` like ``load_run``."""
    p = Path(path).resolve()
    return _load(str(p), _run_stamp(p))


def _get(meta: dict, *paths: str, default=None):
    """First present value among dotted ``paths`` in ``meta`` (run.json layouts differ a little)."""
    for dotted in paths:
        cur = meta
        for part in dotted.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                cur = None
                break
        if cur is not None:
            return cur
    return default


def run_row(info_path: Path, meta: dict, source: str) -> dict:
    """One row of the run table: settings and final metrics from ``run.json``.

    ``gen_gap`` is the loss gap (test loss - train loss), ``acc_gap`` the accuracy gap (train - test).
    """
    final = meta.get("final") or meta.get("metrics") or {}
    test_acc, train_acc = final.get("test_acc"), final.get("train_acc")
    gap = final.get("gen_gap")
    if gap is None and final.get("test_loss") is not None and final.get("train_loss") is not None:
        gap = float(final["test_loss"]) - float(final["train_loss"])
    acc_gap = final.get("acc_gap")
    if acc_gap is None and test_acc is not None and train_acc is not None:
        acc_gap = float(train_acc) - float(test_acc)
    return {
        "name": meta.get("name", info_path.name),
        "path": str(info_path),
        "source": source,
        "dataset": _get(meta, "dataset.name", default=""),
        "model": _get(meta, "model.name", default=""),
        "optimizer": _get(meta, "config.optimizer", "optimizer.optimizer", "source.kind", default=""),
        "lr": _get(meta, "config.lr", "optimizer.lr"),
        "batch_size": _get(meta, "config.batch_size", "optimizer.batch_size"),
        "epochs": _get(meta, "config.epochs", "optimizer.epochs"),
        "test_acc": test_acc,
        "train_acc": train_acc,
        "gen_gap": gap,
        "acc_gap": acc_gap,
        "sec_per_epoch": _get(meta, "timings.seconds_per_epoch"),
        "weights_hash": meta.get("weights_hash", ""),
        "status": meta.get("status") or "ok",
        # runs with equal architecture key can be interpolated (mode connectivity)
        "arch": json.dumps([meta.get("model"), meta.get("dataset")], sort_keys=True, default=str),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def _list(stamp: tuple) -> list[dict]:
    ws = Path(stamp[0])
    return [run_row(i.path, i.meta, i.source) for i in _runs.list_runs(ws)]


def _listing_stamp() -> tuple:
    ws = _runs.workspace_dir().resolve()
    ck = _runs.checkpoints_dir().resolve()
    items: list[tuple[str, int]] = []
    for folder in (ck, ws):
        if folder.is_dir():
            for p in folder.iterdir():
                f = p / _runs.RUN_JSON
                if f.is_file():
                    items.append((str(p), f.stat().st_mtime_ns))
    return (str(ws), str(ck), tuple(sorted(items)))


def list_runs_cached() -> list[dict]:
    """Shipped + workspace runs as dicts (name, path, source, optimizer, lr, batch size, epochs,
    test_acc, train_acc, gen_gap, weights_hash); cached until a run.json changes."""
    return [dict(r) for r in _list(_listing_stamp())]


def clear_caches() -> None:
    """Forget the run listing and loaded runs (after delete / rename / import)."""
    _list.clear()
    _load.clear()
