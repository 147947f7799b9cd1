"""Home page: the SGD/SAM/Adam demo on the shipped runs, display controls, presentation mode, no runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_helpers import chart_data, plotly_array

from landscape_core.runs import checkpoints_dir, read_meta

PAGE = "app.py"
DEMO = ["digits-sgd", "digits-sam", "digits-adam"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cold run of the home page, shared by the tests below (the computation is the slow part)."""
    import os

    from app_helpers import ROOT
    from streamlit.testing.v1 import AppTest

    if not all((checkpoints_dir() / n / "run.json").is_file() for n in DEMO):
        pytest.fail("shipped demo runs missing from checkpoints/")
    old = os.environ.get("LANDSCAPE_CACHE")
    os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("home-cache"))
    try:
        at = AppTest.from_file(str(ROOT / PAGE), default_timeout=300).run()
    finally:
        if old is None:
            os.environ.pop("LANDSCAPE_CACHE", None)
        else:
            os.environ["LANDSCAPE_CACHE"] = old
    return at


def test_demo_shows_three_runs_on_one_scale(home):
    at = home
    assert not at.exception
    data = chart_data(at)
    surfaces = [t for t in data if t["type"] == "surface"]
    assert len(surfaces) == 3
    # one shared colour scale: the same cmin/cmax on every panel, covering every panel's values
    cmins = {t["cmin"] for t in surfaces}
    cmaxs = {t["cmax"] for t in surfaces}
    assert len(cmins) == 1 and len(cmaxs) == 1
    lo, hi = cmins.pop(), cmaxs.pop()
    for t in surfaces:
        z = plotly_array(t["z"])
        assert lo <= float(np.nanmin(z)) + 1e-6 and float(np.nanmax(z)) <= hi + 1e-6
        assert z.shape == (21, 21)
    # the centre of each surface is the trained point: its loss is the minimum of the grid (a trained net)
    for t in surfaces:
        z = plotly_array(t["z"])
        assert z[10, 10] <= np.nanmin(z) + 1e-3


def test_metrics_match_the_runs(home):
    at = home
    metrics = [(m.label, m.value) for m in at.metric]
    accs = [v for k, v in metrics if k == "test accuracy"]
    assert accs == [f"{read_meta(checkpoints_dir() / n)['final']['test_acc']:.1%}" for n in DEMO]
    lam = [float(v) for k, v in metrics if k.startswith("λ_max")]
    traces = [v for k, v in metrics if k.startswith("trace")]
    assert len(lam) == 3 and all(x > 0 for x in lam)
    assert all("±" in t for t in traces)
    # the story names SAM's and SGD's measured sharpness
    text = " ".join(m.value for m in at.markdown)
    assert f"{lam[1]:.3g}" in text and f"{lam[0]:.3g}" in text


def test_view_controls_change_the_figure(home):
    at = home
    at.select_slider(key="home_view").set_value("contour").run()
    assert {t["type"] for t in chart_data(at)} >= {"contour"}
    at.select_slider(key="home_view").set_value("1-D slice").run()
    lines = [t for t in chart_data(at) if t["type"] == "scatter"]
    assert len(lines) == 3
    z = [plotly_array(t["y"]) for t in lines]
    at.toggle(key="home_log").set_value(True).run()
    zl = [plotly_array(t["y"]) for t in chart_data(at) if t["type"] == "scatter"]
    for a, b in zip(z, zl):
        np.testing.assert_allclose(b, np.log10(a), rtol=1e-4, atol=1e-5)
    at.toggle(key="home_log").set_value(False)
    at.select_slider(key="home_view").set_value("3-D").run()


def test_presentation_mode_steps_through_slides(home):
    at = home
    at.sidebar.toggle[0].set_value(True).run()
    assert at.session_state["presentation"]
    assert at.header[0].value.startswith("Do optimizers")
    at.button(key="home_next").click().run()
    assert len(chart_data(at)) == 3 and "home_view" not in [s.key for s in at.select_slider]
    at.button(key="home_next").click().run()
    assert len([m for m in at.metric if m.label == "test accuracy"]) == 3
    at.button(key="home_next").click().run()
    assert at.button(key="home_next").disabled
    at.button(key="home_prev").click().run()
    assert at.header[0].value.startswith("Sharpness")
    assert any("font-size" in m.value for m in at.markdown)  # larger type injected
    at.sidebar.toggle[0].set_value(False).run()


