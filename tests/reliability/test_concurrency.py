"""Concurrency: app sessions never share session state, shared cached runs are never mutated, and several
processes saving into one workspace leave only complete runs behind."""

from __future__ import annotations

import copy
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch
from rel_helpers import (
    app_session_worker,
    collide_worker,
    digits_model,
    digits_spec,
    import_worker,
    save_runs_worker,
    state_bytes_pt,
    tree_listing,
)
from streamlit.testing.v1 import AppTest

from landscape_core.params import model_hash
from landscape_core.runs import checkpoints_dir, list_runs, load_run, save_run

ROOT = Path(__file__).resolve().parents[2]


def _pool(n: int) -> ProcessPoolExecutor:
    """Worker processes forked from a clean fork server that preloaded torch and the engine once
    (cheaper than 'spawn', and safe unlike 'fork' from a process whose thread pools have run)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "landscape_core.runs", "landscape_core.uploads", "rel_helpers"])
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx)


# ------------------------------------------------------------------ processes writing one workspace
def test_concurrent_save_run_from_several_processes(workspace):
    jobs = [(f"p{i}", 3, 100 * i) for i in range(4)]
    with _pool(3) as pool:
        futures = [pool.submit(save_runs_worker, str(workspace), *job) for job in jobs]
        hashes = {f"{p}-{j}": h for (p, _, _), fut in zip(jobs, futures) for j, h in enumerate(fut.result())}
    runs = list_runs(workspace, include_shipped=False)
    assert sorted(r.name for r in runs) == sorted(hashes)
    for info in runs:
        run = load_run(info.path)  # verify=True: the weights match run.json's hash
        assert run.weights_hash == hashes[info.name] == model_hash(run.model)
    assert not [p for p in workspace.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_concurrent_saves_to_one_name_one_wins_cleanly(workspace):
    with _pool(3) as pool:
        results = list(pool.map(collide_worker, [str(workspace)] * 5, ["clash"] * 5, range(5)))
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "RunError", "OSError"}, results
    runs = list_runs(workspace, include_shipped=False)
    assert [r.name for r in runs] == ["clash"]
    winner = results.index("ok")
    assert load_run(runs[0].path).weights_hash == model_hash(digits_model(seed=winner))
    assert tree_listing(workspace) == {"clash", "clash/run.json", "clash/model.safetensors"}


def test_concurrent_imports_of_the_same_file_get_distinct_runs(workspace):
    data = state_bytes_pt(digits_model(seed=7).state_dict())
    with _pool(3) as pool:
        paths = list(pool.map(import_worker, [str(workspace)] * 4, [data] * 4))
    assert len(set(paths)) == 4
    assert all(Path(p).parent == workspace.resolve() for p in paths)
    expected = model_hash(digits_model(seed=7))
    assert [load_run(p).weights_hash for p in paths] == [expected] * 4
    assert sorted(r.name for r in list_runs(workspace, include_shipped=False)) == ["same", "same-2", "same-3",
                                                                                  "same-4"]


# ------------------------------------------------------------------ app sessions
@pytest.fixture
def two_runs(workspace):
    paths = []
    for i, name in enumerate(("alpha", "beta")):
        paths.append(str(save_run(workspace / name, digits_model(seed=i),
                                  {"model": digits_spec(), "dataset": {"name": "digits"}})))
    return paths


def _active_caption(at: AppTest) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def test_app_sessions_interleaved_do_not_share_state(two_runs):
    a = AppTest.from_file(str(ROOT / "pages/3_Runs.py"), default_timeout=120)
    b = AppTest.from_file(str(ROOT / "pages/3_Runs.py"), default_timeout=120)
    a.session_state["active_run"] = two_runs[0]
    a.run()
    b.session_state["active_run"] = two_runs[1]
    b.session_state["presentation"] = True
    b.run()
    a.run()
    b.run()
    assert not a.exception and not b.exception
    assert "alpha" in _active_caption(a) and "beta" not in _active_caption(a)
    assert "beta" in _active_caption(b) and "alpha" not in _active_caption(b)
    assert a.session_state["active_run"] == two_runs[0] and b.session_state["active_run"] == two_runs[1]
    assert a.session_state["presentation"] is False and b.session_state["presentation"] is True


def test_concurrent_app_sessions_do_not_share_state(two_runs, workspace):
    pages = ["pages/3_Runs.py", "app.py", "pages/3_Runs.py", "app.py"]
    n = len(pages)
    with _pool(n) as pool:
        futures = [pool.submit(app_session_worker, str(ROOT), pages[i], str(workspace), two_runs[i % 2], i, n)
                   for i in range(n)]
        results = [f.result(timeout=300) for f in futures]
    for i, (n_exc, active, keys) in enumerate(results):
        assert n_exc == 0, pages[i]
        assert active == two_runs[i % 2]
        assert keys == {f"marker_{i}"}


# ------------------------------------------------------------------ shared cached objects
def _state_digest(run) -> tuple:
    X, y = run.train_data
    Xt, yt = run.test_data
    return (model_hash(run.model), X.sum().item(), y.sum().item(), Xt.sum().item(), yt.sum().item(),
            run.model.training)


def test_cached_run_is_shared_and_never_mutated_by_analyses():
    from ui import analysis
    from ui.cache import load_run_cached

    path = str(checkpoints_dir() / "moons-tiny")
    run = load_run_cached(path)
    assert load_run_cached(path) is run  # one shared object
    before, meta_before = _state_digest(run), copy.deepcopy(run.meta)
    wh = run.weights_hash
    s = analysis.cached_surface(path, wh, analysis.SurfaceSettings(grid=5, samples=64, span=0.5, seed=3))
    h = analysis.cached_hessian(path, wh, analysis.HessianSettings(top_k=2, samples=64, trace=True, trace_probes=6))
    f = analysis.cached_flatness(path, wh, analysis.FlatnessSettings(samples=64, n_directions=2, ascent_steps=2,
                                                                     basin_directions=2))
    c, _ = analysis.cached_connectivity(path, wh, str(checkpoints_dir() / "moons-tiny"), wh,
                                        analysis.ConnectivitySettings(n_points=3, samples=64))
    assert s.surface.loss.shape == (5, 5) and len(h.eigenvalues) == 2 and f and c
    with torch.no_grad():
        torch.manual_seed(0)
        run.model(torch.randn(4, 2))  # forward passes are fine; nothing may change the weights
    assert _state_digest(run) == before
    assert run.meta == meta_before
    assert load_run_cached(path) is run
