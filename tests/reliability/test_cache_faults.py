"""Disk-cache faults (landscape_core.parallel): corrupted, truncated, emptied or unwritable entries are
recomputed with a warning, never a crash; the cache can be cleared."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from landscape_core import parallel
from landscape_core.parallel import cache_dir, cached_call, clear_cache, disk_cache, is_cached
from landscape_core.runs import checkpoints_dir, load_run


def _entries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.pkl") if not p.name.startswith(".tmp-"))


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":
        path.write_bytes(data[:-20] + bytes(b ^ 0xFF for b in data[-20:]))
    else:
        raise AssertionError(how)


def _square_sum(n: int, calls: list) -> dict:
    calls.append(n)
    return {"n": n, "value": np.arange(n, dtype=np.float64) ** 2}


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "flipped"])
def test_cached_call_recomputes_a_broken_entry(how):
    calls: list = []
    first = cached_call(_square_sum, 1000, calls, key="sq-1000")
    assert calls == [1000] and is_cached("sq-1000")
    [entry] = _entries(cache_dir())
    _corrupt(entry, how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cached_call(_square_sum, 1000, calls, key="sq-1000")
    assert calls == [1000, 1000], "the broken entry was not recomputed"
    np.testing.assert_array_equal(again["value"], first["value"])
    if how != "flipped":  # a flipped tail may still unpickle: recomputing is what matters
        assert any("unreadable cache entry" in str(w.message) for w in caught)
    # the entry was rewritten and is good again
    third = cached_call(_square_sum, 1000, calls, key="sq-1000")
    assert calls == [1000, 1000] and third["n"] == 1000


def test_cache_on_an_unwritable_location_still_computes(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LANDSCAPE_CACHE", str(blocker))
    calls: list = []
    with pytest.warns(UserWarning, match="could not write cache entry"):
        out = cached_call(_square_sum, 10, calls, key="k")
    assert out["n"] == 10 and calls == [10]


def test_clear_cache_removes_everything_and_forces_recompute():
    calls: list = []
    cached_call(_square_sum, 5, calls, key="a")
    cached_call(_square_sum, 6, calls, key="b")
    assert len(_entries(cache_dir())) == 2
    clear_cache()
    assert not cache_dir().exists() or _entries(cache_dir()) == []
    assert not is_cached("a")
    cached_call(_square_sum, 5, calls, key="a")
    assert calls == [5, 6, 5]


def _cube(x: int) -> int:
    _cube.calls += 1  # type: ignore[attr-defined]
    return x**3


_cube.calls = 0  # type: ignore[attr-defined]


def test_joblib_memory_recomputes_a_corrupted_output():
    mem = disk_cache()
    f = mem.cache(_cube)
    _cube.calls = 0  # type: ignore[attr-defined]
    assert f(7) == 343 and _cube.calls == 1
    assert f(7) == 343 and _cube.calls == 1
    outputs = sorted(Path(mem.location).rglob("output.pkl"))
    assert len(outputs) == 1
    _corrupt(outputs[0], "garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f(7) == 343
    assert _cube.calls == 2
    mem.clear(warn=False)


def test_compute_surface_survives_a_corrupted_cache_entry():
    from landscape_core.analyses.surface import compute_surface

    run = load_run(checkpoints_dir() / "moons-tiny")
    kw = {"grid": 5, "samples": 64, "span": 0.5, "seed": 1}
    first = compute_surface(run, **kw)
    assert first.cached is False
    assert compute_surface(run, **kw).cached is True
    entries = _entries(cache_dir() / "calls")
    assert len(entries) == 1
    _corrupt(entries[0], "truncated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = compute_surface(run, **kw)
    assert again.cached is False
    np.testing.assert_allclose(np.asarray(again.to_dict()["loss"]), np.asarray(first.to_dict()["loss"]))
    clear_cache()
    assert compute_surface(run, **kw).cached is False


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    assert parallel.cache_dir() == tmp_path / "elsewhere"
