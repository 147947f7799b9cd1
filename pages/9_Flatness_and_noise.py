"""Flatness and noise page: loss increase under random perturbations for several runs (with CIs),
epsilon-sharpness and adaptive sharpness, which measures survive a function-preserving rescaling, and the
gradient noise scale against batch size."""

import streamlit as st

from ui import analysis, exports, figures
from ui.cache import list_runs_cached
from ui.common import guide_link, run_picker, show_error
from ui.state import init_page

init_page("Flatness and noise", icon="🎚️")
st.session_state["_renders_flatness"] = st.session_state.get("_renders_flatness", 0) + 1
st.title("Flatness and gradient noise")
g1, g2 = st.columns(2)
with g1:
    guide_link("flatness", "Guide: flatness measures and their pitfalls")
with g2:
    guide_link("gradient-noise", "Guide: the gradient noise scale")

run = run_picker()
if run is None:
    st.stop()
rows = [r for r in list_runs_cached() if r["path"] != run]
labels = {r["path"]: r["name"] for r in rows}
others = st.multiselect("Compare with", list(labels), format_func=labels.get, max_selections=4, key="flat_others")
try:
    infos = {p: analysis.run_summary(p) for p in [run, *others]}
except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
    show_error(e)
    st.stop()

st.header("Flatness of the minimum")
c1, c2, c3, c4 = st.columns(4)
samples = int(c1.select_slider("Examples", [128, 256, 512, 1024], value=256, key="flat_samples"))
n_dirs = c2.slider("Random directions per radius", 3, 50, 10, key="flat_dirs")
rho = c3.select_slider("Adaptive-sharpness radius rho", [0.01, 0.02, 0.05, 0.1, 0.2], value=0.05, key="flat_rho")
eps = c4.select_slider("epsilon (Keskar box)", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=1e-3, key="flat_eps")
fsettings = {"samples": samples, "n_directions": int(n_dirs), "rho": float(rho), "epsilon": float(eps),
             "ascent_steps": 5, "basin_directions": 5, "seed": 0, "split": "train"}
ready = all(analysis.has_result("flatness", p, i["weights_hash"], **fsettings) for p, i in infos.items())
flat: dict[str, dict] = {}
if ready or st.button("Measure flatness", type="primary", key="flat_compute"):
    bar = st.progress(0.0, text="flatness")
    try:
        for k, (p, i) in enumerate(infos.items()):
            flat[i["name"]] = analysis.cached_flatness(
                p, i["weights_hash"], **fsettings,
                progress=lambda f, m, k=k: bar.progress(min(max((k + f) / len(infos), 0.0), 1.0), text=m))
    except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
        show_error(e)
        flat = {}
    bar.empty()
st.caption(f"Page run #{st.session_state['_renders_flatness']} · flatness computations this session: "
           f"{analysis.COMPUTE_COUNT['flatness']}")


@st.fragment
def flatness_view(flat: dict) -> None:
    """Scale toggle and downloads of the perturbation profiles: reruns only this block."""
    st.session_state["_fragment_flatness"] = st.session_state.get("_fragment_flatness", 0) + 1
    log = st.toggle("Log scale", value=False, key="flat_log")
    profiles = {name: {"radii": r["profile"]["radii"], "mean": r["profile"]["mean_increase"],
                       "lo": r["profile"]["ci_low"], "hi": r["profile"]["ci_high"]} for name, r in flat.items()}
    fig = figures.flatness_stem_figure(profiles, log=log)
    st.plotly_chart(fig, key="flat_stem")
    st.caption("Radius r moves every filter by r times its own norm (filter-normalised directions); bars: 95% "
               f"t-intervals over directions. Figure redraws: {st.session_state['_fragment_flatness']}")
    table = [{"run": name, "loss": r["loss"],
              "epsilon-sharpness (%)": r["epsilon_sharpness"]["value"],
              "adaptive sharpness": r["adaptive_sharpness"]["value"],
              "basin radius (mean)": r["basin_radius"]["mean"],
              "basin radius CI": f"[{r['basin_radius']['ci_low']:.3g}, {r['basin_radius']['ci_high']:.3g}]",
              "censored directions": r["basin_radius"]["n_censored"]} for name, r in flat.items()]
    st.dataframe(table, hide_index=True)
    prof_rows = [{"run": name, "radius": rr, "mean_increase": m, "ci_low": lo, "ci_high": hi}
                 for name, p in profiles.items() for rr, m, lo, hi in zip(p["radii"], p["mean"], p["lo"], p["hi"])]
    d1, d2, d3 = st.columns(3)
    d1.download_button("Measures (CSV)", exports.table_csv_bytes(table), "flatness.csv", mime="text/csv",
                       on_click="ignore", key="flat_dl_csv")
    d2.download_button("Profiles (CSV)", exports.table_csv_bytes(prof_rows), "profiles.csv", mime="text/csv",
                       on_click="ignore", key="flat_dl_prof")
    d3.download_button("Stem plot (HTML)", lambda: exports.figure_html_bytes(fig, title="flatness"), "flatness.html",
                       mime="text/html", on_click="ignore", key="flat_dl_html")


