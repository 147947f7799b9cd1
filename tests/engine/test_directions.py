"""Tests for landscape_core.directions: filter normalisation, orthogonal planes, PCA, Hessian, runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.directions import (
    DirectionSet,
    gradient_direction,
    hessian_directions,
    line_through,
    normalize_direction,
    pca_directions,
    plane_through,
    random_direction,
    random_plane,
)
from landscape_core.functional import LossFunction
from landscape_core.models import MLP, SmallCNN
from landscape_core.params import detached_params, dot, flatten, norm, randn_like


@pytest.fixture(scope="module")
def cnn_params():
    return detached_params(SmallCNN((1, 8, 8), 10, channels=4))


def test_filter_normalisation_matches_each_filter_norm(cnn_params):
    d = random_direction(cnn_params, seed=3)
    for k, w in cnn_params.items():
        if w.ndim >= 2:
            dn = d[k].reshape(w.shape[0], -1).double().norm(dim=1)
            wn = w.reshape(w.shape[0], -1).double().norm(dim=1)
            torch.testing.assert_close(dn, wn, rtol=1e-5, atol=1e-7)
        else:
            assert torch.count_nonzero(d[k]) == 0, k  # 1-D tensors zeroed by default


def test_keep_1d_scales_bias_to_bias_norm_and_layer_mode(cnn_params):
    d = random_direction(cnn_params, seed=3, ignore_1d=False)
    for k, w in cnn_params.items():
        if w.ndim == 1:
            assert d[k].double().norm().item() == pytest.approx(w.double().norm().item(), rel=1e-5)
            assert torch.count_nonzero(d[k]) == w.numel()
    lay = random_direction(cnn_params, seed=3, normalization="layer")
    for k, w in cnn_params.items():
        if w.ndim >= 2:
            assert lay[k].double().norm().item() == pytest.approx(w.double().norm().item(), rel=1e-5)


def test_none_is_the_raw_gaussian_in_sorted_key_order(cnn_params):
    d = random_direction(cnn_params, seed=7, normalization="none", ignore_1d=False)
    raw = randn_like(cnn_params, torch.Generator().manual_seed(7))
    for k in cnn_params:
        torch.testing.assert_close(d[k], raw[k])
    # key order of the input dict does not change the draw
    rev = dict(reversed(list(cnn_params.items())))
    d2 = random_direction(rev, seed=7, normalization="none", ignore_1d=False)
    for k in cnn_params:
        torch.testing.assert_close(d[k], d2[k])


def test_seeds_reproduce_and_differ(cnn_params):
    a, b, c = (random_direction(cnn_params, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.allclose(flatten(a), flatten(c))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(flatten(random_direction(cnn_params, generator=g1)), flatten(random_direction(cnn_params, generator=g2)))


@pytest.mark.parametrize("normalization", ["filter", "layer", "none"])
@pytest.mark.parametrize("ignore_1d", [True, False])
def test_random_plane_is_orthogonal_after_normalising(cnn_params, normalization, ignore_1d):
    d1, d2 = random_plane(cnn_params, normalization=normalization, ignore_1d=ignore_1d, seed=11)
    cos = dot(d1, d2) / (norm(d1) * norm(d2))
    assert abs(cos) < 1e-6
    # and both are still properly normalised
    ref = normalize_direction(d1, cnn_params, normalization=normalization, ignore_1d=ignore_1d)
    torch.testing.assert_close(flatten(ref), flatten(d1), rtol=1e-5, atol=1e-7)
    e1, e2 = random_plane(cnn_params, normalization=normalization, ignore_1d=ignore_1d, seed=11)
    assert torch.equal(flatten(e2), flatten(d2))


def test_filter_direction_follows_a_rescaled_layer():
    """Scaling a layer's weights by c scales its filter-normalised direction by c (same seed)."""
    m = MLP((6,), 3, width=5, depth=2, activation="relu")
    p = detached_params(m)
    q = dict(p)
    q["net.1.weight"] = 4.0 * p["net.1.weight"]
    dp, dq = random_direction(p, seed=0), random_direction(q, seed=0)
    torch.testing.assert_close(dq["net.1.weight"], 4.0 * dp["net.1.weight"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dq["net.3.weight"], dp["net.3.weight"])


def test_unknown_normalization_raises(cnn_params):
    with pytest.raises(ValueError, match="bogus"):
        random_direction(cnn_params, normalization="bogus")  # type: ignore[arg-type]


def test_pca_recovers_a_planted_plane():
    g = torch.Generator().manual_seed(0)
    final = {"w": torch.randn(7, 5, generator=g, dtype=torch.float64), "b": torch.randn(5, generator=g, dtype=torch.float64)}
    n = 40
    u = torch.randn(n, generator=g, dtype=torch.float64)
    u /= u.norm()
    v = torch.randn(n, generator=g, dtype=torch.float64)
    v -= (v @ u) * u
    v /= v.norm()
    S = 12
    t = torch.linspace(0, 1, S, dtype=torch.float64)
    a, b = 3.0 * (1 - t) ** 2, 0.8 * torch.sin(6 * t)
    flat = a[:, None] * u + b[:, None] * v + 1e-7 * torch.randn(S, n, generator=g, dtype=torch.float64)
    snaps = {"w": final["w"] + flat[:, :35].reshape(S, 7, 5), "b": final["b"] + flat[:, 35:]}
    res = pca_directions(snaps, final, k=2)
    assert res.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-10)
    assert res.explained_variance_ratio[0] > res.explained_variance_ratio[1]
    V = torch.stack([flatten(d) for d in res.directions])  # (2, n)
    torch.testing.assert_close(V @ V.T, torch.eye(2, dtype=torch.float64), atol=1e-10, rtol=0)
    # u and v lie in the span of the recovered directions
    for w in (u, v):
        assert (V @ w).norm().item() == pytest.approx(1.0, abs=1e-8)
    # coords reproduce the planted geometry (distances), residual ~ 0
    c = torch.as_tensor(res.coords)
    recon = c @ V
    assert (recon - flat).norm().item() < 1e-5
    with pytest.raises(ValueError, match="snapshots"):
        pca_directions({"w": snaps["w"][:1], "b": snaps["b"][:1]}, final, k=2)


