"""Mode-connectivity page widgets and views: the two runs, path settings, barriers, the paths figure and the
loss over the plane through A, B and the trained Bezier control point."""

from __future__ import annotations

import streamlit as st

from landscape_core.analyses.connectivity import ConnectivityResult
from landscape_core.connectivity import PathResult
from landscape_core.surface import Surface

from . import analysis, exports, figures
from .analysis import ConnectivitySettings
from .cache import list_runs_cached
from .common import run_picker, show_error
from .state import count

CAPTION = ("Linear path (1 - t) A + t B and quadratic Bezier curve (1 - t)^2 A + 2t(1 - t) C + t^2 B with the "
           "control point C trained by sampling t (Garipov et al. 2018). "
           "Barrier = max_t [L(t) - ((1 - t) L_A + t L_B)].")
METRIC_LABELS = {"loss": "loss", "accuracy": "accuracy", "excess": "excess over the chord (barrier = its max)"}


def compatible_runs(run_a: str) -> list[dict]:
    """Rows of the other runs with run A's architecture and data (the only pairs a path can interpolate)."""
    rows = list_runs_cached()
    arch = next((r["arch"] for r in rows if r["path"] == run_a), None)
    return [r for r in rows if r["path"] != run_a and r["arch"] == arch]


def picked_runs() -> tuple[str, dict, str, dict]:
    """Runs A and B with their summaries; B is offered only among runs compatible with A (same model spec
    and dataset). Stops the page with an explanation when A has no compatible partner."""
    a_col, b_col = st.columns(2)
    with a_col:
        run_a = run_picker("Run A")
    if run_a is None:
        st.stop()
    compatible = {r["path"] for r in compatible_runs(run_a)}
    if not compatible:
        try:
            ia = analysis.run_summary(run_a)
            spec = analysis.run_meta(run_a).get("model") or {}
        except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
            show_error(e)
            st.stop()
        kw = ", ".join(f"{k}={v}" for k, v in (spec.get("kwargs") or {}).items()
                       if k not in ("input_shape", "num_classes"))
        b_col.info(f"No other run has the architecture and data of **{ia['name']}** ({spec.get('name')}: {kw}). "
                   "A path between two runs interpolates their weights, so both need the same model and dataset: "
                   "pick another run A, or train a second run with the same settings (another seed) on the Train page.")
        st.stop()
    with b_col:
        run_b = run_picker("Run B", key="conn_b",
                           exclude=[r["path"] for r in list_runs_cached() if r["path"] not in compatible])
    if run_b is None:
        st.stop()
    try:
        infos = run_a, analysis.run_summary(run_a), run_b, analysis.run_summary(run_b)
    except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
        show_error(e)
        st.stop()
    analysis.health_banner([infos[1], infos[3]])
    return infos


def settings_widgets() -> tuple[ConnectivitySettings, ConnectivitySettings]:
    """Settings of the linear path and of the Bezier curve (same points and data)."""
    c1, c2, c3, c4 = st.columns(4)
    n_points = c1.slider("Points along the path", 5, 61, 21, 2, key="conn_points")
    samples = c2.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="conn_samples")
    split = c3.radio("Data", ["train", "test"], horizontal=True, key="conn_split")
    steps = c4.select_slider("Bezier training steps", [20, 50, 100, 200, 300, 500, 1000], value=200, key="conn_steps")
    c5, c6 = st.columns(2)
    lr = c5.select_slider("Bezier learning rate", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], value=1e-2, key="conn_lr")
    plane_grid = c6.slider("Plane surface resolution", 11, 41, 21, 2, key="conn_plane_grid")
    linear = ConnectivitySettings(curve="linear", n_points=int(n_points),
                                  samples=None if samples == "all" else int(samples), split=split, seed=0)
    bezier = ConnectivitySettings(curve="bezier", n_points=linear.n_points, samples=linear.samples, split=split,
                                  seed=0, bezier_steps=int(steps), bezier_lr=float(lr), plane_grid=int(plane_grid))
    return linear, bezier


