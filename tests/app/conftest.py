"""Fixtures for AppTest page tests: isolated workspace and cache, an AppTest factory, no shipped runs.

Helpers (``make_tiny_run``, ``plotly_array``, ``chart_data``) are importable as ``app_helpers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
# test modules import helpers with ``from app_helpers import ...`` (``conftest`` alone is ambiguous)
sys.modules.setdefault("app_helpers", sys.modules[__name__])
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))



@pytest.fixture
def workspace_dir(_isolated_dirs) -> Path:
    """The test's workspace folder."""
    return _isolated_dirs


@pytest.fixture
def app_test():
    """Factory: ``app_test("pages/1_Train.py")`` -> ``AppTest`` (path relative to the repo root)."""

    def make(path: str, timeout: float = 120) -> AppTest:
        return AppTest.from_file(str(ROOT / path), default_timeout=timeout)

    return make


@pytest.fixture
def empty_checkpoints(tmp_path, monkeypatch) -> Path:
    """Hide the shipped runs: ``landscape_core.runs.checkpoints_dir()`` points at an empty folder."""
    from landscape_core import runs

    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setattr(runs, "checkpoints_dir", lambda: empty)
    return empty


@pytest.fixture
def clear_st_caches():
    """Clear Streamlit's in-memory caches before the test (they are process-global)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield


def make_tiny_run(folder: Path, name: str, optimizer: str = "sgd", epochs: int = 2, **kw) -> Path:
    """Train a tiny moons MLP (well under a second) and save it as a run in ``folder``."""
    from landscape_core.training import TrainConfig, train

    cfg = TrainConfig(dataset={"name": "moons", "n_samples": 200}, model="mlp", width=8, depth=1,
                      optimizer=optimizer, lr=0.1 if optimizer != "adam" else 0.01, batch_size=32,
                      epochs=epochs, snapshots=4, **kw)
    return train(cfg, out_dir=folder, name=name).path


@pytest.fixture
def tiny_run(workspace_dir) -> Path:
    """A tiny trained run in the test's workspace (``tiny-sgd``)."""
    return make_tiny_run(workspace_dir, "tiny-sgd")


def plotly_array(v):
    """A Plotly JSON array as a NumPy array (plain list, or plotly 6's ``{"dtype", "bdata"}`` encoding)."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",") if x.strip()]
        return a.reshape(shape) if shape else a
    return np.asarray(v)


def chart_data(at, index: int = 0) -> list[dict]:
    """The ``data`` traces of the ``index``-th Plotly chart on an AppTest page."""
    import json

    return json.loads(at.get("plotly_chart")[index].proto.spec)["data"]


def chart_by_key(at, key: str) -> dict:
    """The Plotly spec (``{"data", "layout"}``) of the chart whose widget key contains ``key``."""
    import json

    charts = at.get("plotly_chart")
    for c in charts:
        if key in (c.proto.id or ""):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key!r}; charts: {[c.proto.id for c in charts]}")


def make_surface(alphas, betas, loss, accuracy=None, *, labels=("d1", "d2"), center_loss: float = float("nan"),
                 seed: int | None = 0):
    """A ``landscape_core.surface.Surface`` from plain arrays (synthetic data for figure and export tests).

    Its direction set holds one-element zero tensors: figures and exports read only its kind and labels.
    """
    import numpy as np
    import torch

    from landscape_core.directions import DirectionSet
    from landscape_core.surface import Surface

    loss = np.asarray(loss, np.float64)
    acc = np.full_like(loss, np.nan) if accuracy is None else np.asarray(accuracy, np.float64)
    dirs = [{"w": torch.zeros(1)} for _ in range(1 if betas is None else 2)]
    ds = DirectionSet("random", dirs, seed, labels=tuple(labels))
    return Surface(np.asarray(alphas, np.float64), None if betas is None else np.asarray(betas, np.float64), loss, acc,
                   center_loss, float("nan"), ds, seed)


def make_trajectory(x, y, steps=None):
    """A ``landscape_core.trajectory.TrajectoryProjection`` with the given plane coordinates (other fields 0)."""
    import numpy as np

    from landscape_core.trajectory import TrajectoryProjection

    coords = np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1)
    n = len(coords)
    zeros = np.zeros(n)
    steps = np.arange(n) if steps is None else np.asarray(steps)
    return TrajectoryProjection(steps, coords, zeros, zeros, zeros, zeros, np.zeros(2))
