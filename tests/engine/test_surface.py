"""Tests for landscape_core.surface and landscape_core.export: centres, closed forms, invariances, files."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.analyses.surface import compute_surface
from landscape_core.data import DatasetSpec, load_dataset
from landscape_core.directions import random_direction, random_plane
from landscape_core.evaluator import BatchedEvaluator
from landscape_core.export import load_npz, read_vtp_array, save_npz, save_vtp
from landscape_core.functional import LossFunction, loss_function_for_run
from landscape_core.models import MLP, ResNet20, SmallCNN, build_model, model_spec
from landscape_core.params import lincomb, model_hash
from landscape_core.runs import load_run, save_run
from landscape_core.surface import (
    progressive_surface_2d,
    surface_1d,
    surface_2d,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))


def _digits(n=120):
    X, y = load_dataset("digits").train
    return X[:n], y[:n]


def _train_run(path, *, seed=0, steps=12, lr=0.2):
    spec = model_spec("mlp", (64,), 10, width=8, depth=1)
    m = build_model(spec, seed=seed)
    X, y = load_dataset("digits").train
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    snaps = {n: [] for n, _ in m.named_parameters()}
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(X[:300]), y[:300]).backward()
        opt.step()
        for n, p in m.named_parameters():
            snaps[n].append(p.detach().clone())
    traj = ({n: torch.stack(v) for n, v in snaps.items()}, torch.arange(1, steps + 1))
    return save_run(path, m.eval(), {"model": spec, "dataset": DatasetSpec("digits").to_dict()}, traj)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [load_run(_train_run(root / f"r{i}", seed=i, lr=0.1 + 0.1 * i)) for i in range(3)]


def _centre(surface):
    i = int(np.argmin(np.abs(surface.alphas)))
    assert abs(surface.alphas[i]) < 1e-9
    if surface.betas is None:
        return surface.loss[i]
    j = int(np.argmin(np.abs(surface.betas)))
    assert abs(surface.betas[j]) < 1e-9
    return surface.loss[j, i]


# --- the batched evaluator against a plain per-point evaluation ------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP((64,), 10, width=12, depth=2, activation="tanh"),
        lambda: MLP((64,), 10, width=12, depth=2, activation="relu", batchnorm=True),
        lambda: MLP((64,), 10, width=12, depth=2, activation="tanh", batchnorm=True),
        lambda: MLP((64,), 10, widths=[12, 20], activation="gelu"),
        # width >= WIDE_MLP: the batched-GEMM path (tanh folded into sigmoid; BatchNorm; no activation fold)
        lambda: MLP((64,), 10, width=300, depth=2, activation="tanh"),
        lambda: MLP((64,), 10, widths=[260, 40], activation="relu", batchnorm=True),
        lambda: SmallCNN((1, 8, 8), 10, channels=3),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 7), nn.Softplus(), nn.Dropout(0.5), nn.Linear(7, 10)),
        lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 10)),
        # conv nets point by point: BatchNorm folded into the convs (fx), channels_last inputs
        lambda: ResNet20((1, 8, 8), 10, width=4),
        lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=True), nn.BatchNorm2d(3, affine=False), nn.ReLU(),
                              nn.Flatten(), nn.Linear(192, 10)),
    ],
)
def test_batched_points_equal_per_point_losses(make):
    torch.manual_seed(0)
    model = make()
    for mod in model.modules():  # non-trivial BN statistics
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2.0)
            if mod.affine:
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.normal_(0, 0.3)
    X, y = _digits(90)
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        X = X.reshape(-1, 1, 8, 8)
    f = LossFunction(model, X, y, batch_size=40)
    d1, d2 = random_plane(f.params0, seed=2, ignore_1d=False)
    coords = np.array([[0.0, 0.0], [0.4, -0.3], [-1.0, 0.7], [0.2, 0.9]])
    for fast in (True, False):
        ev = BatchedEvaluator(f, None, [d1, d2], fast_first_layer=fast)
        loss, acc = ev(coords)
        for (a, b), lo, ac in zip(coords, loss, acc):
            rl, ra = f.evaluate(lincomb(f.params0, [(a, d1), (b, d2)]))
            assert lo == pytest.approx(rl, rel=1e-5, abs=1e-6)
            assert ac == pytest.approx(ra)


def test_resnet_points_use_the_batchnorm_folded_copy_and_leave_the_model_alone():
    """ResNet-20 takes the folded path (every conv -> BN pair fused), matches the per-point loss at
    float32 rounding (sums over ~100 examples of O(1) terms: ~1e-6 relative), and the loss function's
    model keeps its BatchNorm layers and weights."""
    torch.manual_seed(0)
    model = ResNet20((1, 8, 8), 10, width=4).eval()
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2.0)
            mod.bias.data.normal_(0, 0.3)
    X, y = _digits(50)
    f = LossFunction(model, X.reshape(-1, 1, 8, 8), y)
    h0 = model_hash(f.model)
    d1, d2 = random_plane(f.params0, seed=1, ignore_1d=False)
    ev = BatchedEvaluator(f, None, [d1, d2])
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert ev._conv is not None and len(ev._conv["pairs"]) == n_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ev._conv["module"].modules())
    coords = np.array([[0.3, -0.6], [1.0, 1.0]])
    loss, _ = ev(coords)
    for (a, b), lo in zip(coords, loss):
        rl, _ = f.evaluate(lincomb(f.params0, [(a, d1), (b, d2)]))
        assert lo == pytest.approx(rl, rel=1e-5, abs=1e-6)
    assert model_hash(f.model) == h0 and any(isinstance(m, nn.BatchNorm2d) for m in f.model.modules())


# --- centres ---------------------------------------------------------------------------------------


def test_centre_of_low_level_surfaces_is_the_loss_at_theta0():
    X, y = _digits()
    f = LossFunction(MLP((64,), 10, width=10, depth=2), X, y, batch_size=50)
    ref = float(f(f.params0))
    d1, d2 = random_plane(f.params0, seed=0)
    s1 = surface_1d(f, d1, grid=7, span=0.5)
    s2 = surface_2d(f, d1, d2, grid=(7, 5), span=((-1, 1), (-0.5, 0.5)))
    assert s2.loss.shape == (5, 7) and s2.accuracy.shape == (5, 7)
    for s in (s1, s2):
        assert _centre(s) == pytest.approx(ref, rel=1e-5)
        assert s.center_loss == pytest.approx(ref, rel=1e-6)
    # orientation: loss[j, i] is at (alphas[i], betas[j])
    a, b = s2.alphas[6], s2.betas[1]
    assert s2.loss[1, 6] == pytest.approx(f.evaluate(lincomb(f.params0, [(a, d1), (b, d2)]))[0], rel=1e-5)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kind", ["random", "pca", "hessian", "gradient", "runs"])
def test_centre_of_every_direction_kind(runs, kind, dims):
    run = runs[0]
    directions = ("runs", runs[1 : 1 + dims]) if kind == "runs" else kind
    before = model_hash(run.model)
    res = compute_surface(run, dims=dims, directions=directions, grid=5, samples=100, use_cache=False)
    assert model_hash(run.model) == before
    f = loss_function_for_run(run, samples=100)
    ref = float(f(f.params0))
    assert _centre(res.surface) == pytest.approx(ref, rel=1e-5)
    assert res.surface.center_loss == pytest.approx(ref, rel=1e-6)
    assert res.surface.directions.kind == kind
    d = res.to_dict()
    assert d["grid"] == [5] * dims and d["center_loss"] == pytest.approx(ref, rel=1e-6)
    if kind == "pca":
        assert res.trajectory is not None and len(res.trajectory.steps) == 12
        assert sum(d["directions"]["explained_variance"]) <= 1.0 + 1e-9
    if kind == "runs":
        assert [p["run"] for p in res.points] == [r.name for r in runs[: 1 + dims]]


# --- closed forms ----------------------------------------------------------------------------------


class _Quadratic(nn.Module):
    """A custom (non-Sequential) model: output x @ w, so the mse loss is a quadratic form in w."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, 1))

    def forward(self, x):
        return x @ self.w


