"""The home page: how sharp is the minimum each optimizer finds, in views where sharpness is visible.

Four shipped runs (``landscape_core.demo.DEMO_RUNS``): SGD, SAM and Adam from the same start, and SGD at
a ten times larger learning rate for contrast. For each run the page shows:

- a 3-D (or contour) panel of the loss on the plane of its top-2 Hessian eigenvectors, unit vectors in
  weight space, +-0.5 on both axes, all panels on one basin-focused z-range (``loss - loss(theta*)``,
  clipped at a stated height);
- its numbers beside the panel: lambda_max on two batches of 256 training examples (the spread is the
  estimate's uncertainty), the Hutchinson trace +- its standard error, test accuracy and gap;
- 1-D slices of all runs on one axis along each run's top eigenvector (with the quadratic
  ``lambda_max t^2 / 2`` dashed: where it follows the curve, lambda_max describes the picture), and
  along one random filter-normalised direction, labelled as such (the usual picture, which mostly
  misses the top eigenvector).

Every sentence of the text is generated from the numbers (:func:`claims`): one run is called flatter
than another only when its lambda_max range lies entirely below the other's. All analyses ship in
``checkpoints/demo-analyses.json`` (``scripts/make_demo_cache.py``); a changed checkpoint is recomputed
(cached). Presentation mode shows one idea per slide with Back / Next buttons and the arrow keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components
from plotly.subplots import make_subplots

from landscape_core.analyses.hessian import CurvatureResult
from landscape_core.analyses.surface import SurfaceResult
from landscape_core.data import load_dataset
from landscape_core.demo import (
    DEMO_CACHE,
    DEMO_CURVATURE,
    DEMO_CURVATURE_CHECK,
    DEMO_PLANE,
    DEMO_RANDOM,
    DEMO_RUNS,
    demo_key,
)
from landscape_core.runs import read_meta

from .cache import list_runs_cached
from .common import guide_link, show_error
from .state import collapse_sidebar_once, presentation

SURFACE, CURVATURE = DEMO_PLANE, DEMO_CURVATURE
SLIDES = ("question", "slices", "surfaces", "numbers", "random", "live", "talking", "caveat")
COLORS = ("#3b5bdb", "#2f9e44", "#e8590c", "#c2255c")
PLOT_CONFIG = {"displaylogo": False, "displayModeBar": False}


def demo_rows() -> list[dict]:
    """The shipped demo runs present (in ``DEMO_RUNS`` order)."""
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
    """Per demo run: ``plane`` and ``random`` (``SurfaceResult``), ``hessian`` and ``check``
    (``CurvatureResult`` on two batches): shipped when the weights hash and settings match, else computed
    (cached) with a progress bar that is cleared when done."""
    out = []
    bar = None
    n = len(rows)
    jobs = (("plane", "surface", DEMO_PLANE), ("random", "surface", DEMO_RANDOM),
            ("hessian", "hessian", DEMO_CURVATURE), ("check", "hessian", DEMO_CURVATURE_CHECK))
    for i, r in enumerate(rows):
        item: dict[str, Any] = {"row": r}
        for j, (name, kind, settings) in enumerate(jobs):
            hit = shipped_analysis(kind, r, settings)
            if hit is not None:
                item[name] = (SurfaceResult if kind == "surface" else CurvatureResult).from_dict(hit)
                continue
            from . import analysis  # the analysis layer loads only when something must be computed

            if bar is None:
                bar = st.progress(0.0, text="Computing the demo analyses (first visit only)...")
            bar.progress((i + j / len(jobs)) / n, text=f"{r['name']}: {name}")
            if kind == "surface":
                item[name] = analysis.cached_surface(r["path"], r["weights_hash"], analysis.SurfaceSettings(**settings))
            else:
                item[name] = analysis.cached_hessian(r["path"], r["weights_hash"],
                                                     analysis.HessianSettings(**settings))
        out.append(item)
    if bar is not None:
        bar.empty()
    return out


# --- numbers and the claims made from them -----------------------------------------------------------


def label(r: Mapping[str, Any]) -> str:
    """Display name of a demo run: its optimizer in capitals, ``(lr X)`` for the sharp contrast run."""
    name = str(r.get("optimizer") or r["name"]).upper()
    return f"{name} lr {r['lr']:g}" if r["name"].endswith("-sharp") and r.get("lr") else name


def lam_range(x: Mapping[str, Any]) -> tuple[float, float]:
    """``(low, high)`` of lambda_max over the two batches, each widened by its Lanczos residual
    ``||H v - lambda v||`` (some eigenvalue lies within the residual of a Ritz value)."""
    vals = []
    for k in ("hessian", "check"):
        h = x.get(k)
        if h is not None:
            res = float(h.residuals[0]) if h.residuals else 0.0
            vals += [h.eigenvalues[0] - res, h.eigenvalues[0] + res]
    return min(vals), max(vals)


def flatter(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether ``a`` is measurably flatter than ``b``: its whole lambda_max range lies below ``b``'s."""
    return lam_range(a)[1] < lam_range(b)[0]