if flat:
    flatness_view(flat)

st.header("Which measures survive a rescaling?")
st.caption("Scaling one ReLU layer by c and the next by 1/c leaves the network's function unchanged (Dinh et al. "
           "2017). A measure that changes cannot be a property of the function.")
main = infos[run]
c_factor = st.select_slider("Rescale factor c", [2.0, 5.0, 10.0, 100.0], value=10.0, key="flat_c")
isettings = {"c": float(c_factor), "samples": 128, "n_directions": 5, "ascent_steps": 5, "seed": 0}
if analysis.has_result("invariance", run, main["weights_hash"], **isettings) or st.button(
        "Run the rescaling demonstration", key="flat_inv_btn"):
    try:
        inv = analysis.cached_invariance(run, main["weights_hash"], **isettings)
    except Exception as e:  # noqa: BLE001
        show_error(e)
        inv = None
    if inv:
        if inv.get("relu_substitute"):
            st.info("This run's activation is not positively homogeneous (e.g. tanh), so no rescaling preserves "
                    "its function. The demonstration uses the same architecture and weights with ReLU instead.")
        meas = inv["measures"]
        st.plotly_chart(figures.invariance_figure([m["name"] for m in meas], [m["before"] for m in meas],
                                                  [m["after"] for m in meas]), key="flat_invariance")
        inv_rows = [{"measure": m["name"], "before": m["before"], "after": m["after"],
                     "relative change": m["relative_change"],
                     "invariant": "yes" if m["relative_change"] < 1e-4 else "NO",
                     "why": m["note"]} for m in meas]
        st.dataframe(inv_rows, hide_index=True)
        st.caption(f"Largest change of the network's output after rescaling: {inv['max_output_change']:.2e} "
                   f"(loss {inv['loss']['before']:.6g} -> {inv['loss']['after']:.6g}).")
        st.download_button("Rescaling table (CSV)", exports.table_csv_bytes(inv_rows), "invariance.csv",
                           mime="text/csv", on_click="ignore", key="flat_dl_inv")

st.header("Gradient noise scale")
st.caption("E|G_B|^2 = |G|^2 + tr(Sigma)/B: B_simple = tr(Sigma)/|G|^2 is the batch size where the gradient's "
           "noise matches its signal (McCandlish et al. 2018).")
n1, n2, n3 = st.columns(3)
sizes = n1.multiselect("Batch sizes", [8, 16, 32, 64, 128, 256, 512], default=[16, 32, 64, 128, 256],
                       key="noise_sizes")
n_batches = n2.slider("Draws per batch size", 2, 50, 10, key="noise_draws")
nsamples = int(n3.select_slider("Examples", [256, 512, 1024], value=512, key="noise_samples"))
nsettings = {"batch_sizes": tuple(sorted(int(b) for b in sizes)), "n_batches": int(n_batches), "samples": nsamples,
             "seed": 0, "split": "train"}
if len(sizes) < 2:
    st.info("Pick at least two batch sizes.")
elif analysis.has_result("noise", run, main["weights_hash"], **nsettings) or st.button(
        "Measure the noise scale", key="noise_btn"):
    nbar = st.progress(0.0, text="gradient noise")
    try:
        noise = analysis.cached_noise(run, main["weights_hash"], **nsettings,
                                      progress=lambda f, m: nbar.progress(min(max(f, 0.0), 1.0), text=m))
    except Exception as e:  # noqa: BLE001
        show_error(e)
        noise = None
    nbar.empty()
    if noise:
        lo, hi = noise["ci"]
        st.metric("B_simple", f"{noise['b_simple']:.4g}" if noise["b_simple"] is not None else "n/a",
                  help="tr(Sigma) / |G|^2 from the weighted fit over all batch sizes")
        st.caption(f"95% bootstrap interval [{lo if lo is None else f'{lo:.3g}'}, {hi if hi is None else f'{hi:.3g}'}]"
                   f" on {noise['n_examples']} examples")
        q1, q2 = st.columns(2)
        q1.plotly_chart(figures.noise_norms_figure(noise["batch_sizes"], noise["mean_sq_norm"], noise["sem"],
                                                   noise["predicted"]), key="noise_norms")
        ps = noise["per_size"]
        q2.plotly_chart(figures.noise_figure([r["b_small"] for r in ps], [r["b_simple"] for r in ps],
                                             b_simple=noise["b_simple"],
                                             ylabel=f"B_simple from (B, {ps[0]['b_big'] if ps else ''})"),
                        key="noise_scale")
        st.download_button("Noise measurements (CSV)", exports.table_csv_bytes(
            [{"batch_size": b, "mean_sq_norm": m, "sem": s, "predicted": p} for b, m, s, p in
             zip(noise["batch_sizes"], noise["mean_sq_norm"], noise["sem"], noise["predicted"])]),
            "noise.csv", mime="text/csv", on_click="ignore", key="noise_dl")
