"""Mode connectivity: barriers against convex / non-convex known answers, Bezier training, BN recalibration."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.analyses.connectivity import connect_runs
from landscape_core.connectivity import (
    barrier_of,
    bezier_curve,
    bezier_point,
    check_compatible,
    linear_path,
    recalibrate_bn,
)
from landscape_core.data import DatasetSpec, load_dataset
from landscape_core.functional import LossFunction
from landscape_core.models import MLP, build_model, model_spec
from landscape_core.params import detached_params, model_hash, weights_hash
from landscape_core.runs import load_run, save_run

DT = torch.float64




def _blobs(n=60, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    X = torch.randn(n, d, generator=g, dtype=DT) + 1.5 * nn.functional.one_hot(y, d).to(DT)
    return X, y


def _train(model, X, y, steps=300, lr=0.1):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval()


def _permuted(theta, perm):
    """Same function, hidden units of the first layer permuted (a classic non-convex symmetry)."""
    out = dict(theta)
    out["net.1.weight"] = theta["net.1.weight"][perm]
    out["net.1.bias"] = theta["net.1.bias"][perm]
    out["net.3.weight"] = theta["net.3.weight"][:, perm]
    return out


@pytest.fixture(scope="module")
def nonconvex():
    """A trained 2-6-2 tanh net on XOR-like data and its hidden-unit permutation: equal losses, a ridge between."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(120, 2, generator=g, dtype=DT)
    y = ((X[:, 0] * X[:, 1]) > 0).long()
    torch.manual_seed(0)
    model = MLP((2,), 2, width=6, depth=1, activation="tanh").to(DT)
    _train(model, X, y, steps=400, lr=0.05)
    fn = LossFunction(model, X, y)
    a = fn.params0
    b = _permuted(a, torch.tensor([3, 4, 5, 0, 1, 2]))
    return fn, a, b


def test_barrier_of_closed_form():
    ts = np.linspace(0, 1, 5)
    loss = np.array([1.0, 2.0, 3.5, 2.0, 3.0])  # chord 1, 1.5, 2, 2.5, 3 -> excess 0, .5, 1.5, -.5, 0
    assert barrier_of(ts, loss) == (1.5, 0.5)


def test_convex_logistic_regression_has_no_barrier_and_exact_endpoints():
    X, y = _blobs(d=4, k=3)
    model = nn.Linear(4, 3).to(DT)
    fn = LossFunction(model, X, y, batch_size=16)
    g = torch.Generator().manual_seed(3)
    a = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in fn.params0.items()}
    b = {k: 2 * torch.randn(v.shape, generator=g, dtype=DT) for k, v in fn.params0.items()}
    h = model_hash(model)
    res = linear_path(fn, a, b, n_points=11)
    assert res.endpoint_losses == (fn.evaluate(a)[0], fn.evaluate(b)[0])  # exactly the endpoints' losses
    assert res.endpoint_losses[0] == pytest.approx(float(fn(a)), rel=1e-14)
    assert res.barrier <= 1e-9
    assert np.all(res.excess <= 1e-9)
    assert np.all(res.excess[1:-1] < -1e-6)  # strictly convex in between (the two logits differ)
    mid = {k: 0.5 * (a[k] + b[k]) for k in a}
    assert res.loss[5] == pytest.approx(float(fn(mid)), rel=1e-12)
    assert model_hash(model) == h and model_hash(fn.model) == h


def test_nonconvex_permutation_has_positive_barrier_and_bezier_lowers_the_midpoint(nonconvex):
    fn, a, b = nonconvex
    h, ha, hb = model_hash(fn.model), weights_hash(a), weights_hash(b)
    lin = linear_path(fn, a, b, n_points=21)
    assert lin.endpoint_losses[0] == pytest.approx(lin.endpoint_losses[1], abs=1e-12)  # same function
    assert lin.barrier > 0.05
    assert 0.2 < lin.barrier_t < 0.8
    bez = bezier_curve(fn, a, b, steps=250, lr=0.02, batch_size=60, seed=0, n_points=21)
    assert bez.path.ts[10] == 0.5
    assert bez.path.loss[10] < lin.loss[10] - 0.05
    assert bez.path.barrier < lin.barrier
    assert bez.path.loss[0] == lin.loss[0] and bez.path.loss[-1] == lin.loss[-1]
    assert (model_hash(fn.model), weights_hash(a), weights_hash(b)) == (h, ha, hb)
    # the reported curve really is phi(t) with the trained control point
    mid = bezier_point(a, bez.control, b, 0.5)
    assert bez.path.loss[10] == pytest.approx(float(fn(mid)), rel=1e-12)
    assert len(bez.train_history) >= 2