def _trace_text(h: CurvatureResult) -> str:
    tr = h.trace or {}
    return f"{tr.get('mean', float('nan')):.3g} ± {tr.get('stderr', 0):.2g}"


def _acc(r: Mapping[str, Any], key: str, signed: bool = False) -> str:
    v = r.get(key)
    if not isinstance(v, (int, float)):
        return "n/a"
    return f"{v:+.1%}" if signed else f"{v:.1%}"


def numbers_md(x: Mapping[str, Any]) -> str:
    """The numbers beside a run's panel (markdown, four short lines)."""
    r, h = x["row"], x["hessian"]
    lo, hi = lam_range(x)
    return (f"λ_max **{lo:.2g}–{hi:.2g}**  \ntrace **{_trace_text(h)}**  \n"
            f"test acc **{_acc(r, 'test_acc')}**  \ngap **{_acc(r, 'acc_gap', True)}**")


def _by(results: list[dict]) -> dict[str, dict]:
    return {x["row"]["name"]: x for x in results}


def _edge_rise(s: SurfaceResult) -> float:
    """Mean loss rise at the two ends of a 1-D slice (or of the plane's first axis at beta = 0)."""
    z = _delta(s)
    line = z if z.ndim == 1 else z[z.shape[0] // 2]
    return float((line[0] + line[-1]) / 2)


def claims(results: list[dict]) -> list[str]:
    """The sentences the page may say, each checked against the numbers (never against expectations)."""
    by = _by(results)
    out = []
    order = sorted(results, key=lambda x: x["hessian"].eigenvalues[0])
    out.append("Sharpest curvature λ_max, from flattest to sharpest: "
               + ", ".join(f"{label(x['row'])} {x['hessian'].eigenvalues[0]:.3g}" for x in order) + ".")
    sgd, sam = by.get("digits-sgd"), by.get("digits-sam")
    if sgd and sam:
        ls, lm = sgd["hessian"].eigenvalues[0], sam["hessian"].eigenvalues[0]
        if flatter(sam, sgd):
            out.append(f"SAM's minimum is flatter than SGD's: λ_max {lm:.3g} vs {ls:.3g} ({ls / lm:.1f}x), "
                       "more than the spread between two batches of 256 examples.")
        elif flatter(sgd, sam):
            out.append(f"Here SAM's minimum is sharper than SGD's (λ_max {lm:.3g} vs {ls:.3g}).")
        else:
            out.append(f"SAM's and SGD's λ_max ({lm:.3g}, {ls:.3g}) differ by less than their spread between "
                       "two batches: this measurement cannot tell them apart.")
    for name in ("digits-adam", "digits-sgd-sharp"):
        x = by.get(name)
        if x and sgd:
            lx, ls = x["hessian"].eigenvalues[0], sgd["hessian"].eigenvalues[0]
            if flatter(sgd, x):
                out.append(f"{label(x['row'])} ends {lx / ls:.1f}x sharper than SGD (λ_max {lx:.3g}).")
            elif not flatter(x, sgd):
                out.append(f"{label(x['row'])} and SGD are not distinguishable by λ_max.")
    return out + accuracy_claims(results)


@st.cache_resource(show_spinner=False)
def _n_test(path: str) -> int | None:
    """Size of a run's test set (loads its dataset once; ``None`` when it cannot be loaded)."""
    try:
        return int(len(load_dataset(read_meta(path)["dataset"]).test[1]))
    except Exception:  # noqa: BLE001 - only the wording of the accuracy sentence depends on it
        return None


def acc_noise(results: list[dict]) -> float:
    """Two standard errors of the difference of two test accuracies, sqrt(2 p (1 - p) / n) each, at the
    mean accuracy p of the runs and their test-set size n (binomial counting noise)."""
    n = _n_test(results[0]["row"]["path"])
    accs = [x["row"]["test_acc"] for x in results if isinstance(x["row"].get("test_acc"), (int, float))]
    if not n or not accs:
        return math.inf
    p = float(np.mean(accs))
    return 2 * math.sqrt(2 * p * (1 - p) / n)


def accuracy_claims(results: list[dict]) -> list[str]:
    """What test accuracy says next to lambda_max, counting only differences above the counting noise
    (:func:`acc_noise`) as differences."""
    noise = acc_noise(results)
    order = sorted(results, key=lambda x: x["hessian"].eigenvalues[0])
    acc = {x["row"]["name"]: x["row"].get("test_acc") or 0.0 for x in results}
    worse = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]
             if flatter(a, b) and acc[a["row"]["name"]] - acc[b["row"]["name"]] > noise]
    better = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]
              if flatter(a, b) and acc[b["row"]["name"]] - acc[a["row"]["name"]] > noise]
    spread = max(acc.values()) - min(acc.values())
    note = (f"test-set counting noise is ±{noise:.1%} (two standard errors of a difference)"
            if math.isfinite(noise) else "the test set's counting noise is unknown")
    if not worse and not better:
        return [f"Test accuracies lie within {spread:.1%} of each other and {note}: on this data flatness "
                "does not measurably change test accuracy."]
    out = []
    if worse:
        a, b = worse[-1]
        out.append(f"The flatter {label(a['row'])} tests better than the sharper {label(b['row'])} "
                   f"({_acc(a['row'], 'test_acc')} vs {_acc(b['row'], 'test_acc')}; {note}).")
    if better:
        a, b = better[0]
        out.append(f"But flatter is not always better: {label(b['row'])} is sharper than {label(a['row'])} "
                   f"and tests better ({_acc(b['row'], 'test_acc')} vs {_acc(a['row'], 'test_acc')}).")
    return out