@pytest.mark.parametrize("model_kind", ["sequential-linear", "custom"])
def test_quadratic_surface_matches_closed_form(model_kind):
    torch.manual_seed(1)
    X = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randn(50, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 1, bias=False)) if model_kind == "sequential-linear" else _Quadratic(4)
    f = LossFunction(model, X, y, loss="mse", dtype=torch.float64, batch_size=16)
    w0 = next(iter(f.params0.values())).reshape(-1)
    d1, d2 = random_plane(f.params0, seed=3, normalization="none")
    u, v = next(iter(d1.values())).reshape(-1), next(iter(d2.values())).reshape(-1)
    s = surface_2d(f, d1, d2, grid=(9, 7), span=((-2, 1), (-1, 3)))
    r0, r1, r2 = (X @ w0 - y).numpy(), (X @ u).numpy(), (X @ v).numpy()
    A, B = np.meshgrid(s.alphas, s.betas)
    exact = 0.5 * ((r0[None, None] + A[..., None] * r1 + B[..., None] * r2) ** 2).mean(-1)
    np.testing.assert_allclose(s.loss, exact, rtol=1e-12, atol=1e-14)
    assert np.isnan(s.accuracy).all()
    s1 = surface_1d(f, d1, grid=11, span=(-1, 2))
    np.testing.assert_allclose(s1.loss, 0.5 * ((r0[None] + s1.alphas[:, None] * r1) ** 2).mean(-1), rtol=1e-12)