def test_no_runs_guides_the_user(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("Train" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    json.dumps(at.session_state["presentation"])


def _demo_row(name: str, weights_hash: str | None = None) -> dict:
    path = checkpoints_dir() / name
    return {"name": name, "path": str(path), "weights_hash": weights_hash or read_meta(path)["weights_hash"]}


# The shipped numbers were computed on one CPU; a fresh float32 computation on another (other SIMD
# width, other exp/log kernels, other matmul blocking, other thread count) rounds differently, so the
# check allows what float32 arithmetic allows and no more (eps32 = 2^-23 ~ 1.2e-7):
# - a mean cross-entropy over 256 samples: the logits come from four float32 matmuls over 64 inputs
#   and the mean is a float32 sum of 256 terms, ~1e-6 relative each, bounded by 1e-5 relative; and a
#   confident sample's loss is log(sum_j exp(l_j - l_max)) = log(1 + tiny), the log of a float32 near 1,
#   whose absolute rounding is up to eps32 / 2 however small the loss is (the centre losses are ~2e-3,
#   where 1e-5 relative is only 2e-8): so atol = 2 eps32 (two computations, each within eps32 of exact).
#   Measured between kernel paths (AVX-512 / AVX2 / ATEN_CPU_CAPABILITY=default, 1 or 2 threads):
#   up to 9e-9 absolute (3e-6 relative) at the centre, 3.6e-7 absolute at losses ~1.8.
# - the top eigenvalue and the Hutchinson trace come from float32 Hessian-vector products (sums over
#   256 samples, dot products over 13130 parameters): 1e-5 relative. Measured: up to 1.3e-6.
# A wrong shipped number (another seed, other weights or samples) is off by far more than these.
LOSS_RTOL, LOSS_ATOL = 1e-5, 2 * float(np.finfo(np.float32).eps)
CURVATURE_RTOL = 1e-5


def test_shipped_analyses_equal_a_fresh_computation():
    from landscape_core.analyses.hessian import analyze_hessian
    from landscape_core.runs import load_run
    from ui.analysis import SurfaceSettings, compute_surface_result
    from ui.home_ui import CURVATURE, SURFACE, shipped_analysis

    for name in DEMO:
        row = _demo_row(name)
        surf = shipped_analysis("surface", row, SURFACE)
        hess = shipped_analysis("hessian", row, CURVATURE)
        assert surf is not None and hess is not None, f"{name}: no shipped entry for its weights hash"
        fresh = compute_surface_result(row["path"], SurfaceSettings(**SURFACE)).to_dict()
        np.testing.assert_allclose(surf["center_loss"], fresh["center_loss"], rtol=LOSS_RTOL, atol=LOSS_ATOL)
        np.testing.assert_allclose(np.asarray(surf["loss"]), np.asarray(fresh["loss"]), rtol=LOSS_RTOL, atol=LOSS_ATOL)
        h = analyze_hessian(load_run(row["path"]), **CURVATURE).to_dict()
        np.testing.assert_allclose(hess["eigenvalues"], h["eigenvalues"], rtol=CURVATURE_RTOL)
        np.testing.assert_allclose(hess["trace"]["mean"], h["trace"]["mean"], rtol=CURVATURE_RTOL)
    # settings that differ in any value are not served from the shipped file
    assert shipped_analysis("surface", _demo_row(DEMO[0]), {**SURFACE, "grid": 11}) is None


def test_hash_mismatch_falls_back_to_computing(monkeypatch):
    import ui.analysis as analysis
    from ui.home_ui import demo_results

    calls = []

    def fake(kind):
        def f(path, weights_hash, settings, progress=None):
            calls.append((kind, path, weights_hash))
            return {"kind": kind}
        return f

    monkeypatch.setattr(analysis, "cached_surface", fake("surface"))
    monkeypatch.setattr(analysis, "cached_hessian", fake("hessian"))
    hit = demo_results([_demo_row(DEMO[0])])
    assert calls == [] and hit[0]["surface"].surface.center_loss > 0  # shipped: nothing computed
    miss = demo_results([_demo_row(DEMO[0], weights_hash="0" * 64)])
    assert [c[0] for c in calls] == ["surface", "hessian"] and all(c[2] == "0" * 64 for c in calls)
    assert miss[0]["surface"] == {"kind": "surface"} and miss[0]["hessian"] == {"kind": "hessian"}