def random_claim(results: list[dict], short: bool = False) -> str:
    """What the random-direction slice shows, compared with the lambda_max order."""
    by_rand = sorted(results, key=lambda x: _edge_rise(x["random"]))
    by_lam = sorted(results, key=lambda x: x["hessian"].eigenvalues[0])
    if [x["row"]["name"] for x in by_rand] == [x["row"]["name"] for x in by_lam]:
        return "Along this random direction the runs keep the λ_max order."
    if short:
        return (f"Along a random direction {label(by_rand[0]['row'])} rises least, yet "
                f"{label(by_lam[0]['row'])} has the smallest λ_max.")
    return (f"Along this random direction {label(by_rand[0]['row'])} rises least, although "
            f"{label(by_lam[0]['row'])} has the smallest λ_max: a random direction averages over many "
            "curvatures and almost misses the sharpest one.")


# --- figures ----------------------------------------------------------------------------------------


def _delta(s: SurfaceResult) -> np.ndarray:
    """Loss minus the loss at the trained weights."""
    return np.asarray(s.surface.loss, np.float64) - float(s.surface.center_loss)


def zcap(results: list[dict]) -> float:
    """The basin-focused height shared by the panels: half the smallest of the panels' largest rises,
    rounded to 2 digits. Above it the surface is cut away, so each panel shows its basin's footprint at
    one common height (a sharper basin is narrower) instead of grid corners."""
    cap = 0.5 * min(float(np.nanmax(_delta(x["plane"]))) for x in results)
    return float(f"{max(cap, 1e-3):.2g}")


