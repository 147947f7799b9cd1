"""Determinism on CPU: the same settings and seed give the same weights hash (in this process and in a fresh
one) and the same analysis numbers; a different seed gives different weights (so the check can fail).

Where it cannot hold (CUDA kernels without deterministic implementations, different thread counts or
BLAS builds) is documented in docs/SECURITY.md, section "Determinism"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape_core.params import model_hash
from landscape_core.runs import checkpoints_dir, load_run, read_meta
from landscape_core.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
BASE = {"dataset": {"name": "moons", "n_samples": 200}, "width": 8, "depth": 2, "activation": "tanh",
        "batch_size": 16, "epochs": 2, "snapshots": 3, "lr": 0.1}


@pytest.mark.parametrize("optimizer", ["sgd", "sam"])
def test_same_seed_same_run_hash(workspace, optimizer):
    cfg = TrainConfig(**BASE, optimizer=optimizer, seed=5)
    torch.manual_seed(0)
    a = train(cfg, out_dir=workspace, name=f"{optimizer}-a")
    torch.manual_seed(12345)  # the global RNG state must not matter: every random choice is seeded
    torch.rand(100)
    b = train(cfg, out_dir=workspace, name=f"{optimizer}-b")
    assert model_hash(a.model) == model_hash(b.model)
    assert read_meta(a.path)["weights_hash"] == read_meta(b.path)["weights_hash"] == model_hash(a.model)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    ta, sa = load_run(a.path).trajectory()
    tb, sb = load_run(b.path).trajectory()
    assert torch.equal(sa, sb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    c = train(cfg.replace(seed=6))
    assert model_hash(c.model) != model_hash(a.model)


def test_same_hash_in_a_fresh_process(workspace):
    cfg = TrainConfig(**BASE, optimizer="sgd", seed=3)
    here = model_hash(train(cfg).model)
    code = (
        "import json, sys, torch\n"
        "from landscape_core.training import TrainConfig, train\n"
        "from landscape_core.params import model_hash\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))\n"
        "print(model_hash(train(cfg).model))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, json.dumps(cfg.to_dict())], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == here


@pytest.fixture(scope="module")
def moons_run():
    return load_run(checkpoints_dir() / "moons-tiny")


def test_analyses_are_deterministic_for_a_seed(moons_run):
    from landscape_core.analyses.flatness import flatness_summary
    from landscape_core.analyses.hessian import analyze_hessian
    from landscape_core.analyses.surface import compute_surface

    hk = {"top_k": 3, "samples": 128, "trace_probes": 8, "seed": 4, "smallest": False}
    h1 = analyze_hessian(moons_run, **hk).to_dict()
    h2 = analyze_hessian(moons_run, **hk).to_dict()
    assert h1["eigenvalues"] == h2["eigenvalues"] and h1["trace"] == h2["trace"]
    kw = {"grid": 7, "samples": 128, "span": 0.5, "seed": 2, "use_cache": False}
    s1, s2 = compute_surface(moons_run, **kw).to_dict(), compute_surface(moons_run, **kw).to_dict()
    np.testing.assert_array_equal(np.asarray(s1["loss"]), np.asarray(s2["loss"]))
    s3 = compute_surface(moons_run, **{**kw, "seed": 3}).to_dict()
    assert not np.array_equal(np.asarray(s1["loss"]), np.asarray(s3["loss"]))
    fk = {"samples": 64, "n_directions": 3, "radii": (0.05, 0.2), "ascent_steps": 2, "basin_directions": 2, "seed": 1}
    f1, f2 = flatness_summary(moons_run, **fk).to_dict(), flatness_summary(moons_run, **fk).to_dict()
    assert f1 == f2
