"""Home page: the four demo runs in views where sharpness is visible, the numbers beside the panels, text
generated from the numbers, presentation mode, no runs, and the shipped analyses file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_helpers import chart_by_key, plotly_array

from landscape_core.analyses.hessian import CurvatureResult
from landscape_core.runs import checkpoints_dir, read_meta

PAGE = "app.py"
DEMO = ["digits-sgd", "digits-sam", "digits-adam", "digits-sgd-sharp"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cold run of the home page, shared by the tests below."""
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


def _shipped_lambda(name: str) -> float:
    from ui.home_ui import CURVATURE, shipped_analysis

    return shipped_analysis("hessian", _demo_row(name), CURVATURE)["eigenvalues"][0]


def test_panels_share_one_cut_on_the_hessian_plane(home):
    at = home
    assert not at.exception
    spec = chart_by_key(at, "home_panels")
    traces = spec["data"]
    assert [t["type"] for t in traces] == ["surface"] * len(DEMO)
    cuts = {float(t["cmax"]) for t in traces}
    assert len(cuts) == 1  # one height scale for all panels
    cut = cuts.pop()
    assert f"clipped at {cut:g}" in spec["layout"]["title"]["text"]  # the height is stated on the plot
    for t in traces:
        z = plotly_array(t["z"])
        assert z.shape == (21, 21)
        assert np.nanmax(z) == cut  # clipped at the stated height (every panel reaches it)
        # the centre of the plane is the trained point: rise 0 there (two float32 evaluations of one loss)
        assert abs(z[10, 10]) <= 1e-5


def test_eigenvector_slices_show_the_lambda_max_order(home):
    """The claim the picture makes: near the trained point the slices curve in the order of lambda_max.
    The symmetric second difference (y(h) + y(-h) - 2 y(0)) / h^2 removes the linear (gradient) and cubic
    terms, so its order is the order of the curvature along the eigenvector."""
    spec = chart_by_key(home, "home_slices_eig")
    solid = [t for t in spec["data"] if t.get("line", {}).get("dash") != "dash"]
    assert [t["name"] for t in solid] == ["SGD", "SAM", "ADAM", "SGD lr 0.5"]
    curv = []
    for t in solid:
        x, y = plotly_array(t["x"]), plotly_array(t["y"])
        c = len(x) // 2
        h = x[c + 1] - x[c]
        curv.append((y[c + 1] + y[c - 1] - 2 * y[c]) / h**2)
    lams = [_shipped_lambda(n) for n in DEMO]
    assert np.argsort(curv).tolist() == np.argsort(lams).tolist(), (curv, lams)
    dashed = [t for t in spec["data"] if t.get("line", {}).get("dash") == "dash"]
    for t, lam in zip(dashed, lams):  # the dashed quadratic is lambda_max t^2 / 2
        x, y = plotly_array(t["x"]), plotly_array(t["y"])
        np.testing.assert_allclose(y, 0.5 * lam * x**2, rtol=1e-6, atol=1e-7)  # float32 transport


def test_numbers_beside_each_panel_match_the_runs(home):
    text = " ".join(m.value for m in home.markdown)
    for name in DEMO:
        final = read_meta(checkpoints_dir() / name)["final"]
        assert f"test acc **{final['test_acc']:.1%}**" in text
        assert f"{_shipped_lambda(name):.3g}" in text
    assert "random filter-normalised" in " ".join(c.value for c in home.caption)


def _fake(name: str, lam: float, check: float, acc: float, lr: float = 0.05, opt: str = "sgd") -> dict:
    def cr(v: float) -> CurvatureResult:
        return CurvatureResult(eigenvalues=[v], residuals=[0.0], converged=True, matvecs=1, seconds=0.0,
                               num_params=10, condition={}, trace={"mean": 1.0, "stderr": 0.1})

    return {"row": {"name": name, "optimizer": opt, "lr": lr, "test_acc": acc, "train_acc": 1.0,
                    "path": str(checkpoints_dir() / "digits-sgd")},
            "hessian": cr(lam), "check": cr(check)}


def test_guide_links_open_the_guide_page_at_their_section(home):
    """Guide links are page links (same tab, same session) carrying the section, not markdown links."""
    from ui.guide_text import ANCHORS

    links = home.get("page_link")
    assert len(links) == 4
    for link in links:
        assert link.proto.page == "Guide" and link.proto.icon.startswith(":material/")
        section = link.proto.query_string.removeprefix("section=")
        assert section in ANCHORS, link.proto.query_string


def test_claims_follow_the_numbers():
    from ui.home_ui import claims, flatter

    sgd = _fake("digits-sgd", 0.24, 0.33, 0.97)
    sam_clear = _fake("digits-sam", 0.11, 0.14, 0.97, opt="sam")
    sam_overlap = _fake("digits-sam", 0.20, 0.30, 0.97, opt="sam")
    assert flatter(sam_clear, sgd) and not flatter(sam_overlap, sgd) and not flatter(sgd, sam_overlap)
    text = " ".join(claims([sgd, sam_clear]))
    assert "SAM's minimum is flatter than SGD's" in text
    text = " ".join(claims([sgd, sam_overlap]))
    assert "flatter" not in text.split("SAM's and SGD's")[1] and "cannot tell them apart" in text
    # accuracy differences inside the counting noise of the test set are not called differences
    assert "does not measurably change test accuracy" in text