# --- reparametrisation invariance ------------------------------------------------------------------


def _relu_rescaled(model: MLP, c: float) -> MLP:
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.net[1].weight.mul_(c)
        m.net[1].bias.mul_(c)
        m.net[3].weight.div_(c)
    return m


def _bn_rescaled(model: MLP, c: float) -> MLP:
    """Scale the Linear feeding a BatchNorm by c and its running statistics to match (exactly, with eps)."""
    m = copy.deepcopy(model)
    bn = m.net[2]
    with torch.no_grad():
        m.net[1].weight.mul_(c)
        m.net[1].bias.mul_(c)
        bn.running_mean.mul_(c)
        bn.running_var.mul_(c * c).add_((c * c - 1) * bn.eps)
    return m


@pytest.mark.parametrize("kind", ["relu", "batchnorm"])
@pytest.mark.parametrize("ignore_1d", [True, False])
def test_filter_normalised_surface_is_invariant_to_function_preserving_rescale(kind, ignore_1d):
    torch.manual_seed(0)
    X, y = _digits(100)
    X = X.double()
    if kind == "relu":
        model = MLP((64,), 10, width=10, depth=2, activation="relu").double()
        other = _relu_rescaled(model, 5.0)
    else:
        model = MLP((64,), 10, width=10, depth=1, activation="relu", batchnorm=True).double()
        with torch.no_grad():
            model.net[2].running_mean.normal_()
            model.net[2].running_var.uniform_(0.5, 2)
        other = _bn_rescaled(model, 5.0)
    f = LossFunction(model, X, y, dtype=torch.float64)
    g = LossFunction(other, X, y, dtype=torch.float64)
    assert g.evaluate()[0] == pytest.approx(f.evaluate()[0], rel=1e-10)  # same function
    surfaces = {}
    for name, fn in (("a", f), ("b", g)):
        for nz in ("filter", "none"):
            d1, d2 = random_plane(fn.params0, normalization=nz, ignore_1d=ignore_1d, seed=9)
            surfaces[name, nz] = surface_2d(fn, d1, d2, grid=5, span=0.8).loss
    np.testing.assert_allclose(surfaces["a", "filter"], surfaces["b", "filter"], rtol=1e-9)
    assert np.max(np.abs(surfaces["a", "none"] - surfaces["b", "none"])) > 1e-2


# --- determinism, weights untouched, progressive, cache --------------------------------------------


def test_seeds_reproduce_and_weights_unchanged(runs):
    run = runs[0]
    h = model_hash(run.model)
    a = compute_surface(run, grid=5, samples=64, seed=1, use_cache=False).surface
    b = compute_surface(run, grid=5, samples=64, seed=1, use_cache=False).surface
    c = compute_surface(run, grid=5, samples=64, seed=2, use_cache=False).surface
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.allclose(a.loss, c.loss)
    assert a.seed == 1 and a.directions.seed == 1
    assert model_hash(run.model) == h


def test_compute_surface_disk_cache(runs):
    run = runs[0]
    a = compute_surface(run, grid=5, samples=64, seed=4)
    b = compute_surface(run, grid=5, samples=64, seed=4)
    assert not a.cached and b.cached
    np.testing.assert_array_equal(a.surface.loss, b.surface.loss)
    c = compute_surface(run, grid=5, samples=64, seed=4, normalization="layer")
    assert not c.cached


def test_progressive_surface_reuses_coarse_points_and_ends_exact():
    X, y = _digits()
    f = LossFunction(MLP((64,), 10, width=8, depth=1), X, y)
    d1, d2 = random_plane(f.params0, seed=0)
    levels = list(progressive_surface_2d(f, d1, d2, span=0.5, levels=(5, 9, 17)))
    assert [s.grid for s in levels] == [[5, 5], [9, 9], [17, 17]]
    assert [s.settings["new_points"] for s in levels] == [25, 81 - 25, 289 - 81]
    full = surface_2d(f, d1, d2, span=0.5, grid=17)
    np.testing.assert_allclose(levels[-1].loss, full.loss, rtol=1e-6)
    np.testing.assert_allclose(levels[-1].loss[::4, ::4], levels[0].loss, rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(grid=1), dict(span=0.0), dict(directions="sideways"), dict(dims=3)])
