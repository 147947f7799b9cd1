"""Loss surface page: 1-D, contour and 3-D views of the loss (or accuracy) around a trained run, in random
filter-normalised, PCA, Hessian, gradient or run-to-run directions, with downloads."""

import streamlit as st

from ui import analysis, exports, figures
from ui.cache import list_runs_cached
from ui.common import cost_caption, guide_link, show_error
from ui.state import init_page

init_page("Loss surface", icon="🏔️")
st.session_state["_renders_surface"] = st.session_state.get("_renders_surface", 0) + 1
st.title("Loss surface")
st.caption("The loss on a line or plane through the trained weights: every grid point is "
           "theta0 + a d1 + b d2, evaluated on a fixed data subset in eval mode.")
guide_link("filter-normalisation", "Guide: why directions are filter-normalised (Li et al. 2018)")

KINDS = {
    "random": "Random (filter-normalised)",
    "pca": "PCA of the training trajectory",
    "hessian": "Top Hessian eigenvectors",
    "gradient": "Gradient (and one random)",
    "runs": "Through two or three runs",
}

run, info = analysis.picked_run()

c1, c2, c3, c4 = st.columns(4)
kind = c1.selectbox("Directions", list(KINDS), format_func=KINDS.get, key="surf_kind")
dims = c2.radio("Dimensions", [2, 1], format_func=lambda d: f"{d}-D", horizontal=True, key="surf_dims")
span = c3.slider("Span", 0.1, 3.0, 1.0, 0.1, key="surf_span",
                 help="Random / gradient / Hessian: the grid covers +/- span. PCA and runs: padding around "
                      "the trajectory or the runs, as a multiple of 25% of their extent.")
grid = c4.slider("Resolution (points per axis)", 11, 81, 21, 2, key="surf_grid")
c5, c6, c7, c8 = st.columns(4)
samples_opt = c5.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="surf_samples")
split = c6.radio("Data", ["train", "test"], horizontal=True, key="surf_split")
seed = int(c7.number_input("Direction seed", 0, 10_000, 0, key="surf_seed"))
others: list[str] = []
rows = [r for r in list_runs_cached() if r["path"] != run]
labels = {r["path"]: r["name"] for r in rows}
if kind == "runs":
    others = c8.multiselect("Other runs (1 = line, 2 = plane)", list(labels), format_func=labels.get,
                            max_selections=2, key="surf_others")
    if not others:
        st.info("Pick one other run (a line from this run to it) or two (the plane through all three).")
        st.stop()
compare = []
if kind != "runs":
    compare = c8.multiselect("Compare with (same seed, one colour scale)", list(labels), format_func=labels.get,
                             max_selections=3, key="surf_compare")
if kind == "pca" and not info["has_trajectory"]:
    st.warning("This run stored no trajectory snapshots: train with snapshots > 0 to use PCA directions.")
    st.stop()

samples = None if samples_opt == "all" else int(samples_opt)
settings = {"directions": kind, "dims": int(dims), "span": float(span), "grid": int(grid), "samples": samples,
            "split": split, "seed": seed, "runs": tuple(others)}
n_points = grid if dims == 1 else grid * grid
cost_caption(analysis.cost_string(run, info["weights_hash"], samples, forwards=n_points * (1 + len(compare))))

auto = n_points <= 41 * 41
key = (run, info["weights_hash"], tuple(sorted(settings.items())), tuple(compare))
done = st.session_state.setdefault("_surface_done", set())
if not auto and key not in done and not st.button("Compute", type="primary", key="surf_compute"):
    st.info(f"{n_points} grid points: press Compute (smaller grids compute automatically).")
    st.stop()

