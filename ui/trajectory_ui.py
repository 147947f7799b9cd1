"""Trajectory page widgets and views: the projection settings, the PCA-plane surface with the path, and each
snapshot's off-plane residual and true loss against the surface value."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from landscape_core.analyses.surface import SurfaceResult
from landscape_core.progress import ProgressFn
from landscape_core.trajectory import TrajectoryProjection

from . import analysis, exports, figures
from .analysis import TrajectorySettings
from .state import count

CAPTION = ("PCA of the snapshots theta_i - theta_final (Li et al. 2018, section 7). A point drawn on the plane "
           "is the checkpoint only if its off-plane residual is small.")


@dataclass(frozen=True)
class TrajectoryView:
    """What the page draws: the projection, the PCA-plane surface and the explained variances."""

    projection: TrajectoryProjection
    surface: SurfaceResult
    variance: list[float]


def require_trajectory(info: dict) -> None:
    """Stop the page with guidance when the run stored no snapshots."""
    if not info["has_trajectory"]:
        st.info("This run stored no trajectory snapshots. Train with **snapshots > 0** on the Train page (the "
                "shipped digits runs have them).")
        st.stop()


def settings_widgets() -> TrajectorySettings:
    """Data subset, and the resolution and padding of the surface under the path."""
    c1, c2, c3, c4 = st.columns(4)
    samples = c1.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="traj_samples")
    split = c2.radio("Data", ["train", "test"], horizontal=True, key="traj_split")
    grid = c3.slider("Surface resolution", 11, 61, 21, 2, key="traj_grid")
    span = c4.slider("Padding around the path", 0.2, 3.0, 1.0, 0.1, key="traj_span")
    return TrajectorySettings(samples=None if samples == "all" else int(samples), split=split, seed=0,
                              grid=int(grid), span=float(span))


def compute_view(run: str, info: dict, settings: TrajectorySettings, progress: ProgressFn) -> TrajectoryView:
    """The projection (first half of the progress bar), the PCA-plane surface (second half), the variances."""
    wh = info["weights_hash"]
    proj = analysis.cached_trajectory(run, wh, settings, lambda f, m: progress(0.5 * f, m))
    surf = analysis.cached_surface(run, wh, settings.surface(), lambda f, m: progress(0.5 + 0.5 * f, m))
    return TrajectoryView(proj, surf, analysis.cached_pca_variance(run, wh, 10))


def summary(v: TrajectoryView) -> None:
    """Variance in the plane, the largest residual, the final loss; a warning when the plane hides a lot."""
    proj = v.projection
    st.caption(f"{len(proj.steps)} snapshots")
    m1, m2, m3 = st.columns(3)
    m1.metric("variance in the plane", f"{100 * sum(proj.explained_variance_ratio):.1f}%",
              help="PC1 + PC2 explained-variance ratio")
    verdict = proj.off_plane_verdict()  # the engine decides when the plane misrepresents the path
    m2.metric("largest off-plane distance", f"{100 * verdict['max_extent_residual']:.1f}%",
              help="max_i ||off-plane part of theta_i - theta_final|| / max_j ||theta_j - theta_final||")
    m3.metric("final loss", f"{proj.true_loss[-1]:.4g}")
    if verdict["warn"]:
        st.warning(verdict["note"])
    else:
        st.caption(verdict["note"])


def path_rows(proj: TrajectoryProjection) -> list[dict]:
    """One row per snapshot: step, plane coordinates, residuals, true loss and surface value."""
    return [{"step": int(s), "pc1": float(c[0]), "pc2": float(c[1]), "residual": float(r),
             "relative_residual": float(rr), "residual_over_extent": float(er), "true_loss": float(t), "surface_value": float(p)}
            for s, c, r, rr, er, t, p in zip(proj.steps, proj.coords, proj.residual_norm, proj.relative_residual,
                                             proj.extent_residual, proj.true_loss, proj.plane_loss)]


@st.fragment
def view(v: TrajectoryView) -> None:
    """View and scale controls: reruns only this block."""
    count("fragment:trajectory")
    proj = v.projection
    d1, d2, d3 = st.columns(3)
    kind = d1.radio("Path view", ["contour", "3d"], horizontal=True, key="traj_view",
                    format_func={"contour": "Over the contour", "3d": "3-D"}.get)
    log = d2.toggle("Log colour / log loss axis", value=True, key="traj_log")
    cscale = d3.selectbox("Colours", list(figures.COLORSCALES), key="traj_cscale")
    left, right = st.columns([3, 2])
    fig = figures.surface_figure(v.surface.surface, kind=kind, log=log, colorscale=cscale, trajectory=proj,
                                 title="Loss on the PCA plane with the training path")
    left.plotly_chart(fig, key="traj_surface")
    right.plotly_chart(figures.explained_variance_figure(v.variance), key="traj_variance")
    p1, p2 = st.columns(2)
    p1.plotly_chart(figures.path_values_figure(
        proj.steps, {"true loss (checkpoint)": proj.true_loss, "surface value at the projection": proj.plane_loss},
        xlabel="step", ylabel="loss", title="True loss vs surface value along the path", log=log,
        dashes={"surface value at the projection": "dash"}), key="traj_losses")
    p2.plotly_chart(figures.path_values_figure(proj.steps, {"off-plane distance / path extent": proj.extent_residual},
                                               xlabel="step", ylabel="||off-plane|| / max_j ||theta_j - theta_final||",
                                               title="Off-plane residual per snapshot"), key="traj_residual")
    e1, e2, e3 = st.columns(3)
    e1.download_button("Path table (CSV)", exports.table_csv_bytes(path_rows(proj)), "trajectory.csv",
                       mime="text/csv", on_click="ignore", key="traj_dl_csv")
    e2.download_button("Surface + path (.npz)", lambda: exports.surface_npz_bytes(v.surface),
                       "trajectory_surface.npz", on_click="ignore", key="traj_dl_npz")
    e3.download_button("Figure (HTML)", lambda: exports.figure_html_bytes(fig, title="trajectory"),
                       "trajectory.html", mime="text/html", on_click="ignore", key="traj_dl_html")
