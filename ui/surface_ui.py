"""Loss-surface page widgets and views: the settings form, the (progressively refined) computation and the
display-only fragment with its downloads."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from landscape_core.analyses.surface import SurfaceResult
from landscape_core.progress import ProgressFn

from . import analysis, exports, figures
from .analysis import SurfaceSettings
from .cache import list_runs_cached
from .state import count

KINDS = {
    "random": "Random (filter-normalised)",
    "pca": "PCA of the training trajectory",
    "hessian": "Top Hessian eigenvectors",
    "gradient": "Gradient (and one random)",
    "runs": "Through two or three runs",
}
CAPTION = ("The loss on a line or plane through the trained weights: every grid point is theta0 + a d1 + b d2, "
           "evaluated on a fixed data subset in eval mode.")
AUTO_POINTS = 41 * 41  # larger grids wait for the Compute button
COARSE = 11  # the preview grid shown while a finer 2-D grid computes


def settings_widgets(run: str, info: dict) -> tuple[SurfaceSettings, tuple[str, ...]]:
    """The surface settings and the runs to compare with (same settings, one colour scale); stops the
    page with guidance when the choice cannot be computed."""
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.selectbox("Directions", list(KINDS), format_func=KINDS.get, key="surf_kind")
    dims = c2.radio("Dimensions", [2, 1], format_func=lambda d: f"{d}-D", horizontal=True, key="surf_dims")
    span = c3.slider("Span", 0.1, 3.0, 1.0, 0.1, key="surf_span",
                     help="Random / gradient / Hessian: the grid covers +/- span. PCA and runs: padding around "
                          "the trajectory or the runs, as a multiple of 25% of their extent.")
    grid = c4.slider("Resolution (points per axis)", 11, 81, 21, 2, key="surf_grid")
    c5, c6, c7, c8 = st.columns(4)
    samples = c5.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="surf_samples")
    split = c6.radio("Data", ["train", "test"], horizontal=True, key="surf_split")
    seed = int(c7.number_input("Direction seed", 0, 10_000, 0, key="surf_seed"))
    labels = {r["path"]: r["name"] for r in list_runs_cached() if r["path"] != run}
    others: list[str] = []
    compare: list[str] = []
    if kind == "runs":
        others = c8.multiselect("Other runs (1 = line, 2 = plane)", list(labels), format_func=labels.get,
                                max_selections=2, key="surf_others")
        if not others:
            st.info("Pick one other run (a line from this run to it) or two (the plane through all three).")
            st.stop()
    else:
        compare = c8.multiselect("Compare with (same seed, one colour scale)", list(labels), format_func=labels.get,
                                 max_selections=3, key="surf_compare")
    if kind == "pca" and not info["has_trajectory"]:
        st.warning("This run stored no trajectory snapshots: train with snapshots > 0 to use PCA directions.")
        st.stop()
    settings = SurfaceSettings(directions=kind, dims=int(dims), span=float(span), grid=int(grid),
                               samples=None if samples == "all" else int(samples), split=split, seed=seed,
                               runs=tuple(others))
    return settings, tuple(compare)


def compute_surfaces(run: str, info: dict, settings: SurfaceSettings, compare: tuple[str, ...],
                     progress: ProgressFn) -> dict[str, SurfaceResult]:
    """The run's surface (after a coarse preview for fine 2-D grids) and those of the compared runs."""
    wh = info["weights_hash"]
    preview = st.empty()
    if settings.effective_dims == 2 and settings.grid > COARSE and not analysis.has_result("surface", run, wh, settings):
        coarse = analysis.cached_surface(run, wh, replace(settings, grid=COARSE))
        with preview.container():
            st.caption(f"Coarse {COARSE} x {COARSE} preview; refining to the chosen grid...")
            st.plotly_chart(figures.surface_figure(coarse.surface, kind="contour", height=360), key="surf_preview")
    try:
        out = {info["name"]: analysis.cached_surface(run, wh, settings, progress)}
        for p in compare:
            other = analysis.run_summary(p)
            out[other["name"]] = analysis.cached_surface(p, other["weights_hash"], settings)
    finally:
        preview.empty()
    return out