def panel_figure(x: Mapping[str, Any], kind: str, cap: float, height: int) -> go.Figure:
    """One run's loss rise on the plane of its top-2 Hessian eigenvectors (``kind`` ``"3d"`` or
    ``"contour"``), clipped at ``cap`` (stated in the figure's title): a flat top with the basin as a hole."""
    s = x["plane"].surface
    d = _delta(x["plane"])
    z = np.minimum(d, cap)
    lo = min(0.0, float(np.nanmin(d)))
    a = np.asarray(s.alphas, np.float64)
    b = np.asarray(s.betas, np.float64)
    title = f"loss rise up to {cap:g}"
    hover = "v1 %{x:.2f}<br>v2 %{y:.2f}<br>rise %{z:.3f}<extra></extra>"
    if kind == "3d":
        fig = go.Figure(go.Surface(x=a, y=b, z=z, cmin=lo, cmax=cap, colorscale="Viridis", showscale=False,
                                   hovertemplate=hover))
        ax = {"showticklabels": False, "title": {"font": {"size": 12}}, "showspikes": False}
        fig.update_layout(scene={"xaxis": {**ax, "title": {"text": "v1"}, "range": [a[0], a[-1]]},
                                 "yaxis": {**ax, "title": {"text": "v2"}, "range": [b[0], b[-1]]},
                                 "zaxis": {**ax, "title": {"text": ""}, "range": [lo, cap]},
                                 "aspectmode": "manual", "aspectratio": {"x": 1, "y": 1, "z": 0.7},
                                 "camera": {"eye": {"x": 1.45, "y": -1.45, "z": 1.55}}})
    else:
        fig = go.Figure(go.Contour(x=a, y=b, z=d, zmin=lo, zmax=cap, colorscale="Viridis", showscale=False,
                                   contours={"coloring": "fill", "start": 0.0, "end": cap, "size": cap / 8},
                                   hovertemplate=hover))
        fig.update_xaxes(title={"text": "v1", "standoff": 2}, showticklabels=False)
        fig.update_yaxes(title={"text": "v2", "standoff": 2}, showticklabels=False, scaleanchor="x")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      title={"text": title, "font": {"size": 13}, "x": 0.02, "y": 1.0, "yref": "container",
                             "yanchor": "top", "pad": {"t": 6}})
    return fig


def slices_figure(results: list[dict], which: str, height: int, legend: bool = True) -> go.Figure:
    """All runs' 1-D slices on one axis: ``which="eig"`` along each run's top Hessian eigenvector (the
    plane's first axis, unit vector, with the quadratic ``lambda_max t^2 / 2`` dashed), ``"random"`` along
    one random filter-normalised direction."""
    fig = go.Figure()
    for i, x in enumerate(results):
        c = COLORS[i % len(COLORS)]
        name = label(x["row"])
        if which == "eig":
            s = x["plane"].surface
            t = np.asarray(s.alphas, np.float64)
            y = _delta(x["plane"])[len(s.betas) // 2]
            lam = x["hessian"].eigenvalues[0]
            fig.add_trace(go.Scatter(x=t, y=y, mode="lines", name=name, line={"color": c, "width": 3},
                                     legendgroup=name))
            tt = np.linspace(t[0], t[-1], 81)
            fig.add_trace(go.Scatter(x=tt, y=0.5 * lam * tt**2, mode="lines", name=f"{name}: λ_max t²/2",
                                     line={"color": c, "width": 1.5, "dash": "dash"}, legendgroup=name,
                                     showlegend=False, hoverinfo="skip"))
        else:
            s = x["random"].surface
            fig.add_trace(go.Scatter(x=np.asarray(s.alphas, np.float64), y=_delta(x["random"]), mode="lines",
                                     name=name, line={"color": c, "width": 3}))
    if which == "eig":
        xt = "t along top eigenvector"
        ytop = max(float(np.nanmax(_delta(x["plane"])[len(x["plane"].surface.betas) // 2])) for x in results)
        fig.update_yaxes(range=[-0.05 * ytop, 1.1 * ytop])
    else:
        xt = "t along random direction"
    fig.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0}, showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left"},
        xaxis_title={"text": xt}, yaxis_title={"text": "loss rise"},
    )
    return fig


def stability_figure(results: list[dict], lr: float, height: int) -> go.Figure:
    """lambda_max of each run against the gradient-descent stability limit ``2 / lr``."""
    names = [label(x["row"]) for x in results]
    lams = [x["hessian"].eigenvalues[0] for x in results]
    fig = go.Figure(go.Bar(x=names, y=lams, marker_color=[COLORS[i % len(COLORS)] for i in range(len(names))],
                           text=[f"{v:.3g}" for v in lams], textposition="outside"))
    fig.add_hline(y=2 / lr, line={"color": "#c92a2a", "dash": "dash", "width": 3},
                  annotation_text=f"2 / lr = {2 / lr:.3g}", annotation_position="top left")
    top = max(max(lams), 2 / lr) * 1.25
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 10, "b": 0}, yaxis_title={"text": "λ_max"},
                      yaxis={"range": [0, top]}, showlegend=False)
    return fig


# --- normal page ------------------------------------------------------------------------------------


def panels_figure(results: list[dict], kind: str, cap: float, height: int, titles: bool = False) -> go.Figure:
    """All runs' panels (:func:`panel_figure`) side by side in one figure that scales with its container;
    with ``titles`` each panel is titled with its run and lambda_max."""
    n = len(results)
    spec = {"type": "scene"} if kind == "3d" else {}
    names = [f"{label(x['row'])}: λ_max {x['hessian'].eigenvalues[0]:.3g}" for x in results] if titles else None
    fig = make_subplots(rows=1, cols=n, specs=[[dict(spec) for _ in range(n)]], horizontal_spacing=0.02,
                        subplot_titles=names)
    for i, x in enumerate(results):
        one = panel_figure(x, kind, cap, height)
        fig.add_trace(one.data[0], row=1, col=i + 1)
        if kind == "3d":
            fig.layout[f"scene{i + 1 if i else ''}"].update(one.layout.scene)
        else:
            fig.update_xaxes(title={"text": "v1", "standoff": 2}, showticklabels=False, row=1, col=i + 1)
            fig.update_yaxes(title={"text": "v2" if i == 0 else "", "standoff": 2}, showticklabels=False,
                             row=1, col=i + 1)
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 58 if titles else 30, "b": 0},
                      title={"text": f"height and colour: loss rise above the trained point, clipped at {cap:g}",
                             "font": {"size": 13}, "x": 0.0, "xanchor": "left", "y": 1.0, "yref": "container",
                             "yanchor": "top", "pad": {"t": 6}})
    return fig


