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