preview = st.empty()
surfaces: dict[str, dict] = {}
try:
    if key not in done and dims == 2 and grid > 11:  # progressive refinement: a coarse 11 x 11 first
        coarse = analysis.cached_surface(run, info["weights_hash"], **{**settings, "grid": 11})
        with preview.container():
            st.caption("Coarse 11 x 11 preview; refining to the chosen grid...")
            st.plotly_chart(figures.surface_figure(coarse, kind="contour", height=360), key="surf_preview")
    bar = st.progress(0.0, text="computing surface")
    surfaces[info["name"]] = analysis.cached_surface(
        run, info["weights_hash"], **settings, progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
    for p in compare:
        other = analysis.run_summary(p)
        surfaces[other["name"]] = analysis.cached_surface(p, other["weights_hash"], **settings)
    bar.empty()
except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
    preview.empty()
    show_error(e)
    st.stop()
preview.empty()
done.add(key)
main = surfaces[info["name"]]
st.caption(
    f"Page run #{st.session_state['_renders_surface']} · loss at the trained point "
    f"{main['center_loss']:.4g} on {main['settings'].get('n_examples')} {split} examples · "
    f"{'x'.join(map(str, main['grid']))} grid in {main['seconds']:.2f} s · "
    f"surface computations this session: {analysis.COMPUTE_COUNT['surface']}"
)


@st.fragment
def surface_view(surfaces: dict, main_name: str, dims: int) -> None:
    """Display-only controls (view, metric, colour) and downloads: reruns only this block."""
    st.session_state["_fragment_surface"] = st.session_state.get("_fragment_surface", 0) + 1
    d1, d2, d3, d4, d5 = st.columns(5)
    views = ["contour", "3d", "1d"] if dims == 2 else ["1d"]
    view = d1.radio("View", views, horizontal=True, key="surf_view",
                    format_func={"contour": "Contour", "3d": "3-D", "1d": "1-D slice"}.get)
    metric = d2.radio("Show", ["loss", "accuracy"], horizontal=True, key="surf_metric")
    log = d3.toggle("Log colour", value=False, key="surf_log", disabled=metric == "accuracy")
    cscale = d4.selectbox("Colours", ["Viridis", "Cividis", "Plasma", "Turbo", "RdBu"], key="surf_cscale")
    show_traj = d5.toggle("Trajectory", value=True, key="surf_traj",
                          disabled=surfaces[main_name].get("trajectory") is None)
    log = log and metric == "loss"
    main = surfaces[main_name]
    traj = main.get("trajectory") if show_traj else None
    if len(surfaces) > 1:
        fig = figures.surfaces_side_by_side(list(surfaces.items()), kind=view, log=log, colorscale=cscale,
                                            metric=metric)
    else:
        fig = figures.surface_figure(main, kind=view, log=log, colorscale=cscale, trajectory=traj, metric=metric)
        if main.get("run_coords") and view == "contour" and dims == 2:
            figures.plane_curve_overlay(fig, dict(zip(main["run_names"], main["run_coords"])), None)
    st.plotly_chart(fig, key="surf_fig")
    st.caption(f"Figure redraws: {st.session_state['_fragment_surface']} · axes: {', '.join(main.get('labels') or [])}")
    e1, e2, e3, e4 = st.columns(4)
    stem = f"surface-{main_name}-{main['request']['directions']}"
    # payloads are built lazily, when the user clicks (the HTML embeds plotly.js: a few MB)
    e1.download_button("Download .npz", lambda: exports.surface_npz_bytes(main), f"{stem}.npz",
                       on_click="ignore", key="surf_dl_npz")
    e2.download_button("Download .vtp (ParaView)", lambda: exports.surface_vtp_bytes(main, log=log), f"{stem}.vtp",
                       on_click="ignore", key="surf_dl_vtp")
    e3.download_button("Download PNG", lambda: exports.surface_png_bytes(main, metric=metric, log=log, colorscale=cscale,
                                                                          trajectory=traj)[0],
                       f"{stem}.png", mime="image/png", on_click="ignore", key="surf_dl_png")
    e4.download_button("Download interactive HTML", lambda: exports.figure_html_bytes(fig, title=stem), f"{stem}.html",
                       mime="text/html", on_click="ignore", key="surf_dl_html")


surface_view(surfaces, info["name"], int(dims))
