"""Curvature page: the choice of curvature matrix (Hessian, GGN, Fisher, Monte-Carlo Fisher, empirical Fisher)
and an overlay of several operators' spectra (top-k eigenvalues or SLQ densities) for the same run and subset.

Every operator's numbers come from :func:`ui.analysis.cached_hessian` with the page's
:class:`~ui.analysis.HessianSettings` and only ``operator`` changed, so the cache key includes the operator
and each spectrum is computed once per (run, weights hash, settings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from landscape_core.analyses.hessian import CurvatureResult
from landscape_core.constants import PALETTE
from landscape_core.curvature_operators import OPERATOR_KINDS, PSD_KINDS

from . import analysis
from .analysis import HessianSettings
from .common import guide_link
from .page import compute

#: One line per operator: what the matrix is and when it equals the Hessian.
EXPLAIN: dict[str, str] = {
    "hessian": "H = ∇²L: the true second derivative; can have negative eigenvalues away from a minimum.",
    "ggn": "G = Jᵀ H_out J: drops the network's second derivatives; equals H for a linear model, PSD.",
    "fisher": "F = E_x E_{y~p(y|x)} [∇log p ∇log pᵀ]: labels drawn from the model; equals the GGN for "
              "cross-entropy, PSD.",
    "fisher-mc": "The Fisher with sampled labels (10 per example, seeded): an unbiased estimate of F, PSD.",
    "empirical-fisher": "(1/n) Σ gᵢ gᵢᵀ with the TRUE labels: not the Fisher (biased by the data), PSD.",
}
DEFAULT_OVERLAY = ("hessian", "ggn", "empirical-fisher")


def label(kind: str) -> str:
    """Menu label of an operator, ``(PSD)`` marked."""
    return OPERATOR_KINDS[kind] + (" (PSD)" if kind in PSD_KINDS else "")


def with_operator(settings: HessianSettings) -> HessianSettings:
    """The operator picker (one explanatory line under it); returns ``settings`` with that operator."""
    kind = st.radio("Curvature matrix", list(OPERATOR_KINDS), format_func=label, horizontal=True,
                    key="curv_operator", help="PSD: positive semi-definite by construction (no negative eigenvalues).")
    st.caption(EXPLAIN[kind])
    if kind != "hessian":
        guide_link("ggn-fisher", "Guide: GGN, Fisher and empirical Fisher (when each equals the Hessian)")
    return dataclasses.replace(settings, operator=kind)


def overlay_settings(settings: HessianSettings, kind: str, density: bool) -> HessianSettings:
    """The page's settings for operator ``kind``, with only what the overlay draws (no trace, per-layer,
    exact spectrum or smallest eigenvalue: those stay on the main analysis)."""
    return dataclasses.replace(settings, operator=kind, trace=False, per_layer=False, exact=False, smallest=False,
                               density=density)


def overlay_results(run: str, weights_hash: str, settings: HessianSettings, kinds: Sequence[str],
                    density: bool, progress=None) -> dict[str, CurvatureResult]:
    """``{kind: cached_hessian(...)}`` for each operator, through the cached wrapper (one entry per operator)."""
    out: dict[str, CurvatureResult] = {}
    for i, kind in enumerate(kinds):
        def part(fraction: float, message: str, i: int = i, kind: str = kind) -> None:
            if progress is not None:
                progress((i + fraction) / len(kinds), f"{OPERATOR_KINDS[kind]}: {message}")

        out[kind] = analysis.cached_hessian(run, weights_hash, overlay_settings(settings, kind, density), part)
    return out


def topk_overlay_figure(spectra: Mapping[str, Sequence[float]], *, log: bool = False) -> go.Figure:
    """Top-k eigenvalues (index vs value) of several operators on one axis, one coloured series each."""
    fig = go.Figure()
    for c, (kind, eig) in enumerate(spectra.items()):
        ev = np.asarray(eig, np.float32)
        fig.add_trace(go.Scatter(x=np.arange(1, len(ev) + 1), y=ev, mode="lines+markers", name=label(kind),
                                 marker={"size": 9, "color": PALETTE[c % len(PALETTE)]}))
    fig.update_layout(title={"text": "Top eigenvalues of each curvature matrix"}, xaxis_title="index i",
                      yaxis_title="lambda_i", yaxis_type="log" if log else "linear", height=400,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def density_overlay_figure(densities: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                           log: bool = True) -> go.Figure:
    """SLQ densities ``{kind: (grid, density)}`` of several operators as lines on one axis."""
    fig = go.Figure()
    for c, (kind, (grid, dens)) in enumerate(densities.items()):
        d = np.asarray(dens, np.float64)
        fig.add_trace(go.Scatter(x=np.asarray(grid, np.float32), y=np.maximum(d, 1e-12).astype(np.float32),
                                 mode="lines", name=label(kind), line={"color": PALETTE[c % len(PALETTE)]}))
    fig.update_layout(title={"text": "Spectral densities (SLQ) of each curvature matrix"}, xaxis_title="eigenvalue",
                      yaxis_title="density", yaxis_type="log" if log else "linear", height=400,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def overlay(run: str, info: dict, settings: HessianSettings) -> None:
    """Pick operators and overlay their top-k spectra or SLQ densities (same run, subset and settings)."""
    st.subheader("Compare curvature matrices")
    guide_link("ggn-fisher", "Guide: GGN, Fisher and empirical Fisher")
    c1, c2, c3 = st.columns([3, 1, 1])
    kinds = c1.multiselect("Operators", list(OPERATOR_KINDS), default=list(DEFAULT_OVERLAY), format_func=label,
                           key="curv_ov_kinds")
    what = c2.radio("Overlay", ["top-k", "density"], key="curv_ov_what")
    log = c3.toggle("Log scale", value=what == "density", key=f"curv_ov_log_{what}")
    if not kinds:
        st.info("Pick at least one operator.")
        return
    density = what == "density"
    wh = info["weights_hash"]
    key = (run, wh, tuple(overlay_settings(settings, k, density) for k in kinds))
    res = compute("hessian_overlay", key, lambda p: overlay_results(run, wh, settings, kinds, density, p),
                  button="Overlay the spectra", widget_key="curv_ov_btn", label="analysing the operators",
                  ready=all(analysis.has_result("hessian", *k) for k in [(run, wh, s) for s in key[2]]) or None)
    if res is None:
        return
    if density:
        dens = {}
        for kind, r in res.items():
            nodes = [v for row in r.density["ritz_values"] for v in row]
            sigma = 0.01 * ((max(nodes) - min(nodes)) or 1.0)
            dens[kind] = analysis.resmooth_density(r.density, sigma)
        fig = density_overlay_figure(dens, log=log)
    else:
        fig = topk_overlay_figure({k: r.eigenvalues for k, r in res.items()}, log=log)
    st.plotly_chart(fig, key="curv_overlay")
    st.dataframe([{"operator": label(k), "lambda_max": r.eigenvalues[0], "matvecs": r.matvecs,
                   "seconds": round(r.seconds, 2)} for k, r in res.items()], hide_index=True)
    st.caption("Same data subset, split and seed for every operator. On a well-fitted cross-entropy model the "
               "GGN and Fisher track the Hessian's top eigenvalues; the empirical Fisher need not.")