@st.fragment
def panels_fragment(results: list[dict]) -> None:
    """The per-run panels with their numbers above; the View control reruns only this fragment."""
    simple = presentation()
    view = "3-D"
    if not simple:
        c1, c2 = st.columns([1, 2])
        view = c1.select_slider("View", ["contour", "3-D"], value="3-D", key="home_view")
        c2.caption("Each panel: the loss on the plane of the run's top two Hessian eigenvectors v1, v2 (unit "
                   "vectors, ±0.5 in weight space), on one height scale for all panels.")
    kind = "3d" if view == "3-D" else "contour"
    cap = zcap(results)
    if not simple:
        for c, x in zip(st.columns(len(results)), results):
            c.markdown(f"**{label(x['row'])}**  \n" + numbers_md(x))
    st.plotly_chart(panels_figure(results, kind, cap, 330 if simple else 250, titles=simple), key="home_panels",
                    config=PLOT_CONFIG)


def render_home() -> None:
    """Draw the home page."""
    rows = demo_rows()
    if not presentation():
        st.title("Landscape Explorer")
        st.write("How sharp is the minimum each optimizer finds? The same small network trained on the same "
                 "digits from the same start with SGD, SAM and Adam, plus SGD at a 10x larger learning rate.")
    if not rows:
        if presentation():
            st.title("Landscape Explorer")
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
    panels_fragment(results)
    c1, c2 = st.columns(2)
    c1.markdown("**Along each run's sharpest direction**")
    c2.markdown("**Along one random direction (the usual picture)**")
    c1.plotly_chart(slices_figure(results, "eig", 330), key="home_slices_eig", config=PLOT_CONFIG)
    c1.caption("Solid: the loss along each run's own top Hessian eigenvector. Dashed: λ_max t²/2, the "
               "quadratic model; where they agree, λ_max describes the picture.")
    c2.plotly_chart(slices_figure(results, "random", 330), key="home_slices_random", config=PLOT_CONFIG)
    c2.caption("The usual picture: one random filter-normalised direction (scaled filter by filter to the "
               "weights, Li et al. 2018). " + random_claim(results))
    st.markdown(" ".join(claims(results)))
    c1, c2 = st.columns(2)
    with c1:
        guide_link("sharpness", "What λ_max and the trace measure")
        guide_link("filter-normalisation", "What filter-normalised directions are")
    with c2:
        guide_link("hutchinson", "How the trace is estimated (and its error bar)")
        guide_link("flatness", "Why flatness alone can mislead")
    st.caption("Budgets: 256 training examples per estimate; λ_max by Lanczos on two batches of 256 (the range "
               "shown), trace by 20 Hutchinson probes (± standard error); planes 21x21. Next: **Train** your "
               "own run, **Compare** optimizers, or open the analysis pages on the active run.")
    _overview()


