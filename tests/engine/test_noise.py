"""Gradient noise scale against the exact per-example quantities of a small dataset (torch.func.vmap(grad))."""

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from landscape_core.functional import LossFunction
from landscape_core.models import MLP
from landscape_core.noise import gradient_noise_scale, noise_vs_batch_size
from landscape_core.params import model_hash, weights_hash

DT = torch.float64




def _exact(fn: LossFunction, per_layer=False):
    """|G|^2 = ||mean g_i||^2 and tr(Sigma) = mean ||g_i - G||^2 from per-example gradients."""
    theta = fn.params0

    def one(p, x, y):
        out = functional_call(fn.model, {**p, **fn.buffers}, (x.unsqueeze(0),))
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    g = vmap(grad(one), in_dims=(None, 0, 0))(theta, fn.X, fn.y)
    flat = torch.cat([g[k].reshape(len(fn.y), -1) for k in theta], 1)
    G = flat.mean(0)
    out = {"all": (float(G @ G), float(((flat - G) ** 2).sum(1).mean()))}
    if per_layer:
        for k in theta:
            gk = g[k].reshape(len(fn.y), -1)
            Gk = gk.mean(0)
            out[k] = (float(Gk @ Gk), float(((gk - Gk) ** 2).sum(1).mean()))
    return out


@pytest.fixture(scope="module")
def small():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(48, 3, generator=g, dtype=DT)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = MLP((3,), 2, width=4, depth=1, activation="tanh").to(DT).eval()
    return model, LossFunction(model, X, y, batch_size=8)


def test_estimator_is_unbiased_against_exact_per_example_quantities(small):
    model, fn = small
    g2, tr = _exact(fn)["all"]
    assert tr > g2 > 0  # a noisy regime, so both terms matter
    h, hp = model_hash(model), weights_hash(fn.params0)
    res = gradient_noise_scale(fn, b_small=4, b_big=16, n_batches=1500, seed=0)
    # both estimators average to the exact values within 4 standard errors ...
    assert abs(res.g2 - g2) < 4 * res.g2_se
    assert abs(res.trace_sigma - tr) < 4 * res.trace_sigma_se
    # ... and the standard errors are small enough for that to mean something
    assert res.g2_se < 0.1 * g2 and res.trace_sigma_se < 0.05 * tr
    assert res.ci_low <= tr / g2 <= res.ci_high
    assert res.b_simple == pytest.approx(res.trace_sigma / res.g2)
    assert model_hash(model) == h and model_hash(fn.model) == h and weights_hash(fn.params0) == hp


def test_finite_population_correction_matters_on_small_data(small):
    """Without replacement from N: E[S_hat] = tr(Sigma) N/(N-1) and E[g2_hat] = |G|^2 - tr(Sigma)/(N-1)."""
    model, fn = small
    f12 = LossFunction(model, fn.X[:12], fn.y[:12])
    g2, tr = _exact(f12)["all"]
    n = f12.n
    raw = gradient_noise_scale(f12, b_small=2, b_big=8, n_batches=1500, seed=1, finite_population=False)
    assert abs(raw.trace_sigma - tr * n / (n - 1)) < 4 * raw.trace_sigma_se
    assert abs(raw.g2 - (g2 - tr / (n - 1))) < 4 * raw.g2_se
    assert abs(raw.g2 - g2) > 10 * raw.g2_se  # uncorrected: clearly biased for the fixed data set
    fixed = gradient_noise_scale(f12, b_small=2, b_big=8, n_batches=1500, seed=1)
    assert abs(fixed.g2 - g2) < 4 * fixed.g2_se
    assert abs(fixed.trace_sigma - tr) < 4 * fixed.trace_sigma_se


def test_big_batch_equal_to_the_data_gives_exact_g2_every_pair(small):
    _, fn = small
    g2, _ = _exact(fn)["all"]
    res = gradient_noise_scale(fn, b_small=8, b_big=fn.n, n_batches=5, seed=2)
    assert res.g2 == pytest.approx(g2, rel=1e-10)
    assert res.g2_se < 1e-10 * g2


def test_per_layer_estimates_add_up_and_match_exact(small):
    _, fn = small
    exact = _exact(fn, per_layer=True)
    res = gradient_noise_scale(fn, b_small=4, b_big=24, n_batches=600, seed=3, per_layer=True)
    rows = {r["name"]: r for r in res.per_layer}
    assert set(rows) == {"net.1", "net.3"}
    assert sum(r["g2"] for r in rows.values()) == pytest.approx(res.g2, rel=1e-10)
    assert sum(r["trace_sigma"] for r in rows.values()) == pytest.approx(res.trace_sigma, rel=1e-10)
    tr_l = exact["net.1.weight"][1] + exact["net.1.bias"][1]
    assert abs(rows["net.1"]["trace_sigma"] - tr_l) < 4 * rows["net.1"]["trace_sigma_se"]
    d = json.loads(json.dumps(res.to_dict()))
    assert len(d["per_layer"]) == 2 and "ci" in d


def test_equal_per_example_gradients_give_zero_noise_scale():
    X = torch.tensor([[0.3, -1.2, 0.7]], dtype=DT).repeat(64, 1)
    y = torch.ones(64, dtype=torch.long)
    torch.manual_seed(1)
    fn = LossFunction(MLP((3,), 2, width=5, depth=1).to(DT), X, y)
    res = gradient_noise_scale(fn, b_small=4, b_big=32, n_batches=10, seed=0)
    assert res.g2 > 1e-4
    assert abs(res.b_simple) < 1e-9 and abs(res.trace_sigma) < 1e-9 * res.g2 + 1e-15


def test_noise_vs_batch_size_matches_the_exact_expected_norms(small):
    _, fn = small
    g2, tr = _exact(fn)["all"]
    n = fn.n
    sweep = noise_vs_batch_size(fn, batch_sizes=(2, 4, 8, 16, 48, 64), n_batches=300, seed=0)
    assert sweep.skipped == (64,) and sweep.batch_sizes == (2, 4, 8, 16, 48)
    for b, m, se in zip(sweep.batch_sizes, sweep.mean_sq_norm, sweep.sem):
        expected = g2 + tr * n / (n - 1) * (1 / b - 1 / n)
        assert abs(m - expected) < 4 * se + 1e-12 * expected, b
    assert sweep.mean_sq_norm[-1] == pytest.approx(g2, rel=1e-10)  # B = N: the full gradient
    assert sweep.trace_sigma == pytest.approx(tr, rel=0.15)
    assert sweep.g2 == pytest.approx(g2, rel=1e-6)
    assert sweep.ci_low <= tr / g2 <= sweep.ci_high
    assert len(sweep.per_size) == 4 and sweep.per_size[0]["b_big"] == 48
    json.dumps(sweep.to_dict())


def test_invalid_settings_raise(small):
    _, fn = small
    with pytest.raises(ValueError, match="b_big=100"):
        gradient_noise_scale(fn, b_small=4, b_big=100)
    with pytest.raises(ValueError, match="b_small < b_big"):
        gradient_noise_scale(fn, b_small=16, b_big=16)
    with pytest.raises(ValueError, match="two batch sizes"):
        noise_vs_batch_size(fn, batch_sizes=(8, 100))
