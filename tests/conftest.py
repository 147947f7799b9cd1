"""Suite-wide settings: one intra-op thread (tiny models; avoids oversubscription on 2 shared cores),
and every test gets its own workspace and engine disk cache (nothing is written to ./workspace)."""

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """A fresh, empty workspace and disk cache per test (``$LANDSCAPE_WORKSPACE``, ``$LANDSCAPE_CACHE``),
    in a folder of their own so a test's ``tmp_path`` stays empty unless the test writes there."""
    base = tmp_path_factory.mktemp("iso")
    ws, cache = base / "workspace", base / "cache"
    ws.mkdir()
    cache.mkdir()
    monkeypatch.setenv("LANDSCAPE_WORKSPACE", str(ws))
    monkeypatch.setenv("LANDSCAPE_CACHE", str(cache))
    yield ws