def summary(res: SurfaceResult) -> None:
    """One caption: the loss at the trained point, the data and the grid."""
    s = res.surface
    st.caption(f"loss at the trained point {s.center_loss:.4g} on {s.settings.get('n_examples')} "
               f"{res.settings.get('split', 'train')} examples · {'x'.join(map(str, s.grid))} grid in "
               f"{s.seconds:.2f} s · axes: {', '.join(s.directions.labels)}")


def _remember(key: str) -> None:
    st.session_state[f"_kept:{key}"] = st.session_state[key]


def _restore(key: str, options: list[str]) -> None:
    """Give widget ``key`` back the user's last choice: Streamlit drops a widget's state when a run does not
    draw it (e.g. while an 81 x 81 grid waits for the Compute button), and the radio would come back at its
    default while the user expects their view."""
    kept = st.session_state.get(f"_kept:{key}")
    if key not in st.session_state and kept in options:
        st.session_state[key] = kept


@st.fragment
def view(surfaces: dict[str, SurfaceResult], main_name: str) -> None:
    """Display-only controls (view, metric, colour) and downloads: reruns only this block."""
    count("fragment:surface")
    main = surfaces[main_name]
    dims = main.surface.dims
    d1, d2, d3, d4, d5 = st.columns(5)
    views = ["contour", "3d", "1d"] if dims == 2 else ["1d"]
    _restore("surf_view", views)
    _restore("surf_metric", ["loss", "accuracy"])
    kind = d1.radio("View", views, horizontal=True, key="surf_view", on_change=_remember, args=("surf_view",),
                    format_func={"contour": "Contour", "3d": "3-D", "1d": "1-D slice"}.get)
    metric = d2.radio("Show", ["loss", "accuracy"], horizontal=True, key="surf_metric", on_change=_remember,
                      args=("surf_metric",))
    log = d3.toggle("Log colour", value=False, key="surf_log", disabled=metric == "accuracy") and metric == "loss"
    cscale = d4.selectbox("Colours", [*figures.COLORSCALES, "RdBu"], key="surf_cscale")
    show_traj = d5.toggle("Trajectory", value=True, key="surf_traj", disabled=main.trajectory is None)
    traj = main.trajectory if show_traj else None
    if len(surfaces) > 1:
        fig = figures.surfaces_side_by_side([(n, r.surface) for n, r in surfaces.items()], kind=kind, log=log,
                                            colorscale=cscale, metric=metric)
    else:
        fig = figures.surface_figure(main.surface, kind=kind, log=log, colorscale=cscale, trajectory=traj,
                                     metric=metric)
        if main.points and kind == "contour" and dims == 2:
            figures.plane_curve_overlay(fig, {p["run"]: p["coords"] for p in main.points}, None)
    st.plotly_chart(fig, key="surf_fig")
    downloads(main, fig, log=log, metric=metric, colorscale=cscale, show_trajectory=traj is not None)


def downloads(res: SurfaceResult, fig, *, log: bool, metric: str, colorscale: str, show_trajectory: bool) -> None:
    """.npz, .vtp, PNG and interactive HTML of the shown surface (built lazily, when clicked)."""
    e1, e2, e3, e4 = st.columns(4)
    stem = f"surface-{res.run_name}-{res.surface.directions.kind}"
    e1.download_button("Download .npz", lambda: exports.surface_npz_bytes(res), f"{stem}.npz",
                       on_click="ignore", key="surf_dl_npz")
    e2.download_button("Download .vtp (ParaView)", lambda: exports.surface_vtp_bytes(res, log=log), f"{stem}.vtp",
                       on_click="ignore", key="surf_dl_vtp")
    e3.download_button("Download PNG", lambda: exports.surface_png_bytes(
        res, metric=metric, log=log, colorscale=colorscale, trajectory=res.trajectory if show_trajectory else None)[0],
        f"{stem}.png", mime="image/png", on_click="ignore", key="surf_dl_png")
    e4.download_button("Download interactive HTML", lambda: exports.figure_html_bytes(fig, title=stem),
                       f"{stem}.html", mime="text/html", on_click="ignore", key="surf_dl_html")