def _overview() -> None:
    rows = list_runs_cached()
    if rows:
        with st.expander(f"All runs ({len(rows)})", expanded=not demo_rows()):
            for r in rows:
                acc = r.get("test_acc")
                st.markdown(f"- **{r['name']}** ({r['source']}, {r['optimizer'] or '?'}): test accuracy "
                            f"{acc:.1%}" if isinstance(acc, (int, float)) else f"- **{r['name']}** ({r['source']})")


# --- presentation mode --------------------------------------------------------------------------------

_KEYS_JS = """
<script>
// Arrow keys click Back / Next in the app's page. Each redraw of this frame replaces the listener
// (a listener left by a removed frame would belong to a dead window).
const doc = window.parent.document;
if (doc.__leArrowKeys) doc.removeEventListener("keydown", doc.__leArrowKeys);
doc.__leArrowKeys = (e) => {
  const t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.getAttribute("role") === "slider")) return;
  const want = e.key === "ArrowRight" ? "Next" : e.key === "ArrowLeft" ? "Back" : null;
  if (!want) return;
  const b = Array.from(doc.querySelectorAll("button")).find((x) => x.innerText.trim().includes(want));
  if (b && !b.disabled) { b.click(); e.preventDefault(); }
};
doc.addEventListener("keydown", doc.__leArrowKeys);
</script>
"""


def _step(delta: int) -> None:
    i = int(st.session_state.get("home_slide", 0)) + delta
    st.session_state["home_slide"] = min(max(i, 0), len(SLIDES) - 1)


def _nav() -> str:
    i = min(max(int(st.session_state.get("home_slide", 0)), 0), len(SLIDES) - 1)
    c1, c2, c3 = st.columns([3, 4, 3], vertical_alignment="center")
    c1.button("← Back", key="home_prev", disabled=i == 0, on_click=_step, args=(-1,), width="stretch")
    c3.button("Next →", key="home_next", disabled=i == len(SLIDES) - 1, on_click=_step, args=(1,),
              width="stretch", type="primary")
    c2.markdown(f"<div class='le-slide-count'>Slide {i + 1} of {len(SLIDES)} · ← → keys</div>",
                unsafe_allow_html=True)
    components.html(_KEYS_JS, height=0)
    return SLIDES[i]


def talking_points(results: list[dict]) -> list[str]:
    """Interview talking points, each built from a measured number."""
    by = _by(results)
    pts = []
    sgd, sam = by.get("digits-sgd"), by.get("digits-sam")
    if sgd and sam:
        verdict = ("lower" if flatter(sam, sgd) else "not measurably lower")
        pts.append(f"SAM minimises the worst loss in a small ball around the weights; here its λ_max is {verdict} "
                   f"than SGD's ({sam['hessian'].eigenvalues[0]:.3g} vs {sgd['hessian'].eigenvalues[0]:.3g}).")
    sharp = by.get("digits-sgd-sharp")
    if sharp and sharp["row"].get("lr") and sgd:
        lr = sharp["row"]["lr"]
        lam = sharp["hessian"].eigenvalues[0]
        ratio = lr / sgd["row"]["lr"]
        pts.append(f"Gradient descent is stable only where λ_max < 2/lr (momentum β raises it to (2+2β)/lr). "
                   f"Here {ratio:g}x the learning rate ends at λ_max {lam:.3g}, "
                   f"{'sharper' if flatter(sgd, sharp) else 'not flatter'} than lr {sgd['row']['lr']:g} SGD: "
                   "the limit is a ceiling, not where SGD lands.")
    adam = by.get("digits-adam")
    if adam and sgd:
        pts.append(f"Adam's λ_max is {adam['hessian'].eigenvalues[0] / sgd['hessian'].eigenvalues[0]:.1f}x SGD's: "
                   "its per-coordinate step sizes escape SGD's 2/lr limit.")
    n = results[0]["hessian"].num_params
    pts.append(f"λ_max comes from Lanczos on Hessian-vector products, never the {n:,}x{n:,} Hessian; the trace "
               "from Hutchinson probes, quoted with its standard error.")
    pts.append("Random-direction plots can mislead. " + random_claim(results, short=True))
    pts.append("Flatness is not reparametrisation-invariant (Dinh et al. 2017): rescaling layers changes λ_max "
               "without changing the function, so compare runs of one architecture only.")
    return pts


