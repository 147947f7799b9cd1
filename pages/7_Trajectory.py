"""Trajectory page: the training path projected on the PCA plane of theta_i - theta_final, over the loss
surface of that plane, with each point's off-plane residual and its true loss against the surface value."""

import streamlit as st

from ui import analysis, exports, figures
from ui.common import guide_link, show_error
from ui.state import init_page

init_page("Trajectory", icon="🧭")
st.session_state["_renders_trajectory"] = st.session_state.get("_renders_trajectory", 0) + 1
st.title("Training trajectory")
st.caption("PCA of the snapshots theta_i - theta_final (Li et al. 2018, section 7). A point drawn on the "
           "plane is the checkpoint only if its off-plane residual is small.")
guide_link("pca-trajectories", "Guide: what PCA trajectories show, and what they hide")

run, info = analysis.picked_run()
if not info["has_trajectory"]:
    st.info("This run stored no trajectory snapshots. Train with **snapshots > 0** on the Train page (the "
            "shipped digits runs have them).")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
samples_opt = c1.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="traj_samples")
split = c2.radio("Data", ["train", "test"], horizontal=True, key="traj_split")
grid = c3.slider("Surface resolution", 11, 61, 21, 2, key="traj_grid")
span = c4.slider("Padding around the path", 0.2, 3.0, 1.0, 0.1, key="traj_span")
samples = None if samples_opt == "all" else int(samples_opt)

try:
    bar = st.progress(0.0, text="projecting the trajectory")
    proj = analysis.cached_trajectory(run, info["weights_hash"], samples=samples, split=split, seed=0,
                                      progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
    surf = analysis.cached_surface(run, info["weights_hash"], directions="pca", dims=2, grid=int(grid),
                                   span=float(span), samples=samples, split=split, seed=0,
                                   progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
    variance = analysis.cached_pca_variance(run, info["weights_hash"], 10)
    bar.empty()
except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
    show_error(e)
    st.stop()

st.caption(f"Page run #{st.session_state['_renders_trajectory']} · {len(proj['steps'])} snapshots · "
           f"trajectory computations this session: {analysis.COMPUTE_COUNT['trajectory']}")
ev = proj["explained_variance_ratio"]
m1, m2, m3 = st.columns(3)
m1.metric("variance in the plane", f"{100 * sum(ev):.1f}%", help="PC1 + PC2 explained-variance ratio")
m2.metric("largest relative residual", f"{100 * proj['max_relative_residual']:.1f}%",
          help="max_i ||off-plane part|| / ||theta_i - theta_final||")
m3.metric("final loss", f"{proj['true_loss'][-1]:.4g}")
if proj["max_relative_residual"] > 0.3:
    st.warning("Some snapshots lie far off the plane (relative residual > 30%): there the surface value is "
               "not the checkpoint's loss. Compare the two curves below.")

rows = [{"step": s, "pc1": c[0], "pc2": c[1], "residual": r, "relative_residual": rr, "true_loss": t,
         "surface_value": p}
        for s, c, r, rr, t, p in zip(proj["steps"], proj["coords"], proj["residual_norm"], proj["relative_residual"],
                                     proj["true_loss"], proj["plane_loss"])]


@st.fragment
def trajectory_view(surf: dict, proj: dict, variance: list, rows: list) -> None:
    """View and scale controls: reruns only this block."""
    st.session_state["_fragment_trajectory"] = st.session_state.get("_fragment_trajectory", 0) + 1
    d1, d2, d3 = st.columns(3)
    view = d1.radio("Path view", ["contour", "3d"], horizontal=True, key="traj_view",
                    format_func={"contour": "Over the contour", "3d": "3-D"}.get)
    log = d2.toggle("Log colour / log loss axis", value=True, key="traj_log")
    cscale = d3.selectbox("Colours", ["Viridis", "Cividis", "Plasma", "Turbo"], key="traj_cscale")
    left, right = st.columns([3, 2])
    fig = figures.surface_figure(surf, kind=view, log=log, colorscale=cscale, trajectory=proj,
                                 title="Loss on the PCA plane with the training path")
    left.plotly_chart(fig, key="traj_surface")
    right.plotly_chart(figures.explained_variance_figure(variance), key="traj_variance")
    steps = proj["steps"]
    p1, p2 = st.columns(2)
    loss_fig = figures.path_values_figure(
        steps, {"true loss (checkpoint)": proj["true_loss"], "surface value at the projection": proj["plane_loss"]},
        xlabel="step", ylabel="loss", title="True loss vs surface value along the path", log=log,
        dashes={"surface value at the projection": "dash"})
    p1.plotly_chart(loss_fig, key="traj_losses")
    res_fig = figures.path_values_figure(steps, {"relative residual": proj["relative_residual"]}, xlabel="step",
                                         ylabel="||off-plane|| / ||theta_i - theta_final||",
                                         title="Off-plane residual per snapshot")
    p2.plotly_chart(res_fig, key="traj_residual")
    st.caption(f"Figure redraws: {st.session_state['_fragment_trajectory']}")
    e1, e2, e3 = st.columns(3)
    e1.download_button("Path table (CSV)", exports.table_csv_bytes(rows), "trajectory.csv", mime="text/csv",
                       on_click="ignore", key="traj_dl_csv")
    e2.download_button("Surface + path (.npz)", lambda: exports.surface_npz_bytes(surf), "trajectory_surface.npz",
                       on_click="ignore", key="traj_dl_npz")
    e3.download_button("Figure (HTML)", lambda: exports.figure_html_bytes(fig, title="trajectory"),
                       "trajectory.html", mime="text/html", on_click="ignore", key="traj_dl_html")


trajectory_view(surf, proj, variance, rows)