def test_second_data_set_is_evaluated_at_the_same_points():
    X, y = _blobs(n=60, d=3)
    Xt, yt = _blobs(n=30, d=3, seed=9)
    model = nn.Linear(3, 2).to(DT)
    fn, ft = LossFunction(model, X, y), LossFunction(model, Xt, yt)
    a = fn.params0
    b = {k: -v for k, v in a.items()}
    res = linear_path(fn, a, b, n_points=3, test_fn=ft)
    assert res.test_loss == (ft.evaluate(a)[0], ft.evaluate({k: 0 * v for k, v in a.items()})[0], ft.evaluate(b)[0])
    assert res.test_accuracy[0] == ft.evaluate(a)[1]
    assert res.test_barrier == barrier_of(res.ts, res.test_loss)[0]
    assert "test_loss" in res.to_dict()


def test_untrained_bezier_is_the_linear_path(nonconvex):
    fn, a, b = nonconvex
    lin = linear_path(fn, a, b, n_points=5)
    bez = bezier_curve(fn, a, b, steps=0, n_points=5)
    np.testing.assert_allclose(bez.path.loss, lin.loss, rtol=1e-12)


def _set_full_data_bn_stats(model, X):
    """Running stats := mean and unbiased variance of each BN input over all of X (built by hand)."""
    with torch.no_grad():
        h = X
        for m in model.net:
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(h.mean(0))
                m.running_var.copy_(h.var(0, unbiased=True))
                h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + m.eps) * m.weight + m.bias
            else:
                h = m(h)
    return model.eval()


def test_bn_recalibrated_path_endpoints_equal_each_runs_own_eval_loss():
    X, y = _blobs(n=50, d=5)
    ma = _set_full_data_bn_stats(build_model(model_spec("mlp", (5,), 2, width=8, depth=2, batchnorm=True), seed=1).to(DT), X)
    mb = _set_full_data_bn_stats(build_model(model_spec("mlp", (5,), 2, width=8, depth=2, batchnorm=True), seed=2).to(DT), X)
    fa, fb = LossFunction(ma, X, y, batch_size=16), LossFunction(mb, X, y)
    ha, hbuf = model_hash(ma), weights_hash(fa.buffers)
    res = linear_path(fa, fa.params0, fb.params0, n_points=5, recalibrate_bn=(X, y))
    assert res.recalibrated_bn
    assert res.loss[0] == pytest.approx(fa.evaluate()[0], rel=1e-10)
    assert res.loss[-1] == pytest.approx(fb.evaluate()[0], rel=1e-10)
    # without recalibration B would be evaluated with A's statistics: visibly different
    plain = linear_path(fa, fa.params0, fb.params0, n_points=5)
    assert abs(plain.loss[-1] - fb.evaluate()[0]) > 1e-3
    # the recalibrated buffers of an interior point are its own full-data statistics
    mid = {k: 0.5 * (fa.params0[k] + fb.params0[k]) for k in fa.params0}
    buf = recalibrate_bn(fa.model, mid, X)
    probe = build_model(model_spec("mlp", (5,), 2, width=8, depth=2, batchnorm=True)).to(DT)
    probe.load_state_dict({**mid, **{k: v for k, v in buf.items()}})
    ref = _set_full_data_bn_stats(probe, X)
    torch.testing.assert_close(buf["net.2.running_var"], ref.net[2].running_var, rtol=1e-10, atol=1e-12)
    assert model_hash(ma) == ha and model_hash(fa.model) == ha and weights_hash(fa.buffers) == hbuf


def test_bezier_with_batchnorm_keeps_everything_untouched():
    X, y = _blobs(n=40, d=4)
    ma = _set_full_data_bn_stats(build_model(model_spec("mlp", (4,), 2, width=6, depth=1, batchnorm=True), seed=1).to(DT), X)
    mb = _set_full_data_bn_stats(build_model(model_spec("mlp", (4,), 2, width=6, depth=1, batchnorm=True), seed=2).to(DT), X)
    fa, fb = LossFunction(ma, X, y), LossFunction(mb, X, y)
    ha, hbuf = model_hash(ma), weights_hash(fa.buffers)
    res = bezier_curve(fa, fa.params0, fb.params0, steps=20, batch_size=16, n_points=3)
    assert res.path.recalibrated_bn
    assert res.path.loss[-1] == pytest.approx(fb.evaluate()[0], rel=1e-10)
    assert model_hash(ma) == ha and model_hash(fa.model) == ha and weights_hash(fa.buffers) == hbuf


