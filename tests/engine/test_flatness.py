"""Flatness measures against closed forms on quadratics, and their (in)variance under a function-preserving rescale."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import hessian

from landscape_core.analyses.flatness import flatness_summary
from landscape_core.analyses.invariance import invariance_demo, rescale_function_preserving
from landscape_core.flatness import (
    adaptive_sharpness,
    basin_radius,
    epsilon_sharpness,
    perturbation_directions,
    perturbation_profile,
)
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator
from landscape_core.models import MLP
from landscape_core.params import flatten, model_hash, unflatten, weights_hash
from landscape_core.power import power_iteration
from landscape_core.stats import mean_ci

DT = torch.float64




@pytest.fixture(scope="module")
def quadratic():
    """Least squares: L(w, b) = 0.5 mean (X w + b - y)^2, at its exact minimum; dense Hessian in float64."""
    g = torch.Generator().manual_seed(0)
    n, p = 40, 5
    X = torch.randn(n, p, generator=g, dtype=DT) * torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0], dtype=DT)
    y = X @ torch.randn(p, generator=g, dtype=DT) + 0.3 * torch.randn(n, generator=g, dtype=DT)
    A = torch.cat([X, torch.ones(n, 1, dtype=DT)], 1)
    sol = torch.linalg.lstsq(A, y.unsqueeze(1)).solution.squeeze(1)
    model = nn.Linear(p, 1).to(DT)
    with torch.no_grad():
        model.weight.copy_(sol[:p].unsqueeze(0))
        model.bias.copy_(sol[p:])
    fn = LossFunction(model, X, y, loss="mse", batch_size=16)
    theta = fn.params0
    H = hessian(lambda v: fn(unflatten(v, theta)))(flatten(theta))
    return fn, theta, H


def _quad_form(H, theta, d):
    v = flatten(d)
    return float(v @ H @ v)


def test_mean_ci_closed_form():
    mean, std, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert hi - mean == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2)  # t_{0.975, 3}
    assert lo == pytest.approx(2 * mean - hi)


def test_profile_is_half_r2_dHd_on_a_quadratic(quadratic):
    fn, theta, H = quadratic
    g = fn.gradient()
    assert max(float(v.abs().max()) for v in g.values()) < 1e-12  # really at the minimum
    radii = (0.01, 0.1, 0.5)
    h0 = model_hash(fn.model)
    prof = perturbation_profile(fn, radii=radii, n_directions=6, seed=3)
    dirs = perturbation_directions(theta, 6, seed=3)
    for j, d in enumerate(dirs):
        assert float(d["bias"].abs().max()) == 0.0  # 1-D tensors ignored
        assert float(d["weight"].norm()) == pytest.approx(float(theta["weight"].norm()), rel=1e-12)  # filter norm
        q = _quad_form(H, theta, d)
        for i, r in enumerate(radii):
            assert prof.raw[i, j] == pytest.approx(0.5 * r * r * q, rel=1e-7, abs=1e-14)
    assert model_hash(fn.model) == h0 and prof.base_loss == pytest.approx(fn.evaluate()[0], rel=1e-12)
    json.dumps(prof.to_dict())


def test_profile_ci_contains_the_true_mean(quadratic):
    """Filter-normalised d of a single-row weight is uniform on the sphere of radius ||w||, so
    E[d^T H d] = ||w||^2 tr(H_ww) / p and the mean increase is r^2/2 times that."""
    fn, theta, H = quadratic
    p = theta["weight"].numel()
    true = 0.5 * float(theta["weight"].norm()) ** 2 * float(torch.trace(H[:p, :p])) / p
    prof = perturbation_profile(fn, radii=(0.05, 0.2), n_directions=300, seed=11)
    for r, lo, hi, m in zip(prof.radii, prof.ci_low, prof.ci_high, prof.mean_increase):
        expected = r * r * true
        assert lo <= expected <= hi
        assert (hi - lo) < 0.3 * expected  # informative: a 50% error would be outside
        assert not (lo <= 1.5 * expected <= hi)
        assert m == pytest.approx(expected, rel=0.15)


def test_epsilon_sharpness_is_a_tight_lower_bound_of_the_box_maximum(quadratic):
    """A convex loss attains its maximum over a box at a vertex: brute force all 2^6 vertices.

    Projected sign ascent on a strictly convex loss only goes up (L(z') >= L(z) + g.(z' - z) + ...) on a
    finite lattice, so every run ends at a vertex ``s`` that it cannot leave: ``sign(H D s) = s`` (a
    local maximum; this problem has 14 pairs of them). Which one a run reaches is decided by its start.
    The centre is the exact least-squares minimum, so the gradient there is rounding noise (~1e-15)
    and the run from the centre goes to the corner ``sign(noise)``: a different local maximum on another
    CPU (that run alone once ended at the next-best pair, at 0.984 of the maximum). So the test asserts
    what holds on every machine: every run is a lower bound and ends at a local maximum, and the global
    maximum is reached from seeded random starts (a CPU generator draws the same numbers everywhere and
    the gradient there is far from zero), by several runs, so no single path decides it.
    """
    fn, theta, H = quadratic
    eps = 1e-2
    base = fn.evaluate()[0]
    flat = flatten(theta)
    bound = eps * (flat.abs() + 1)
    vertices = [torch.tensor(s, dtype=DT) for s in itertools.product((-1.0, 1.0), repeat=flat.numel())]
    value = {tuple(s.tolist()): 100 * (float(fn(unflatten(flat + s * bound, theta))) - base) / (1 + base) for s in vertices}
    exact = max(value.values())
    local_max = sorted(value[tuple(s.tolist())] for s in vertices if torch.equal(torch.sign(H @ (bound * s)), s))
    assert local_max[-1] == exact and local_max[-3] < 0.99 * exact  # only the pair +-s* is global

    def is_local_max(v: float) -> bool:
        return any(v == pytest.approx(m, rel=1e-9) for m in local_max)

    # bound on every run; each run ends at a local maximum (an ascent that stops early or scales the
    # value fails here); several of 24 seeded random starts reach the global maximum
    runs = [epsilon_sharpness(fn, epsilon=eps, steps=20, random_start=True, seed=s).value for s in range(24)]
    assert all(v <= exact * (1 + 1e-9) and is_local_max(v) for v in runs), runs
    assert sum(v >= exact * (1 - 1e-9) for v in runs) >= 3, runs
    assert min(runs) < 0.99 * exact  # one random start may end at a lower local maximum
    centre = epsilon_sharpness(fn, epsilon=eps, steps=20, seed=1)  # first corner: sign(rounding noise)
    assert centre.value <= exact * (1 + 1e-9) and is_local_max(centre.value)
    # restarts keep the best run. Seeds 1-3 alone end at lower local maxima (runs[1:4]); with 40 restarts
    # from them each reaches the global maximum (~22% of random starts do: 40 all missing has p ~ 5e-5;
    # here 30 of 30 seeds reach it, with or without the run from the centre)
    assert max(runs[1:4]) < 0.99 * exact
    for seed in (1, 2, 3):
        res = epsilon_sharpness(fn, epsilon=eps, steps=20, restarts=40, random_start=True, seed=seed)
        assert exact * (1 - 1e-9) <= res.value <= exact * (1 + 1e-9), (seed, res.value / exact)
    res = epsilon_sharpness(fn, epsilon=eps, steps=20, restarts=40, seed=1)  # the default: run 0 from the centre
    assert exact * (1 - 1e-9) <= res.value <= exact * (1 + 1e-9)
    assert res.perturbed_loss == pytest.approx(base + res.value * (1 + base) / 100, rel=1e-12)


def test_adaptive_sharpness_matches_the_rescaled_top_eigenvalue(quadratic):
    """At a quadratic minimum max_{||u|| <= rho} (1/2)(s u)^T H (s u) = rho^2 lambda_max(S H S) / 2."""
    fn, theta, H = quadratic
    s = flatten(theta).abs()
    lam = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
    rho = 0.05
    res = adaptive_sharpness(fn, rho=rho, steps=60, random_start=True, seed=0)
    exact = 0.5 * rho * rho * lam
    assert res.value <= exact * (1 + 1e-8)
    assert res.value >= 0.99 * exact


def test_basin_radius_on_a_quadratic_is_sqrt_2t_over_q(quadratic):
    fn, theta, H = quadratic
    thr = 0.05
    res = basin_radius(fn, threshold=thr, n_directions=4, max_radius=10.0, seed=5, bisection_steps=30)
    for r, d, c in zip(res.radii, perturbation_directions(theta, 4, seed=5), res.censored):
        assert not c
        assert r == pytest.approx(math.sqrt(2 * thr / _quad_form(H, theta, d)), rel=1e-6)
    assert res.ci_low <= res.mean <= res.ci_high
    tiny = basin_radius(fn, threshold=1e6, n_directions=3, max_radius=0.5, seed=5)
    assert all(tiny.censored) and tiny.radii == (0.5, 0.5, 0.5)


def _relu_mlp():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(64, 4, generator=g, dtype=DT)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long()
    torch.manual_seed(0)
    model = MLP((4,), 2, width=8, depth=2, activation="relu").to(DT)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval(), X, y


def test_rescale_preserves_the_function_and_returns_a_new_model():
    model, X, y = _relu_mlp()
    h = model_hash(model)
    new = rescale_function_preserving(model, c=7.0)
    assert new is not model and model_hash(model) == h
    torch.testing.assert_close(new(X), model(X), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new.net[1].weight, 7.0 * model.net[1].weight)
    torch.testing.assert_close(new.net[3].weight, model.net[3].weight / 7.0)
    with pytest.raises(ValueError, match="positively"):
        rescale_function_preserving(MLP((4,), 2, activation="tanh"))
    with pytest.raises(ValueError, match="c must be"):
        rescale_function_preserving(model, c=-1.0)
    with pytest.raises(ValueError, match="needs a ReLU network"):
        invariance_demo(MLP((4,), 2, activation="tanh").to(DT), X, y)


def test_invariance_demo_separates_invariant_from_non_invariant_measures():
    model, X, y = _relu_mlp()
    h = model_hash(model)
    out = invariance_demo(model, X, y, c=10.0, radii=(0.05, 0.2), n_directions=4, ascent_steps=5).to_dict()
    assert out["max_output_change"] < 1e-10
    rows = {r["name"]: r for r in out["measures"]}
    for name, r in rows.items():
        if r["invariant_in_theory"]:
            assert r["relative_change"] < 1e-7, name
        else:
            assert r["relative_change"] > 0.1, name
    assert rows["adaptive sharpness"]["before"] > 0
    assert {"epsilon-sharpness", "lambda_max", "adaptive sharpness"} <= rows.keys()
    # lambda_max against the dense float64 Hessian of the original model
    fn = LossFunction(model, X, y, dtype=DT)
    H = hessian(lambda v: fn(unflatten(v, fn.params0)))(flatten(fn.params0))
    assert rows["lambda_max"]["before"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-4)
    assert model_hash(model) == h
    json.dumps(out)


def test_power_iteration_reference_matches_dense_hessian():
    model, X, y = _relu_mlp()
    fn = LossFunction(model, X, y, dtype=DT)
    H = hessian(lambda v: fn(unflatten(v, fn.params0)))(flatten(fn.params0))
    ev = torch.linalg.eigvalsh(H)
    top = float(ev[ev.abs().argmax()])
    # the engine's power iteration on the Hessian operator (replaces the demo's private copy)
    lam = float(power_iteration(hessian_operator(fn), tol=1e-9, max_iter=5000).eigenvalues[0])
    assert lam == pytest.approx(top, rel=1e-5)


def test_flatness_summary_on_a_loss_function_keeps_weights():
    model, X, y = _relu_mlp()
    fn = LossFunction(model, X, y)
    h, hp = model_hash(fn.model), weights_hash(fn.params0)
    res = flatness_summary(fn, radii=(0.05, 0.1), n_directions=3, ascent_steps=3, basin_directions=2)
    d = json.loads(json.dumps(res.to_dict()))
    assert {"loss", "profile", "epsilon_sharpness", "adaptive_sharpness", "basin_radius", "settings"} <= d.keys()
    assert d["profile"]["radii"] == [0.05, 0.1] and len(d["profile"]["raw"][0]) == 3
    assert d["adaptive_sharpness"]["value"] >= 0 and d["epsilon_sharpness"]["value"] >= 0
    assert d["loss"] == pytest.approx(fn.evaluate()[0])
    assert model_hash(fn.model) == h and weights_hash(fn.params0) == hp
    with pytest.raises(ValueError, match="radii"):
        perturbation_profile(fn, radii=(0.1, -1.0))
    with pytest.raises(ValueError, match="normalization"):
        perturbation_profile(fn, normalization="batch")
