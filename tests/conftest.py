"""Suite-wide settings: one intra-op thread (tiny models; avoids oversubscription on 2 shared cores),
and every test gets its own workspace and engine disk cache (nothing is written to ./workspace).

``LANDSCAPE_TORCH_THREADS=2`` runs the suite with two intra-op threads (the app reads the same variable,
``ui/cache.py``): reductions split across threads round differently, and the suite must pass either way.
``ATEN_CPU_CAPABILITY=default`` / ``=avx2`` (read by PyTorch) imitates a CPU with other SIMD kernels.
"""

import os

import pytest
import torch

_THREADS = int(os.environ.get("LANDSCAPE_TORCH_THREADS") or 1)
# the CLI applies the thread policy (landscape_core/threads.py) in-process: pin it to the suite's setting
os.environ["LANDSCAPE_TORCH_THREADS"] = str(_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(max(_THREADS, 1)))
if _THREADS > 0:
    torch.set_num_threads(_THREADS)


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