def test_plane_through_puts_runs_at_true_coordinates():
    g = torch.Generator().manual_seed(1)
    a, b, c = ({"x": torch.randn(3, 4, generator=g), "y": torch.randn(4, generator=g)} for _ in range(3))
    origin, d1, d2, coords = plane_through(a, b, c)
    assert dot(d1, d1) == pytest.approx(1.0, abs=1e-6) and dot(d2, d2) == pytest.approx(1.0, abs=1e-6)
    assert abs(dot(d1, d2)) < 1e-6
    for point, (ca, cb) in zip((a, b, c), coords):
        recon = {k: origin[k] + ca * d1[k] + cb * d2[k] for k in origin}
        torch.testing.assert_close(flatten(recon), flatten(point), atol=1e-5, rtol=0)
    assert coords[1, 0] == pytest.approx(norm({k: b[k] - a[k] for k in a}), rel=1e-6)
    with pytest.raises(ValueError, match="collinear"):
        plane_through(a, b, {k: 2 * b[k] - a[k] for k in a})
    o, d = line_through(a, b)
    torch.testing.assert_close(flatten({k: o[k] + d[k] for k in o}), flatten(b))


def _tiny_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    X, y = torch.randn(30, 3), torch.randint(0, 2, (30,))
    return LossFunction(model, X, y, dtype=torch.float64)


def test_gradient_direction_is_the_normalised_negative_gradient():
    f = _tiny_loss()
    g = f.gradient()
    d = gradient_direction(f, normalization="none", ignore_1d=False)
    gn = norm(g)
    for k in g:
        torch.testing.assert_close(d[k], -g[k] / gn)
    dfil = gradient_direction(f)  # filter normalised: each filter has the weight's norm, sign of -g
    assert dot(dfil, g) < 0


def test_hessian_directions_match_dense_eigenvectors():
    f = _tiny_loss()
    p = f.params0
    names = list(p)
    flat0 = flatten(p)

    def loss_flat(v):
        from landscape_core.params import unflatten

        return f(unflatten(v, p))

    H = torch.func.hessian(loss_flat)(flat0)
    vals, vecs = torch.linalg.eigh(H)
    dirs, ev = hessian_directions(f, k=2, seed=0)
    top = torch.argsort(vals, descending=True)[:2]
    np.testing.assert_allclose(ev, vals[top].numpy(), rtol=1e-6, atol=1e-9)
    for d, j in zip(dirs, top):
        cos = torch.dot(torch.cat([d[n].reshape(-1) for n in names]), vecs[:, j]).abs().item()
        assert cos == pytest.approx(1.0, abs=1e-5)


def test_direction_set_round_trip(tmp_path, cnn_params):
    d1, d2 = random_plane(cnn_params, seed=4)
    ds = DirectionSet("random", [d1, d2], seed=4, normalization="filter", labels=("a", "b"), extra={"x": 1})
    ds.save(tmp_path / "dirs.safetensors")
    back = DirectionSet.load(tmp_path / "dirs.safetensors")
    assert back.to_dict() == ds.to_dict()
    assert list(back.directions[0]) == list(d1)
    assert all(torch.equal(back.directions[1][k], d2[k]) for k in d2)
    with pytest.raises(ValueError):
        DirectionSet("random", [])
