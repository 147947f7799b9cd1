"""Tests for landscape_core.parallel: ordered maps (serial, loky, Dask), and the self-healing disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from landscape_core.data import load_dataset
from landscape_core.directions import random_plane
from landscape_core.functional import LossFunction
from landscape_core.models import MLP
from landscape_core.parallel import cache_dir, cached_call, clear_cache, disk_cache, is_cached, parallel_map
from landscape_core.params import model_hash
from landscape_core.surface import surface_2d


def _square(x: int) -> int:
    return x * x


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def problem():
    X, y = load_dataset("digits").train
    model = MLP((64,), 10, width=8, depth=1, activation="tanh")
    f = LossFunction(model, X[:80], y[:80], batch_size=32)
    d1, d2 = random_plane(f.params0, seed=0)
    return model, f, d1, d2


def test_parallel_map_serial_and_loky_keep_order():
    seen = []
    assert parallel_map(_square, range(7), progress=lambda fr, msg: seen.append(fr)) == [i * i for i in range(7)]
    assert seen[-1] == pytest.approx(1.0) and len(seen) == 7
    assert parallel_map(_square, range(9), n_jobs=2) == [i * i for i in range(9)]
    assert parallel_map(_square, []) == []
    with pytest.raises(ValueError, match="n_jobs"):
        parallel_map(_square, [1], n_jobs=0)


def test_surface_with_local_processes_equals_serial(problem):
    model, f, d1, d2 = problem
    h = model_hash(model)
    serial = surface_2d(f, d1, d2, grid=5, span=0.6)
    par = surface_2d(f, d1, d2, grid=5, span=0.6, n_jobs=2)
    np.testing.assert_allclose(par.loss, serial.loss, rtol=1e-6)
    np.testing.assert_array_equal(par.accuracy, serial.accuracy)
    assert model_hash(model) == h


def test_surface_on_a_dask_cluster_equals_local(problem):
    distributed = pytest.importorskip("distributed")
    _, f, d1, d2 = problem
    local = surface_2d(f, d1, d2, grid=5, span=0.6)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://127.0.0.1:")
        by_address = surface_2d(f, d1, d2, grid=5, span=0.6, scheduler=addr)
        with distributed.Client(cluster) as client:
            by_client = surface_2d(f, d1, d2, grid=5, span=0.6, scheduler=client)
            assert parallel_map(_square, range(5), scheduler=client) == [0, 1, 4, 9, 16]
    np.testing.assert_allclose(by_address.loss, local.loss, rtol=1e-6)
    np.testing.assert_allclose(by_client.loss, local.loss, rtol=1e-6)


def test_bad_scheduler_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="scheduler"):
        parallel_map(_square, [1, 2], scheduler=42)


def test_cached_call_computes_once_and_heals_truncated_entries(tmp_path):
    calls = []

    def work(x):
        calls.append(x)
        return {"value": np.arange(1000) * x}

    a = cached_call(work, 3, key="k3")
    b = cached_call(work, 3, key="k3")
    assert calls == [3]
    np.testing.assert_array_equal(a["value"], b["value"])
    assert is_cached("k3") and not is_cached("other")
    files = [p for p in cache_dir().rglob("*.pkl")]
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])  # truncate the entry
    with pytest.warns(UserWarning, match="unreadable"):
        c = cached_call(work, 3, key="k3")
    assert calls == [3, 3]
    np.testing.assert_array_equal(c["value"], np.arange(1000) * 3)
    files[0].write_bytes(b"garbage")  # corrupted, not just short
    with pytest.warns(UserWarning):
        assert cached_call(work, 3, key="k3")["value"][2] == 6
    d = cached_call(work, 3, key="k3", use_cache=False)
    assert calls == [3, 3, 3, 3] and d["value"][1] == 3
    clear_cache()
    assert not cache_dir().exists()


def test_disk_cache_is_a_joblib_memory_under_the_cache_dir():
    mem = disk_cache()
    assert str(cache_dir()) in str(mem.location)
    f = mem.cache(_square)
    assert not f.check_call_in_cache(4)
    assert f(4) == 16
    assert f.check_call_in_cache(4)
