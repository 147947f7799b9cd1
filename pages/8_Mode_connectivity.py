"""Mode connectivity page: the loss along the straight line and along a trained quadratic Bezier curve
between two runs, their barriers, and the loss over the plane through both runs and the control point."""

import streamlit as st

from ui import analysis, exports, figures
from ui.common import cost_caption, guide_link, run_picker, show_error
from ui.state import init_page

init_page("Mode connectivity", icon="🔗")
st.session_state["_renders_connectivity"] = st.session_state.get("_renders_connectivity", 0) + 1
st.title("Mode connectivity")
st.caption("Linear path (1 - t) A + t B and quadratic Bezier curve (1 - t)^2 A + 2t(1 - t) C + t^2 B with the "
           "control point C trained by sampling t (Garipov et al. 2018). "
           "Barrier = max_t [L(t) - ((1 - t) L_A + t L_B)].")
guide_link("mode-connectivity", "Guide: mode connectivity and barriers")

a_col, b_col = st.columns(2)
with a_col:
    run_a = run_picker("Run A")
if run_a is None:
    st.stop()
with b_col:
    run_b = run_picker("Run B", key="conn_b", exclude=(run_a,))
if run_b is None:
    st.info("Mode connectivity needs a second run of the same architecture and data (train one on the Train page).")
    st.stop()
try:
    ia, ib = analysis.run_summary(run_a), analysis.run_summary(run_b)
except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
    show_error(e)
    st.stop()

c1, c2, c3, c4 = st.columns(4)
n_points = c1.slider("Points along the path", 5, 61, 21, 2, key="conn_points")
samples_opt = c2.select_slider("Examples", [128, 256, 512, 1024, "all"], value=512, key="conn_samples")
split = c3.radio("Data", ["train", "test"], horizontal=True, key="conn_split")
steps = c4.select_slider("Bezier training steps", [20, 50, 100, 200, 300, 500, 1000], value=200, key="conn_steps")
c5, c6 = st.columns(2)
bez_lr = c5.select_slider("Bezier learning rate", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], value=1e-2, key="conn_lr")
plane_grid = c6.slider("Plane surface resolution", 11, 41, 21, 2, key="conn_plane_grid")
samples = None if samples_opt == "all" else int(samples_opt)
common = {"n_points": int(n_points), "samples": samples, "split": split, "seed": 0}
bez_settings = {**common, "curve": "bezier", "bezier_steps": int(steps), "bezier_lr": float(bez_lr)}
cost_caption(analysis.cost_string(run_a, ia["weights_hash"], samples,
                                  forwards=2 * n_points + plane_grid * plane_grid + 2 * steps))

try:
    bar = st.progress(0.0, text="linear path")
    lin = analysis.cached_connectivity(run_a, ia["weights_hash"], run_b, ib["weights_hash"], curve="linear", **common,
                                       progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
    bar.empty()
except Exception as e:  # noqa: BLE001 - e.g. different architectures: one line
    show_error(e)
    st.stop()

bez = None
bez_key = (run_a, ia["weights_hash"], run_b, ib["weights_hash"], int(plane_grid))
if analysis.has_result("connectivity", *bez_key, **bez_settings) or st.button(
        "Train the Bezier curve", type="primary", key="conn_bezier_btn"):
    try:
        bbar = st.progress(0.0, text="training the Bezier curve")
        bez = analysis.cached_connectivity(run_a, ia["weights_hash"], run_b, ib["weights_hash"],
                                           plane_grid=int(plane_grid), **bez_settings,
                                           progress=lambda f, m: bbar.progress(min(max(f, 0.0), 1.0), text=m))
        bbar.empty()
    except Exception as e:  # noqa: BLE001
        show_error(e)

st.caption(f"Page run #{st.session_state['_renders_connectivity']} · connectivity computations this session: "
           f"{analysis.COMPUTE_COUNT['connectivity']} · {lin['settings'].get('n_examples')} {split} examples")
m1, m2, m3, m4 = st.columns(4)
m1.metric("linear barrier", f"{lin['barrier']:.4g}", help=f"reached at t = {lin['barrier_t']:.2f}")
m2.metric("Bezier barrier", f"{bez['barrier']:.4g}" if bez else "not trained",
          help=f"reached at t = {bez['barrier_t']:.2f}" if bez else None)
m3.metric(f"L_A ({ia['name']})", f"{lin['endpoints']['a']['loss']:.4g}")
m4.metric(f"L_B ({ib['name']})", f"{lin['endpoints']['b']['loss']:.4g}")
if lin["settings"].get("batchnorm_recalibrated"):
    st.caption("BatchNorm statistics were recomputed at every path point.")


@st.fragment
def paths_view(lin: dict, bez: dict | None) -> None:
    """Metric choice and downloads: reruns only this block."""
    st.session_state["_fragment_connectivity"] = st.session_state.get("_fragment_connectivity", 0) + 1
    metric = st.radio("Show", ["loss", "accuracy", "excess"], horizontal=True, key="conn_metric",
                      format_func={"loss": "loss", "accuracy": "accuracy",
                                   "excess": "excess over the chord (barrier = its max)"}.get)
    paths = {"linear": {"t": lin["ts"], **{k: lin[k] for k in ("loss", "accuracy", "excess")}}}
    if bez:
        paths["Bezier"] = {"t": bez["ts"], **{k: bez[k] for k in ("loss", "accuracy", "excess")}}
    fig = figures.connectivity_figure(paths, metric)
    st.plotly_chart(fig, key="conn_paths")
    rows = [{"path": name, "t": t, "loss": lo, "accuracy": ac, "excess": ex}
            for name, p in paths.items() for t, lo, ac, ex in zip(p["t"], p["loss"], p["accuracy"], p["excess"])]
    st.caption(f"Figure redraws: {st.session_state['_fragment_connectivity']}")
    d1, d2 = st.columns(2)
    d1.download_button("Paths (CSV)", exports.table_csv_bytes(rows), "paths.csv", mime="text/csv",
                       on_click="ignore", key="conn_dl_csv")
    d2.download_button("Paths (HTML)", lambda: exports.figure_html_bytes(fig, title="mode connectivity"),
                       "paths.html", mime="text/html", on_click="ignore", key="conn_dl_html")


paths_view(lin, bez)


@st.fragment
def plane_view(bez: dict, names: tuple) -> None:
    """The loss over the plane through A, B and C with the curve and the straight line drawn."""
    surf, plane = bez["plane_surface"], bez["plane"]
    p1, p2 = st.columns(2)
    log = p1.toggle("Log colour", value=True, key="conn_plane_log")
    cscale = p2.selectbox("Colours", ["Viridis", "Cividis", "Plasma", "Turbo"], key="conn_plane_cscale")
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
    if bez.get("train_history"):
        h = bez["train_history"]
        st.plotly_chart(figures.path_values_figure([r["step"] for r in h], {"mean loss over sampled t": [r["loss"] for r in h]},
                                                   xlabel="step", ylabel="loss", title="Bezier training"),
                        key="conn_bez_train")


if bez and bez.get("plane_surface"):
    st.subheader("The plane through A, B and the control point")
    plane_view(bez, (ia["name"], ib["name"]))
elif bez:
    st.info("The trained control point lies on the line AB: the curve is the straight path, no plane to show.")
