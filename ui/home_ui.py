"""The home page: SGD vs SAM (and Adam) minima side by side on the shipped runs, in one screen.

Budgets are small so that a cold start renders in seconds on two cores: 21x21 filter-normalised
surfaces on 256 training examples, top-1 Lanczos and a 20-probe Hutchinson trace on 256 examples.
Everything goes through ``ui.analysis`` (``st.cache_data`` keyed on weights hash + settings), so a
second visit is instant; the view controls sit in a fragment and only redraw the figure.
Presentation mode shows one idea per screen with Previous / Next buttons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from landscape_core.analyses.hessian import CurvatureResult
from landscape_core.analyses.surface import SurfaceResult
from landscape_core.demo import DEMO_CACHE, DEMO_CURVATURE, DEMO_RUNS, DEMO_SURFACE, demo_key

from .cache import list_runs_cached
from .common import guide_link, show_error
from .state import presentation

SURFACE, CURVATURE = DEMO_SURFACE, DEMO_CURVATURE
SLIDES = ("question", "surfaces", "numbers", "caveat")


def demo_rows() -> list[dict]:
    """The shipped demo runs present (in SGD, SAM, Adam order)."""
    rows = {r["name"]: r for r in list_runs_cached() if r["source"] == "shipped"}
    return [rows[n] for n in DEMO_RUNS if n in rows]


@st.cache_resource(show_spinner=False)
def _shipped(path: str, mtime: float) -> dict:
    """The shipped analyses file (``scripts/make_demo_cache.py``), read once per modification time."""
    try:
        return dict(json.loads(Path(path).read_text()).get("entries") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def shipped_analysis(kind: str, row: Mapping[str, Any], settings: Mapping[str, Any]) -> dict | None:
    """The shipped result for a demo run when its weights hash and the settings match exactly, else None."""
    f = Path(row["path"]).parent / DEMO_CACHE
    if not f.is_file():
        return None
    hit = _shipped(str(f), f.stat().st_mtime).get(demo_key(kind, row["name"], row["weights_hash"], settings))
    return json.loads(json.dumps(hit)) if hit is not None else None  # a private copy


def demo_results(rows: list[dict]) -> list[dict]:
    """Surface (``SurfaceResult``) and curvature (``CurvatureResult``) of each demo run: shipped with the
    checkpoints when the weights hash and settings match, else computed (cached), with a progress bar on a
    cold start."""
    out = []
    bar = None
    n = len(rows)
    for i, r in enumerate(rows):
        shipped_surf = shipped_analysis("surface", r, SURFACE)
        shipped_hess = shipped_analysis("hessian", r, CURVATURE)
        surf = None if shipped_surf is None else SurfaceResult.from_dict(shipped_surf)
        hess = None if shipped_hess is None else CurvatureResult.from_dict(shipped_hess)
        if surf is None or hess is None:
            from . import analysis  # the analysis layer loads only when something must be computed

            if bar is None:
                bar = st.progress(0.0, text="Computing surfaces and curvature (first visit only)...")
            if surf is None:
                bar.progress(i / n, text=f"{r['name']}: loss surface")
                surf = analysis.cached_surface(r["path"], r["weights_hash"], analysis.SurfaceSettings(**SURFACE))
            if hess is None:
                bar.progress((i + 0.6) / n, text=f"{r['name']}: curvature")
                hess = analysis.cached_hessian(r["path"], r["weights_hash"], analysis.HessianSettings(**CURVATURE))
        out.append({"row": r, "surface": surf, "hessian": hess})
    if bar is not None:
        bar.empty()
    return out


def label(r: dict) -> str:
    """Display name of a demo run (its optimizer in capitals)."""
    return str(r.get("optimizer") or r["name"]).upper()


def story(results: list[dict]) -> str:
    """A few sentences on what the picture shows, with the measured numbers."""
    by = {label(x["row"]): x for x in results}
    parts = ["Each panel is the training loss around one trained network, along two random directions "
             "scaled filter by filter to the network's own weights, drawn on **one shared colour and height "
             "scale**, so the panels can be compared directly."]
    if "SGD" in by and "SAM" in by:
        ls, lm = by["SGD"]["hessian"].eigenvalues[0], by["SAM"]["hessian"].eigenvalues[0]
        if lm < ls:
            parts.append(f"SAM's minimum is flatter: its sharpest curvature λ_max is {lm:.3g} against SGD's "
                         f"{ls:.3g} ({ls / lm:.1f}x smaller), because SAM minimises the worst loss in a small "
                         "ball around the weights.")
        else:
            parts.append(f"Here SAM's λ_max ({lm:.3g}) is not below SGD's ({ls:.3g}): flatness depends on the "
                         "learning rate, batch size and radius, not on the optimizer's name alone.")
    if "ADAM" in by:
        parts.append(f"Adam reaches λ_max = {by['ADAM']['hessian'].eigenvalues[0]:.3g}: adaptive steps "
                     "tolerate sharper directions than plain SGD at the same loss.")
    parts.append("Flatter is often, not always, better on the test set; compare the accuracies and gaps below, "
                 "and see the Guide for why flatness alone can mislead.")
    return " ".join(parts)


def metrics_row(results: list[dict]) -> None:
    """Test accuracy, generalisation gap, lambda_max and trace (± stderr) per run."""
    cols = st.columns(len(results))
    for c, x in zip(cols, results):
        r, h = x["row"], x["hessian"]
        tr = h.trace or {}
        with c:
            st.markdown(f"#### {label(r)}")
            st.metric("λ_max (sharpness)", f"{h.eigenvalues[0]:.3g}")
            st.metric("trace of the Hessian", f"{tr.get('mean', float('nan')):.3g} ± {tr.get('stderr', 0):.2g}")
            st.metric("test accuracy", f"{r['test_acc']:.1%}" if r.get("test_acc") is not None else "n/a")
            st.metric("generalisation gap", f"{r['acc_gap']:+.1%}" if r.get("acc_gap") is not None else "n/a",
                      help="train accuracy - test accuracy")


@st.fragment
def surfaces_fragment(results: list[dict]) -> None:
    """The side-by-side surfaces with display-only controls (reruns only this fragment)."""
    simple = presentation()
    c1, c2 = st.columns([3, 1])
    view = "3-D"
    log = False
    if not simple:
        view = c1.select_slider("View", ["1-D slice", "contour", "3-D"], value="3-D", key="home_view")
        log = c2.toggle("log scale", value=False, key="home_log")
    kind = {"1-D slice": "1d", "contour": "contour", "3-D": "3d"}[view]
    hashes = tuple(x["row"]["weights_hash"] for x in results)
    fig = _demo_figure(hashes, kind, log, 520 if simple else 440, _results=results)
    st.plotly_chart(fig, key="home_surfaces", config={"displaylogo": False})


@st.cache_resource(show_spinner=False, max_entries=24)
def _demo_figure(hashes: tuple[str, ...], kind: str, log: bool, height: int, _results: list[dict]):
    """The side-by-side figure, built once per (runs, view, scale): moving a view control back and forth
    then only re-sends a ready figure (never mutated: ``st.plotly_chart`` serialises it)."""
    from .figures import surfaces_side_by_side

    fig = surfaces_side_by_side([(label(x["row"]), x["surface"].surface) for x in _results], kind=kind, log=log,
                                height=height)
    # filled bands instead of a per-pixel interpolated heatmap under the contour lines: the browser then
    # draws three panels of SVG paths, not three full-resolution images, on every view change
    fig.update_traces(contours_coloring="fill", selector={"type": "contour"})
    return fig


def _step(delta: int) -> None:
    i = int(st.session_state.get("home_slide", 0)) + delta
    st.session_state["home_slide"] = min(max(i, 0), len(SLIDES) - 1)


def _nav() -> str:
    i = min(max(int(st.session_state.get("home_slide", 0)), 0), len(SLIDES) - 1)
    c1, c2, c3 = st.columns([1, 6, 1])
    c1.button("← Previous", key="home_prev", disabled=i == 0, on_click=_step, args=(-1,))
    c3.button("Next →", key="home_next", disabled=i == len(SLIDES) - 1, on_click=_step, args=(1,))
    c2.caption(f"{i + 1} / {len(SLIDES)}")
    return SLIDES[i]


def render_presentation(results: list[dict]) -> None:
    """One idea per screen, with Previous / Next."""
    slide = _nav()
    if slide == "question":
        st.header("Do optimizers find different minima?")
        st.markdown("Three identical networks, trained on the same digits from the same start, with **SGD**, "
                    "**SAM** and **Adam**. All reach ~100% training accuracy. *Are their minima alike?*")
    elif slide == "surfaces":
        st.header("The loss around each minimum")
        surfaces_fragment(results)
    elif slide == "numbers":
        st.header("Sharpness, measured")
        metrics_row(results)
    else:
        st.header("Flat is a hint, not a law")
        st.markdown(story(results))
        guide_link("flatness", "Why flatness can be changed without changing the function")


def render_home() -> None:
    """Draw the home page."""
    st.title("Landscape Explorer")
    rows = demo_rows()
    if not presentation():
        st.write("Where does an optimizer land, and how sharp is it there? Three small networks trained on the "
                 "same digits from the same start with different optimizers, and the loss landscape around "
                 "where each one stopped.")
    if not rows:
        st.info("The shipped demo runs are missing. Train a model on the **Train** page (a few seconds on "
                "digits) or import a checkpoint on the **Probe checkpoint** page, then open the analysis pages.")
        _overview()
        return
    try:
        results = demo_results(rows)
    except Exception as e:  # noqa: BLE001 - a broken shipped run must not take the home page down
        show_error(e)
        _overview()
        return
    if presentation():
        render_presentation(results)
        return
    surfaces_fragment(results)
    st.markdown(story(results))
    metrics_row(results)
    c1, c2 = st.columns(2)
    with c1:
        guide_link("filter-normalisation", "Why filter-normalised directions make surfaces comparable")
        guide_link("sharpness", "What λ_max and the trace measure")
    with c2:
        guide_link("hutchinson", "How the trace is estimated (and its error bar)")
        guide_link("flatness", "Why flatness alone can mislead")
    st.caption("Budgets: 21x21 grid and 256 examples per surface; top-1 Lanczos and 20 Hutchinson probes on "
               "256 examples. Next: **Train** your own run, **Compare** optimizers, or open the analysis pages "
               "on the active run.")
    _overview()


def _overview() -> None:
    rows = list_runs_cached()
    if rows:
        with st.expander(f"All runs ({len(rows)})", expanded=not demo_rows()):
            for r in rows:
                acc = r.get("test_acc")
                st.markdown(f"- **{r['name']}** ({r['source']}, {r['optimizer'] or '?'}): test accuracy "
                            f"{acc:.1%}" if isinstance(acc, (int, float)) else f"- **{r['name']}** ({r['source']})")