def test_view_control_switches_the_panels_to_contours(home):
    at = home
    at.select_slider(key="home_view").set_value("contour").run()
    assert [t["type"] for t in chart_by_key(at, "home_panels")["data"]] == ["contour"] * len(DEMO)
    at.select_slider(key="home_view").set_value("3-D").run()
    assert [t["type"] for t in chart_by_key(at, "home_panels")["data"]] == ["surface"] * len(DEMO)


def test_presentation_mode_steps_through_slides(home):
    from ui.home_ui import SLIDES

    at = home
    at.sidebar.toggle[0].set_value(True).run()
    assert at.session_state["presentation"]
    assert at.header[0].value.startswith("Do optimizers")
    heads = [at.header[0].value]
    for _ in range(len(SLIDES) - 1):
        at.button(key="home_next").click().run()
        assert not at.exception
        heads.append(at.header[0].value)
        if heads[-1].startswith("Sharpness, measured"):
            vals = [m.value for m in at.metric if m.label == "λ_max"]
            assert vals == [f"{_shipped_lambda(n):.3g}" for n in DEMO]
        if heads[-1].startswith("Try it"):  # the live slide: the slider redraws the stability line
            y0 = chart_by_key(at, "slide_stability")["layout"]["shapes"][0]["y0"]
            at.select_slider(key="slide_lr").set_value(0.5).run()
            assert chart_by_key(at, "slide_stability")["layout"]["shapes"][0]["y0"] == pytest.approx(4.0)
            assert y0 == pytest.approx(2.0)
        if heads[-1] == "Interview talking points":
            pts = " ".join(m.value for m in at.markdown)
            assert f"{_shipped_lambda('digits-sam'):.3g}" in pts and f"{_shipped_lambda('digits-sgd'):.3g}" in pts
    assert at.button(key="home_next").disabled and len(set(heads)) == len(SLIDES)
    captions = " ".join(m.value for m in at.markdown)
    assert "each panel" not in captions.lower() and "below" not in captions.lower()  # self-contained
    at.button(key="home_prev").click().run()
    assert at.header[0].value == "Interview talking points"
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
# The Hessian plane's axes are Lanczos eigenvectors, and another CPU's rounding turns them slightly: by
# Davis-Kahan, sin(angle) <= 2 r / gap for two computations with residual r = ||H v - lambda v|| each. The
# Lanczos tolerance allows r <= 1e-6 lambda_1; the shipped runs' smallest relative gaps are
# lambda_1 / (lambda_2 - lambda_3) <= 0.12 / 0.0059 ~ 20, so the axes turn by <= 4e-5 rad. A point
# a v1 + b v2 (|a|, |b| <= 0.5) then moves by <= 0.5 * sqrt(2) * 2 * 4e-5 ~ 6e-5 in weight space, and the
# loss by that times the gradient norm on the plane (<= 10 here: the loss rises at most ~1.3 over 0.5):
# 6e-4 absolute, on top of the float32 rounding above.
PLANE_ATOL = LOSS_ATOL + 6e-4


def test_shipped_analyses_equal_a_fresh_computation():
    from landscape_core.analyses.hessian import analyze_hessian
    from landscape_core.demo import DEMO_CURVATURE, DEMO_CURVATURE_CHECK, DEMO_PLANE, DEMO_RANDOM
    from landscape_core.runs import load_run
    from ui.analysis import SurfaceSettings, compute_surface_result
    from ui.home_ui import shipped_analysis

    for name in DEMO:
        row = _demo_row(name)
        for settings, atol in ((DEMO_RANDOM, LOSS_ATOL), (DEMO_PLANE, PLANE_ATOL)):
            surf = shipped_analysis("surface", row, settings)
            assert surf is not None, f"{name}: no shipped surface for its weights hash"
            fresh = compute_surface_result(row["path"], SurfaceSettings(**settings)).to_dict()
            np.testing.assert_allclose(surf["center_loss"], fresh["center_loss"], rtol=LOSS_RTOL, atol=LOSS_ATOL)
            np.testing.assert_allclose(np.asarray(surf["loss"]), np.asarray(fresh["loss"]), rtol=LOSS_RTOL, atol=atol)
        for settings in (DEMO_CURVATURE, DEMO_CURVATURE_CHECK):
            hess = shipped_analysis("hessian", row, settings)
            assert hess is not None, f"{name}: no shipped curvature for its weights hash"
            h = analyze_hessian(load_run(row["path"]), **settings).to_dict()
            np.testing.assert_allclose(hess["eigenvalues"], h["eigenvalues"], rtol=CURVATURE_RTOL)
            np.testing.assert_allclose(hess["trace"]["mean"], h["trace"]["mean"], rtol=CURVATURE_RTOL)
    # settings that differ in any value are not served from the shipped file
    assert shipped_analysis("surface", _demo_row(DEMO[0]), {**DEMO_PLANE, "grid": 11}) is None


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
    assert calls == [] and hit[0]["plane"].surface.center_loss > 0  # shipped: nothing computed
    miss = demo_results([_demo_row(DEMO[0], weights_hash="0" * 64)])
    assert [c[0] for c in calls] == ["surface", "surface", "hessian", "hessian"]
    assert all(c[2] == "0" * 64 for c in calls)
    assert miss[0]["plane"] == {"kind": "surface"} and miss[0]["check"] == {"kind": "hessian"}