def test_bad_settings_raise_one_line_value_errors(runs, bad):
    with pytest.raises(ValueError) as e:
        compute_surface(runs[0], samples=32, use_cache=False, **bad)
    assert "\n" not in str(e.value)


# --- export ----------------------------------------------------------------------------------------


def _small_surface():
    X, y = _digits(60)
    f = LossFunction(MLP((64,), 10, width=6, depth=1), X, y)
    d1, d2 = random_plane(f.params0, seed=5)
    return surface_2d(f, d1, d2, grid=(6, 4), span=0.7)


def _small_line():
    f = LossFunction(MLP((64,), 10, width=4, depth=1), *_digits(20))
    return surface_1d(f, random_direction(f.params0, seed=0), grid=3)


def test_npz_round_trip(tmp_path):
    s = _small_surface()
    back = load_npz(save_npz(s, tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.loss, s.loss)
    np.testing.assert_array_equal(back.alphas, s.alphas)
    np.testing.assert_array_equal(back.betas, s.betas)
    assert back.center_loss == s.center_loss and back.settings == s.settings
    for da, db in zip(s.directions.directions, back.directions.directions):
        assert list(da) == list(db)
        assert all(torch.equal(da[k], db[k]) for k in da)
    one = _small_line()
    back1 = load_npz(save_npz(one, tmp_path / "one.npz"))
    assert back1.betas is None
    np.testing.assert_array_equal(back1.loss, one.loss)


@pytest.mark.parametrize("encoding", ["ascii", "base64"])
def test_vtp_is_valid_polydata_with_round_tripping_values(tmp_path, encoding):
    s = _small_surface()
    path = save_vtp(s, tmp_path / "s.vtp", encoding=encoding, z_scale=2.0)
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    piece = root.find("PolyData/Piece")
    assert int(piece.get("NumberOfPoints")) == 24
    assert int(piece.get("NumberOfPolys")) == 2 * 5 * 3
    np.testing.assert_array_equal(read_vtp_array(path, "loss"), s.loss.ravel())
    np.testing.assert_array_equal(read_vtp_array(path, "accuracy"), s.accuracy.ravel())
    pts = read_vtp_array(path, "Points").reshape(-1, 3)
    np.testing.assert_allclose(pts[:, 2], 2.0 * s.loss.ravel())
    assert pts[7, 0] == s.alphas[1] and pts[7, 1] == s.betas[1]
    conn = read_vtp_array(path, "connectivity")
    offs = read_vtp_array(path, "offsets")
    assert conn.min() == 0 and conn.max() == 23 and offs[-1] == len(conn) == 90
    with pytest.raises(ValueError, match="2-D"):
        save_vtp(_small_line(), tmp_path / "one.vtp")


def test_progress_is_reported_and_reaches_one():
    X, y = _digits(60)
    f = LossFunction(MLP((64,), 10, width=6, depth=1), X, y)
    d1, d2 = random_plane(f.params0, seed=1)
    seen: list[float] = []
    surface_2d(f, d1, d2, grid=9, progress=lambda frac, msg: seen.append(frac))
    assert len(seen) >= 2 and seen[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_load_npz_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="surface file"):
        load_npz(tmp_path / "other.npz")


def test_concurrent_surfaces_agree_and_thread_setting_is_restored():
    import threading

    X, y = _digits(200)
    f = LossFunction(MLP((64,), 10, width=16, depth=2, activation="tanh"), X, y)
    d1, d2 = random_plane(f.params0, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ref = surface_2d(f, d1, d2, grid=9).loss
        out: list[np.ndarray] = []
        workers = [threading.Thread(target=lambda: out.append(surface_2d(f, d1, d2, grid=9).loss)) for _ in range(3)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(out) == 3
    for loss in out:
        np.testing.assert_array_equal(loss, ref)
    one = np.array([f.evaluate(lincomb(f.params0, [(a, d1), (b, d2)]))[0] for a, b in [(-1, -1), (1, 1)]])
    np.testing.assert_allclose([ref[0, 0], ref[-1, -1]], one, rtol=1e-5)
