"""Tests for ui/figures.py: the Plotly builders hold exactly the data they are given (synthetic inputs)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from app_helpers import make_surface, make_trajectory

from landscape_core.connectivity import PathResult
from landscape_core.flatness import PerturbationProfile
from ui import figures as F


def _quad_surface(n: int = 11, m: int = 7):
    """L(a, b) = a^2 + 4 b^2 + 0.5 on an n x m grid, engine layout loss[j, i] at (alphas[i], betas[j])."""
    a = np.linspace(-1, 1, n)
    b = np.linspace(-0.5, 0.5, m)
    A, B = np.meshgrid(a, b)
    loss = A**2 + 4 * B**2 + 0.5
    return make_surface(a, b, loss, 1 - loss / 10)


def test_surface_arrays_orientation_and_shape_check():
    s = _quad_surface()
    x, y, Z = F.surface_arrays(s)
    assert Z.shape == (7, 11)
    assert Z[3, 5] == pytest.approx(0.5)  # centre
    assert Z[0, 0] == pytest.approx(1 + 4 * 0.25 + 0.5)
    # the engine's layout is the only one: a grid stored (nx, ny) is an error, never silently transposed
    with pytest.raises(ValueError, match="shape"):
        F.surface_arrays(replace(s, loss=s.loss.T))
    with pytest.raises(ValueError, match="metric"):
        F.surface_arrays(s, "banana")


def test_contour_holds_grid_and_trajectory():
    s = _quad_surface()
    traj = make_trajectory([0.8, 0.4, 0.0], [0.3, 0.1, 0.0], steps=[0, 10, 20])
    fig = F.surface_figure(s, kind="contour", trajectory=traj, colorscale="Cividis")
    d = json.loads(fig.to_json())
    z = F.figure_arrays(d, 0, "z")
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, s.loss, rtol=1e-6)
    assert d["data"][0]["type"] == "contour"
    assert d["data"][0]["colorscale"][0][1]  # explicit colorscale stored
    tr = [t for t in d["data"] if t.get("name") == "trajectory"][0]
    np.testing.assert_allclose(F.figure_arrays({"data": [tr]}, 0, "x"), [0.8, 0.4, 0.0], rtol=1e-6)
    assert tr["text"] == ["step 0", "step 10", "step 20"]


def test_log_colour_and_zrange():
    s = _quad_surface()
    fig = F.surface_figure(s, kind="contour", log=True, zrange=(-1.0, 1.0))
    z = F.figure_arrays(fig, 0, "z")
    np.testing.assert_allclose(z, np.log10(s.loss), rtol=1e-5)
    assert fig.data[0].zmin == -1.0 and fig.data[0].zmax == 1.0


def test_3d_trajectory_lifted_above_surface():
    s = _quad_surface(21, 21)
    traj = make_trajectory([0.5, 0.25, 0.0], [0.25, 0.1, 0.0])
    fig = F.surface_figure(s, kind="3d", trajectory=traj)
    assert fig.data[0].type == "surface"
    tz = F.figure_arrays(fig, 1, "z")
    true = np.array([0.5**2 + 4 * 0.25**2 + 0.5, 0.25**2 + 4 * 0.1**2 + 0.5, 0.5])
    Z = s.loss
    lift = F.LIFT_FRACTION * (Z.max() - Z.min())
    # bilinear interpolation of a quadratic on this fine grid is within 1e-2 of the true value
    np.testing.assert_allclose(tz - lift, true, atol=1e-2)
    assert np.all(tz > true - 1e-2 + lift / 2)


def test_bilinear_exact_on_bilinear_function():
    x = np.linspace(0, 1, 5)
    y = np.linspace(0, 2, 4)
    X, Y = np.meshgrid(x, y)
    Z = 3 * X + 2 * Y + X * Y
    px, py = np.array([0.13, 0.77]), np.array([1.9, 0.31])
    np.testing.assert_allclose(F.bilinear(x, y, Z, px, py), 3 * px + 2 * py + px * py, rtol=1e-12)


def test_1d_from_2d_is_centre_slice_and_accuracy_metric():
    s = _quad_surface()
    fig = F.surface_figure(s, kind="1d")
    np.testing.assert_allclose(F.figure_arrays(fig, 0, "y"), s.loss[3], rtol=1e-6)
    fig_acc = F.surface_figure(s, kind="contour", metric="accuracy")
    np.testing.assert_allclose(F.figure_arrays(fig_acc, 0, "z"), s.accuracy, rtol=1e-6)
    one = make_surface([-1, 0, 1], None, [2.0, 1.0, 2.5])
    np.testing.assert_allclose(F.figure_arrays(F.surface_figure(one, kind="3d"), 0, "y"), [2.0, 1.0, 2.5])
    with pytest.raises(ValueError, match="kind"):
        F.surface_figure(s, kind="4d")


def test_side_by_side_shares_one_colour_range():
    s1 = _quad_surface()
    s2 = replace(s1, loss=s1.loss * 3)
    fig = F.surfaces_side_by_side([("a", s1), ("b", s2)], kind="contour")
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 2
    assert contours[0].zmin == contours[1].zmin == pytest.approx(0.5)
    assert contours[0].zmax == contours[1].zmax == pytest.approx(3 * 2.5)
    fig3 = F.surfaces_side_by_side([("a", s1), ("b", s2)], kind="3d")
    assert fig3.layout.scene.zaxis.range == fig3.layout.scene2.zaxis.range


def test_running_mean_band_and_spectrum():
    rng = np.random.default_rng(0)
    s = rng.normal(10.0, 2.0, 400)
    fig = F.running_mean_figure(s, exact=10.0)
    mean = F.figure_arrays(fig, 1, "y")
    assert mean[-1] == pytest.approx(s.mean(), rel=1e-5)
    band = F.figure_arrays(fig, 0, "y")
    se = s.std(ddof=1) / np.sqrt(len(s))
    assert band[len(s) - 1] == pytest.approx(s.mean() + 1.96 * se, rel=1e-4)
    sp = F.spectrum_figure([5.0, 3.0], residuals=[0.1, 0.2], exact=[1.0, 5.0, 3.0])
    assert list(F.figure_arrays(sp, 1, "y")) == [5.0, 3.0]
    assert list(F.figure_arrays({"data": [sp.to_plotly_json()["data"][0]["error_y"]]}, 0, "array")) == pytest.approx([0.1, 0.2])


def test_density_log_and_other_builders():
    g = np.linspace(-1, 5, 50)
    d = np.exp(-((g - 2) ** 2))
    fig = F.density_figure(g, d, log=True, exact=[2.0], sigma=0.1)
    assert fig.layout.yaxis.type == "log"
    assert "sigma = 0.1" in fig.layout.title.text
    ev = F.explained_variance_figure([0.8, 0.15])
    np.testing.assert_allclose(F.figure_arrays(ev, 1, "y"), [80, 95], rtol=1e-6)
    prof = PerturbationProfile(radii=(0.1, 0.2), mean_increase=(0.01, 0.05), std=(0.01, 0.01), ci_low=(0.0, 0.04),
                               ci_high=(0.02, 0.06), raw=np.zeros((2, 3)))
    st = F.flatness_stem_figure({"A": prof})
    np.testing.assert_allclose(F.figure_arrays(st, 1, "y"), [0.01, 0.05], rtol=1e-6)
    nf = F.noise_figure([8, 32, 128], [100, 110, 105], [5, 5, 5], b_simple=105.0)
    assert nf.layout.xaxis.type == "log"
    hm = F.layer_heatmap(["l1", "l2"], ["trace", "lambda_max"], [[1.0, 2.0], [10.0, 0.5]])
    np.testing.assert_allclose(F.figure_arrays(hm, 0, "z"), np.log10([[1, 2], [10, 0.5]]), rtol=1e-6)
    path = PathResult(ts=(0.0, 0.5, 1.0), loss=(0.1, 0.9, 0.2), accuracy=(1.0, 0.5, 1.0), test_loss=None,
                      test_accuracy=None, barrier=0.75, barrier_t=0.5, endpoint_losses=(0.1, 0.2))
    cf = F.connectivity_figure({"linear": path})
    np.testing.assert_allclose(F.figure_arrays(cf, 0, "y"), [0.1, 0.9, 0.2], rtol=1e-6)
    # the excess over the chord (1 - t) L_A + t L_B: its maximum is the barrier
    ex = F.figure_arrays(F.connectivity_figure({"linear": path}, "excess"), 0, "y")
    np.testing.assert_allclose(ex, [0.0, 0.75, 0.0], atol=1e-7)
    sh = F.sharpness_figure([0, 1, 2], [10, 20, 30], lr=0.1)
    assert any(abs(s["y0"] - 20.0) < 1e-9 for s in sh.to_plotly_json()["layout"]["shapes"])
    rz = F.ritz_convergence_figure([[1.0], [1.5, 0.2], [2.0, 1.0, 0.1]], exact=[2.0, 1.0, 0.1])
    assert len(F.figure_arrays(rz, 0, "x")) == 6