def _big(fig: go.Figure) -> go.Figure:
    """Projector-sized text on a figure (ticks, axis titles, legend, annotations); drawn with
    ``theme=None``, since Streamlit's theme resets the font sizes."""
    fig.update_layout(font={"size": 17}, legend={"font": {"size": 18}}, template="plotly_white")
    fig.update_annotations(font_size=17)
    return fig


def render_presentation(results: list[dict]) -> None:
    """One idea per screen, with Back / Next (and the arrow keys)."""
    collapse_sidebar_once()
    slide = _nav()
    if slide == "question":
        st.header("Do optimizers find different minima?")
        st.markdown("One small network, the same digits, the same start. Four ways to train it:")
        cols = st.columns(len(results))
        for c, x in zip(cols, results):
            r = x["row"]
            c.metric(label(r), _acc(r, "train_acc"), help="training accuracy")
        st.markdown("All four fit the training set. *Are the minima they land in alike?*")
    elif slide == "slices":
        st.header("Sharpness: how fast the loss rises")
        st.plotly_chart(_big(slices_figure(results, "eig", 340)), key="slide_slices", config=PLOT_CONFIG, theme=None)
        st.markdown("Each curve: the loss along that run's own sharpest direction (top Hessian eigenvector). "
                    "Dashed: λ_max t²/2. Steeper walls = sharper minimum.")
    elif slide == "surfaces":
        st.header("The basin around each minimum")
        panels_fragment(results)
        st.markdown(f"Each run's loss on the plane of its two sharpest directions, ±0.5 in weight space, "
                    f"clipped at a rise of {zcap(results):g}: a narrower hole is a sharper minimum.")
    elif slide == "numbers":
        st.header("Sharpness, measured")
        cols = st.columns(len(results))
        for c, x in zip(cols, results):
            lo, hi = lam_range(x)
            c.markdown(f"**{label(x['row'])}**")
            c.metric("λ_max", f"{x['hessian'].eigenvalues[0]:.3g}",
                     help=f"{lo:.3g}–{hi:.3g} on two batches of 256 examples")
            c.metric("test accuracy", _acc(x["row"], "test_acc"))
        st.markdown(" ".join(claims(results)[1:3]))
    elif slide == "random":
        st.header("Why the usual picture misleads")
        st.plotly_chart(_big(slices_figure(results, "random", 330)), key="slide_random", config=PLOT_CONFIG, theme=None)
        st.markdown("The same four runs along one random filter-normalised direction. " + random_claim(results))
    elif slide == "live":
        st.header("Try it: which minima are stable?")
        lr = st.select_slider("learning rate", [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0], value=1.0,
                              key="slide_lr")
        st.plotly_chart(_big(stability_figure(results, lr, 280)), key="slide_stability", config=PLOT_CONFIG, theme=None)
        unstable = [label(x["row"]) for x in results if x["hessian"].eigenvalues[0] > 2 / lr]
        st.markdown(f"Plain gradient descent with step {lr:g} is stable only where λ_max < 2/lr = {2 / lr:.3g} "
                    "(momentum β raises the limit to (2+2β)/lr). "
                    + (f"Unstable here: {', '.join(unstable)}." if unstable else "All four minima are stable."))
    elif slide == "talking":
        st.header("Interview talking points")
        st.markdown("\n".join(f"- {p}" for p in talking_points(results)[:5]))
    else:
        st.header("Flat is a hint, not a law")
        st.markdown(" ".join(accuracy_claims(results)) + " Rescaling one layer up and the next down leaves the "
                    "network's outputs unchanged but changes λ_max, so flatness only compares networks of the "
                    "same architecture and parametrisation.")
        guide_link("flatness", "Guide: why flatness can change without changing the function")