def barriers(lin: ConnectivityResult, bez: ConnectivityResult | None, name_a: str, name_b: str) -> None:
    """Both barriers and the endpoint losses."""
    st.caption(f"{lin.settings.get('n_examples')} {lin.settings.get('split', 'train')} examples")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("linear barrier", f"{lin.barrier:.4g}", help=f"reached at t = {lin.path.barrier_t:.2f}")
    m2.metric("Bezier barrier", f"{bez.barrier:.4g}" if bez else "not trained",
              help=f"reached at t = {bez.path.barrier_t:.2f}" if bez else None)
    m3.metric(f"L_A ({name_a})", f"{lin.endpoints['a']['loss']:.4g}")
    m4.metric(f"L_B ({name_b})", f"{lin.endpoints['b']['loss']:.4g}")
    if lin.settings.get("batchnorm_recalibrated"):
        st.caption("BatchNorm statistics were recomputed at every path point.")


@st.fragment
def paths_view(lin: ConnectivityResult, bez: ConnectivityResult | None) -> None:
    """Metric choice and downloads: reruns only this block."""
    count("fragment:connectivity")
    metric = st.radio("Show", list(METRIC_LABELS), horizontal=True, key="conn_metric", format_func=METRIC_LABELS.get)
    paths: dict[str, PathResult] = {"linear": lin.path, **({"Bezier": bez.path} if bez else {})}
    fig = figures.connectivity_figure(paths, metric)
    st.plotly_chart(fig, key="conn_paths")
    rows = [{"path": name, "t": t, "loss": lo, "accuracy": ac, "excess": float(ex)}
            for name, p in paths.items() for t, lo, ac, ex in zip(p.ts, p.loss, p.accuracy, p.excess)]
    d1, d2 = st.columns(2)
    d1.download_button("Paths (CSV)", exports.table_csv_bytes(rows), "paths.csv", mime="text/csv",
                       on_click="ignore", key="conn_dl_csv")
    d2.download_button("Paths (HTML)", lambda: exports.figure_html_bytes(fig, title="mode connectivity"),
                       "paths.html", mime="text/html", on_click="ignore", key="conn_dl_html")


def plane_section(bez: ConnectivityResult, surface: Surface | None, names: tuple[str, str]) -> None:
    """The plane through A, B and C, or why there is none."""
    if surface is None:
        st.info("The trained control point lies on the line AB: the curve is the straight path, no plane to show.")
        return
    st.subheader("The plane through A, B and the control point")
    plane_view(bez, surface, names)


@st.fragment
def plane_view(bez: ConnectivityResult, surf: Surface, names: tuple[str, str]) -> None:
    """The loss over the plane through A, B and C with the curve and the straight line drawn."""
    plane = bez.plane
    p1, p2 = st.columns(2)
    log = p1.toggle("Log colour", value=True, key="conn_plane_log")
    cscale = p2.selectbox("Colours", list(figures.COLORSCALES), key="conn_plane_cscale")
    fig = figures.surface_figure(surf, kind="contour", log=log, colorscale=cscale,
                                 title="Loss on the plane through A, B and the control point C")
    curve = plane["curve"]
    figures.plane_curve_overlay(
        fig, {f"A ({names[0]})": plane["a"], f"B ({names[1]})": plane["b"], "C (control)": plane["c"]},
        {"Bezier curve": ([c[0] for c in curve], [c[1] for c in curve]),
         "linear path": ([plane["a"][0], plane["b"][0]], [plane["a"][1], plane["b"][1]])})
    st.plotly_chart(fig, key="conn_plane")
    q1, q2, q3 = st.columns(3)
    q1.download_button("Plane surface (.npz)", lambda: exports.surface_npz_bytes(surf), "bezier_plane.npz",
                       on_click="ignore", key="conn_dl_npz")
    q2.download_button("Plane surface (.vtp)", lambda: exports.surface_vtp_bytes(surf, log=log), "bezier_plane.vtp",
                       on_click="ignore", key="conn_dl_vtp")
    q3.download_button("Plane (PNG)", lambda: exports.surface_png_bytes(surf, log=log, colorscale=cscale)[0],
                       "bezier_plane.png", mime="image/png", on_click="ignore", key="conn_dl_png")
    if bez.train_history:
        h = bez.train_history
        st.plotly_chart(figures.path_values_figure([r["step"] for r in h], {"mean loss over sampled t": [r["loss"] for r in h]},
                                                   xlabel="step", ylabel="loss", title="Bezier training"),
                        key="conn_bez_train")
