"""What the Curvature page may say about lambda_min: significance of negative curvature, condition number."""

from __future__ import annotations

import pytest

from landscape_core.analyses.hessian import NEG_REL, ZERO_REL, CurvatureResult, analyze_hessian
from landscape_core.runs import load_run


def _res(lmax: float, lmin: float, resid: float, exact: list[float] | None = None) -> CurvatureResult:
    return CurvatureResult(eigenvalues=[lmax], residuals=[0.0], converged=True, matvecs=1, seconds=0.0,
                           num_params=10, exact_eigenvalues=exact,
                           condition={"source": "lanczos", "lambda_min": lmin,
                                      "lambda_min_lanczos": {"value": lmin, "residual": resid, "converged": True}})


def test_tiny_negative_eigenvalue_is_zero_within_tolerance():
    # the case: lambda_min = -1.3e-8 next to lambda_max ~ 10 is rounding, not a saddle
    v = _res(10.0, -1.3e-8, 1e-7).curvature_verdict()
    assert v["negative"] is None and v["condition"] is None
    assert v["tolerance"] == pytest.approx(ZERO_REL * 10.0)  # 1e-3 > residual 1e-7
    assert "lambda_min ~ 0 within tolerance" in v["note"] and "condition number undefined" in v["note"]


def test_negative_curvature_needs_both_fraction_and_residual():
    sig = _res(10.0, -0.5, 1e-3).curvature_verdict()  # 5% of lambda_max, residual 1e-3
    assert sig["negative"] == "significant" and sig["condition"] is None
    assert "5.0% of lambda_max" in sig["note"] and f"threshold {NEG_REL:.0%}" in sig["note"]
    small = _res(10.0, -0.05, 1e-3).curvature_verdict()  # 0.5%: below the 1% threshold
    assert small["negative"] == "negligible" and "0.50% of lambda_max" in small["note"]
    noisy = _res(10.0, -0.5, 0.6).curvature_verdict()  # within its residual of 0
    assert noisy["negative"] is None and noisy["tolerance"] == 0.6


def test_condition_number_only_for_clearly_positive_lambda_min():
    assert _res(10.0, 0.1, 1e-4).curvature_verdict()["condition"] == pytest.approx(100.0)
    v = _res(10.0, -3.0, 0.0, exact=[10.0, 2.0, 0.5]).curvature_verdict()  # exact spectrum wins
    assert v["lambda_min"] == 0.5 and v["condition"] == pytest.approx(20.0)


def test_verdict_on_the_shipped_tiny_run_matches_its_exact_spectrum():
    res = analyze_hessian(load_run("checkpoints/moons-tiny"), top_k=2, trace=False, exact=True, samples=256)
    v = res.curvature_verdict()
    lo, hi = min(res.exact_eigenvalues), max(res.exact_eigenvalues)
    assert v["lambda_min"] == lo
    if abs(lo) <= ZERO_REL * hi:
        assert v["condition"] is None
    elif lo < -NEG_REL * hi:
        assert v["negative"] == "significant"
    elif lo < 0:
        assert v["negative"] == "negligible"
    else:
        assert v["condition"] == pytest.approx(hi / lo)