def test_invalid_settings_raise():
    X, y = _blobs()
    fn = LossFunction(nn.Linear(3, 2).to(DT), X, y)
    with pytest.raises(ValueError, match="n_points"):
        linear_path(fn, fn.params0, fn.params0, n_points=1)
    with pytest.raises(ValueError, match="init"):
        bezier_curve(fn, fn.params0, fn.params0, init="random")
    with pytest.raises(ValueError, match="differ"):
        linear_path(fn, fn.params0, {"weight": fn.params0["weight"]})


# --- runs ------------------------------------------------------------------------------------------

DS = DatasetSpec(name="moons", n_samples=80, seed=0)


def _save(tmp_path, name, width=8, seed=0, ds=DS, train=True, batchnorm=False):
    data = load_dataset(ds)
    spec = model_spec("mlp", data.input_shape, data.num_classes, width=width, depth=1, activation="tanh",
                      batchnorm=batchnorm)
    model = build_model(spec, seed=seed)
    if train:
        _train(model, *data.train, steps=60, lr=0.05)
    return save_run(tmp_path / name, model, {"model": spec, "dataset": ds.to_dict()})


def test_connect_runs_linear_and_bezier_with_plane(tmp_path):
    ra, rb = load_run(_save(tmp_path, "a", seed=0)), load_run(_save(tmp_path, "b", seed=1))
    ha, hb = model_hash(ra.model), model_hash(rb.model)
    lin = connect_runs(ra, rb, curve="linear", n_points=7, samples=None)
    d = lin.to_dict()
    assert {"ts", "loss", "accuracy", "barrier", "barrier_t", "endpoints", "curve", "settings"} <= d.keys()
    fa = LossFunction(ra.model, *ra.train_data)
    assert d["endpoints"]["a"]["loss"] == pytest.approx(fa.evaluate()[0], rel=1e-6)
    assert d["endpoints"]["b"]["loss"] == pytest.approx(fa.with_data(*rb.train_data).evaluate(detached_params(rb.model))[0], rel=1e-6)
    bez = connect_runs(ra, rb, curve="bezier", n_points=7, samples=None, bezier_steps=30)
    bd = bez.to_dict()
    plane = bd["plane"]
    assert plane is not None and len(plane["curve"]) == 7
    # distances in the plane are true distances in parameter space
    a = detached_params(ra.model)
    for t, (u, v) in zip(plane["ts"], plane["curve"]):
        p = bezier_point(a, bez.control, detached_params(rb.model), t)
        dist = math.sqrt(sum(float(((p[k] - a[k]).double() ** 2).sum()) for k in a))
        assert math.hypot(u, v) == pytest.approx(dist, rel=1e-4, abs=1e-5)
    assert "linear" in bd and bd["linear"]["barrier"] == pytest.approx(d["barrier"], rel=1e-5, abs=1e-6)
    assert (model_hash(ra.model), model_hash(rb.model)) == (ha, hb)


def test_connect_runs_refuses_different_models_or_data(tmp_path):
    ra = load_run(_save(tmp_path, "a", train=False))
    rw = load_run(_save(tmp_path, "w", width=5, train=False))
    rd = load_run(_save(tmp_path, "d", ds=DatasetSpec(name="moons", n_samples=80, seed=1), train=False))
    with pytest.raises(ValueError, match="different model specs"):
        connect_runs(ra, rw)
    with pytest.raises(ValueError, match="different datasets"):
        check_compatible(ra.meta, rd.meta)
    with pytest.raises(ValueError, match="curve"):
        connect_runs(ra, ra, curve="spline")


def test_connect_runs_with_batchnorm_recalibrates_every_point(tmp_path):
    ra = load_run(_save(tmp_path, "a", seed=0, batchnorm=True))
    rb = load_run(_save(tmp_path, "b", seed=1, batchnorm=True))
    ha = model_hash(ra.model)
    res = connect_runs(ra, rb, n_points=3, samples=None)
    assert res.settings["batchnorm_recalibrated"] and res.path.recalibrated_bn
    fa = LossFunction(ra.model, *ra.train_data, batch_size=1024)
    own = recalibrate_bn(fa.model, fa.params0, fa.X)
    view = LossFunction(ra.model, *ra.train_data)
    view.buffers = own
    assert res.path.loss[0] == pytest.approx(view.evaluate()[0], rel=1e-6)
    assert model_hash(ra.model) == ha
