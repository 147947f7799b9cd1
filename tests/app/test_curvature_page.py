"""AppTest of pages/6_Curvature.py on the shipped runs (moons-tiny for the exact spectrum)."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import chart_by_key as _chart

from landscape_core.exact import exact_spectrum
from landscape_core.functional import loss_function_for_run
from landscape_core.runs import checkpoints_dir, load_run
from ui.figures import figure_arrays

PAGE = "pages/6_Curvature.py"
TINY = checkpoints_dir() / "moons-tiny"
DIGITS = checkpoints_dir() / "digits-sgd"




def _hessian_computations(at) -> int:
    """Hessian analyses computed in this session (a counter in session state, never drawn on screen)."""
    key = "_count:compute:hessian"
    return at.session_state[key] if key in at.session_state else 0


def _tiny_page(app_test, **state):
    if not (TINY / "run.json").is_file():
        pytest.fail("shipped run checkpoints/moons-tiny is missing (run scripts/make_checkpoints.py)")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(TINY)
    defaults = {"curv_samples": 128, "curv_probes": 10, "curv_dprobes": 2, "curv_dsteps": 30, "curv_k": 5}
    for k, v in {**defaults, **state}.items():
        at.session_state[k] = v
    return at


def test_exact_spectrum_matches_estimators_and_controls(app_test):
    at = _tiny_page(app_test).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Press **Compute**" in i.value for i in at.info)
    at.button(key="curv_compute").click().run()
    assert not at.exception, [e.value for e in at.exception]

    spec = _chart(at, "curv_spectrum")
    est = figure_arrays(spec, 0, "y").astype(np.float64)
    res = figure_arrays({"data": [spec["data"][0]["error_y"]]}, 0, "array").astype(np.float64)
    exact_fig = figure_arrays(spec, 1, "y").astype(np.float64)
    # independent dense float64 spectrum of the same loss (128 train examples, seed 0)
    lf = loss_function_for_run(load_run(TINY), split="train", samples=128, seed=0)
    exact = np.sort(exact_spectrum(lf))[::-1]
    np.testing.assert_allclose(exact_fig, exact[:5], rtol=1e-5)
    assert len(est) == 5
    # every Ritz value is within its residual (+ float32 rounding of the operator) of an exact eigenvalue
    tol = 1e-6 * abs(exact[0])
    for v, r, e in zip(est, res, exact[:5]):
        assert abs(v - e) <= r + tol + 1e-6 * abs(e)
    assert any("lambda_max" in m.label and float(m.value) == pytest.approx(exact[0], rel=1e-4) for m in at.metric)

    # density: the smoothing slider re-smooths the stored nodes; no new Hessian computation
    n_before = _hessian_computations(at)
    d1 = _chart(at, "curv_density_fig")
    y1 = figure_arrays(d1, 0, "y").astype(np.float64)
    x1 = figure_arrays(d1, 0, "x").astype(np.float64)
    assert np.trapezoid(y1, x1) == pytest.approx(1.0, abs=0.02)
    assert d1["layout"]["yaxis"]["type"] == "log"
    at.slider(key="curv_sigma").set_value(0.05).run()
    d2 = _chart(at, "curv_density_fig")
    y2 = figure_arrays(d2, 0, "y").astype(np.float64)
    x2 = figure_arrays(d2, 0, "x").astype(np.float64)
    assert not np.allclose(y1[: len(y2)], y2[: len(y1)])
    assert np.trapezoid(y2, x2) == pytest.approx(1.0, abs=0.02)
    assert y2.max() < y1.max()  # wider kernel, lower peaks
    assert _hessian_computations(at) == n_before
    at.toggle(key="curv_dlog").set_value(False).run()
    assert _chart(at, "curv_density_fig")["layout"]["yaxis"]["type"] == "linear"

    # per-layer table and heat map
    assert _chart(at, "curv_layer_map")["data"][0]["type"] == "heatmap"
    # sharpness: moons-tiny did not track it, the page explains how to enable it
    assert any("sharpness_every" in i.value for i in at.info)

    # estimators vs exact: Ritz values per iteration and the Hutchinson running mean
    at.button(key="curv_study_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ritz = _chart(at, "curv_ritz")
    assert figure_arrays(ritz, 0, "x").max() == pytest.approx(min(60, 354))
    hutch = _chart(at, "curv_hutch")
    assert len(figure_arrays(hutch, 1, "y")) == 100
    assert any("5/5 Lanczos eigenvalues" in s.value for s in at.success)

    # sample budget: lambda_max on 64 examples for data seeds 0, 1, 2 equals independent analyses
    at.select_slider(key="curv_budget").set_value(64).run()
    at.button(key="curv_budget_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    lam = figure_arrays(_chart(at, "curv_budget_lam"), 0, "y").astype(np.float64)
    from landscape_core.analyses.hessian import analyze_hessian

    ref = [analyze_hessian(load_run(TINY), top_k=1, trace=True, trace_probes=30, smallest=False, samples=64, seed=s,
                           tol=1e-4).eigenvalues[0] for s in (0, 1, 2)]
    np.testing.assert_allclose(lam, ref, rtol=1e-4)
    assert np.ptp(lam) > 0  # different data subsets give different estimates: the subsampling spread

    # top-k: a new analysis with 3 eigenvalues
    at.slider(key="curv_k").set_value(3).run()
    at.button(key="curv_compute").click().run()
    assert len(figure_arrays(_chart(at, "curv_spectrum"), 0, "y")) == 3


def test_large_model_has_no_exact_option(app_test):
    if not (DIGITS / "run.json").is_file():
        pytest.fail("shipped run checkpoints/digits-sgd is missing")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(DIGITS)
    at.run()
    assert not at.exception
    tog = at.toggle(key="curv_exact_False")
    assert tog.disabled and tog.value is False
    assert not at.get("plotly_chart")  # nothing heavy runs before Compute


def test_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_sharpness_history_against_two_over_lr(app_test, workspace_dir):
    from landscape_core.models import build_model, model_spec
    from landscape_core.runs import save_run

    spec = model_spec("mlp", (2,), 2, width=4, depth=1)
    records = [{"step": s, "lambda_max": lam, "threshold": 20.0} for s, lam in ((0, 3.0), (10, 12.0), (20, 19.5))]
    path = save_run(workspace_dir / "sharp", build_model(spec, seed=0),
                    {"model": spec, "dataset": {"name": "moons"}, "config": {"lr": 0.1, "optimizer": "sgd"},
                     "sharpness": records})
    at = app_test(PAGE)
    at.session_state["active_run"] = str(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _chart(at, "curv_sharpness")
    np.testing.assert_allclose(figure_arrays(fig, 0, "y"), [3.0, 12.0, 19.5])
    assert [sh["y0"] for sh in fig["layout"]["shapes"]] == [pytest.approx(2 / 0.1)]
