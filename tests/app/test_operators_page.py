"""AppTest of the Curvature page's operator choice and spectrum overlay (ui/operators_ui.py) on moons-tiny:
the numbers drawn equal ``analyze_hessian(..., operator=...)`` on the same subset."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import chart_by_key

from landscape_core.analyses.hessian import analyze_hessian
from landscape_core.exact import exact_spectrum
from landscape_core.functional import loss_function_for_run
from landscape_core.runs import checkpoints_dir, load_run
from ui.figures import figure_arrays

PAGE = "pages/6_Curvature.py"
TINY = checkpoints_dir() / "moons-tiny"


def _page(app_test, **state):
    if not (TINY / "run.json").is_file():
        pytest.fail("shipped run checkpoints/moons-tiny is missing (run scripts/make_checkpoints.py)")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(TINY)
    defaults = {"curv_samples": 128, "curv_probes": 10, "curv_k": 4, "curv_density": False, "curv_layers": False}
    for k, v in {**defaults, **state}.items():
        at.session_state[k] = v
    return at


def _computations(at) -> int:
    key = "_count:compute:hessian"
    return at.session_state[key] if key in at.session_state else 0


def test_operator_choice_gives_the_engine_values(app_test):
    at = _page(app_test, curv_operator="ggn").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Jᵀ H_out J" in c.value for c in at.caption)  # the one-line explanation of the GGN
    at.button(key="curv_compute").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ref = analyze_hessian(load_run(TINY), operator="ggn", top_k=4, samples=128, split="train", seed=0, trace=False)
    lam = next(float(m.value) for m in at.metric if m.label == "lambda_max")
    # the metric is printed with 4 significant digits (f"{x:.4g}")
    assert lam == pytest.approx(ref.eigenvalues[0], rel=1e-3)
    # exact (dense float64) GGN spectrum is drawn for the tiny model: the GGN is PSD, the Hessian is not here
    spec = chart_by_key(at, "curv_spectrum")
    exact_ggn = figure_arrays(spec, 1, "y").astype(np.float64)
    np.testing.assert_allclose(exact_ggn, np.asarray(ref.eigenvalues), rtol=1e-4)  # Lanczos tol 1e-6 + float32
    assert not any("Negative curvature" in w.value for w in at.warning)


def test_overlay_of_operators_matches_engine_and_caches_per_operator(app_test):
    kinds = ["hessian", "ggn", "empirical-fisher"]
    at = _page(app_test, curv_ov_kinds=kinds, curv_ov_what="top-k").run()
    assert not at.exception, [e.value for e in at.exception]
    n0 = _computations(at)
    at.button(key="curv_ov_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _computations(at) == n0 + 3  # one cached analysis per operator: the operator is in the key
    fig = chart_by_key(at, "curv_overlay")
    assert [t["name"] for t in fig["data"]] == ["Hessian", "Generalised Gauss-Newton (PSD)", "Empirical Fisher (PSD)"]
    run = load_run(TINY)
    for i, kind in enumerate(kinds):
        ref = analyze_hessian(run, operator=kind, top_k=4, samples=128, split="train", seed=0, trace=False)
        # same deterministic Lanczos on the same 128-example loss; float32 figure arrays (~1e-7 relative)
        np.testing.assert_allclose(figure_arrays(fig, i, "y").astype(np.float64), ref.eigenvalues, rtol=1e-5)
    # the GGN equals the Hessian minus the residual term: at least one of the top values differs here,
    # and the Hessian's top eigenvalue is the dense float64 one
    lf = loss_function_for_run(run, split="train", samples=128, seed=0)
    top = float(np.max(exact_spectrum(lf)))
    assert figure_arrays(fig, 0, "y")[0] == pytest.approx(top, rel=1e-4)
    at.run()  # a rerun draws the stored results: no new computation
    assert _computations(at) == n0 + 3
    assert chart_by_key(at, "curv_overlay")["data"][1]["name"].startswith("Generalised")


def test_density_overlay_draws_one_density_per_operator(app_test):
    at = _page(app_test, curv_ov_kinds=["hessian", "fisher"], curv_ov_what="density", curv_dprobes=1,
               curv_dsteps=20).run()
    at.button(key="curv_ov_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    fig = chart_by_key(at, "curv_overlay")
    assert len(fig["data"]) == 2 and fig["layout"]["yaxis"]["type"] == "log"
    for i in range(2):
        x = figure_arrays(fig, i, "x").astype(np.float64)
        y = figure_arrays(fig, i, "y").astype(np.float64)
        assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.03)  # a smoothed density integrates to ~1
    # the Fisher is PSD: its density lives on [0, inf) up to the kernel width
    xf = figure_arrays(fig, 1, "x").astype(np.float64)
    yf = figure_arrays(fig, 1, "y").astype(np.float64)
    assert np.trapezoid(np.where(xf < -0.1 * xf.max(), yf, 0), xf) < 1e-3
