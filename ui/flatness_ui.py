"""Flatness-and-noise page widgets and views: perturbation profiles of several runs with CIs, epsilon- and
adaptive sharpness, the rescaling demonstration, and the gradient noise scale against batch size."""

from __future__ import annotations

import streamlit as st

from landscape_core.analyses.flatness import FlatnessResult
from landscape_core.noise import NoiseSweep

from . import analysis, exports, figures
from .analysis import FlatnessSettings, InvarianceSettings, NoiseSettings
from .cache import list_runs_cached
from .common import run_picker, show_error
from .page import compute
from .state import count

GUIDES = (("flatness", "Guide: flatness measures and their pitfalls"),
          ("gradient-noise", "Guide: the gradient noise scale"))


def picked_runs() -> tuple[str, dict[str, dict]]:
    """The main run and the runs to compare with, each with its summary (main run first)."""
    run = run_picker()
    if run is None:
        st.stop()
    labels = {r["path"]: r["name"] for r in list_runs_cached() if r["path"] != run}
    others = st.multiselect("Compare with", list(labels), format_func=labels.get, max_selections=4, key="flat_others")
    try:
        infos = {p: analysis.run_summary(p) for p in [run, *others]}
    except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
        show_error(e)
        st.stop()
    analysis.health_banner(list(infos.values()))
    return run, infos


def flatness_section(infos: dict[str, dict]) -> None:
    """Settings, the Measure button and the profiles / measures of every picked run."""
    st.header("Flatness of the minimum")
    c1, c2, c3, c4 = st.columns(4)
    samples = int(c1.select_slider("Examples", [128, 256, 512, 1024], value=256, key="flat_samples"))
    n_dirs = c2.slider("Random directions per radius", 3, 50, 10, key="flat_dirs")
    rho = c3.select_slider("Adaptive-sharpness radius rho", [0.01, 0.02, 0.05, 0.1, 0.2], value=0.05, key="flat_rho")
    eps = c4.select_slider("epsilon (Keskar box)", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=1e-3, key="flat_eps")
    settings = FlatnessSettings(samples=samples, n_directions=int(n_dirs), rho=float(rho), epsilon=float(eps))
    runs = tuple((p, i["weights_hash"]) for p, i in infos.items())

    def measure(progress) -> dict[str, FlatnessResult]:
        n = len(runs)
        return {infos[p]["name"]: analysis.cached_flatness(
            p, wh, settings, lambda f, m, k=k: progress((k + f) / n, m)) for k, (p, wh) in enumerate(runs)}

    flat = compute("flatness", (runs, settings), measure, button="Measure flatness", widget_key="flat_compute",
                   ready=all(analysis.has_result("flatness", p, wh, settings) for p, wh in runs), label="flatness")
    if flat:
        flatness_view(flat)


@st.fragment
def flatness_view(flat: dict[str, FlatnessResult]) -> None:
    """Scale toggle and downloads of the perturbation profiles: reruns only this block."""
    count("fragment:flatness")
    log = st.toggle("Log scale", value=False, key="flat_log")
    fig = figures.flatness_stem_figure({name: r.profile for name, r in flat.items()}, log=log)
    st.plotly_chart(fig, key="flat_stem")
    st.caption("Radius r moves every filter by r times its own norm (filter-normalised directions); bars: 95% "
               "t-intervals over directions.")
    table = [{"run": name, "loss": r.loss, "epsilon-sharpness (%)": r.epsilon_sharpness.value,
              "adaptive sharpness": r.adaptive_sharpness.value, "basin radius (mean)": r.basin.mean,
              "basin radius CI": f"[{r.basin.ci_low:.3g}, {r.basin.ci_high:.3g}]",
              "censored directions": int(sum(r.basin.censored))} for name, r in flat.items()]
    st.dataframe(table, hide_index=True)
    prof_rows = [{"run": name, "radius": rr, "mean_increase": m, "ci_low": lo, "ci_high": hi}
                 for name, r in flat.items()
                 for rr, m, lo, hi in zip(r.profile.radii, r.profile.mean_increase, r.profile.ci_low, r.profile.ci_high)]
    d1, d2, d3 = st.columns(3)
    d1.download_button("Measures (CSV)", exports.table_csv_bytes(table), "flatness.csv", mime="text/csv",
                       on_click="ignore", key="flat_dl_csv")
    d2.download_button("Profiles (CSV)", exports.table_csv_bytes(prof_rows), "profiles.csv", mime="text/csv",
                       on_click="ignore", key="flat_dl_prof")
    d3.download_button("Stem plot (HTML)", lambda: exports.figure_html_bytes(fig, title="flatness"), "flatness.html",
                       mime="text/html", on_click="ignore", key="flat_dl_html")


def invariance_section(run: str, info: dict) -> None:
    """Each measure before and after a function-preserving rescaling (Dinh et al. 2017)."""
    st.header("Which measures survive a rescaling?")
    st.caption("Scaling one ReLU layer by c and the next by 1/c leaves the network's function unchanged (Dinh et al. "
               "2017). A measure that changes cannot be a property of the function.")
    c = st.select_slider("Rescale factor c", [2.0, 5.0, 10.0, 100.0], value=10.0, key="flat_c")
    settings = InvarianceSettings(c=float(c))
    wh = info["weights_hash"]
    inv = compute("invariance", (run, wh, tuple(sorted(settings.kwargs().items()))),
                  lambda p: analysis.cached_invariance(run, wh, settings),
                  button="Run the rescaling demonstration", widget_key="flat_inv_btn")
    if inv is None:
        return
    if inv.get("relu_substitute"):
        st.info("This run's activation is not positively homogeneous (e.g. tanh), so no rescaling preserves "
                "its function. The demonstration uses the same architecture and weights with ReLU instead.")
    meas = inv["measures"]
    st.plotly_chart(figures.invariance_figure([m["name"] for m in meas], [m["before"] for m in meas],
                                              [m["after"] for m in meas]), key="flat_invariance")
    rows = [{"measure": m["name"], "before": m["before"], "after": m["after"], "relative change": m["relative_change"],
             "invariant": "yes" if m["invariant"] else "NO", "why": m["note"]} for m in meas]
    st.dataframe(rows, hide_index=True)
    st.caption(f"Largest change of the network's output after rescaling: {inv['max_output_change']:.2e} "
               f"(loss {inv['loss']['before']:.6g} -> {inv['loss']['after']:.6g}).")
    st.download_button("Rescaling table (CSV)", exports.table_csv_bytes(rows), "invariance.csv",
                       mime="text/csv", on_click="ignore", key="flat_dl_inv")


def noise_section(run: str, info: dict) -> None:
    """The gradient noise scale B_simple from squared minibatch-gradient norms at several batch sizes."""
    st.header("Gradient noise scale")
    st.caption("E|G_B|^2 = |G|^2 + tr(Sigma)/B: B_simple = tr(Sigma)/|G|^2 is the batch size where the gradient's "
               "noise matches its signal (McCandlish et al. 2018).")
    n1, n2, n3 = st.columns(3)
    sizes = n1.multiselect("Batch sizes", [8, 16, 32, 64, 128, 256, 512], default=[16, 32, 64, 128, 256],
                           key="noise_sizes")
    n_batches = n2.slider("Draws per batch size", 2, 50, 10, key="noise_draws")
    samples = int(n3.select_slider("Examples", [256, 512, 1024], value=512, key="noise_samples"))
    if len(sizes) < 2:
        st.info("Pick at least two batch sizes.")
        return
    settings = NoiseSettings(batch_sizes=tuple(sorted(int(b) for b in sizes)), n_batches=int(n_batches),
                             samples=samples)
    wh = info["weights_hash"]
    noise = compute("noise", (run, wh, settings), lambda p: analysis.cached_noise(run, wh, settings, p),
                    button="Measure the noise scale", widget_key="noise_btn", label="gradient noise")
    if noise is not None:
        noise_view(noise)


def noise_view(noise: NoiseSweep) -> None:
    """B_simple with its bootstrap interval, the fitted norms and the per-size estimates."""
    lo, hi = noise.ci_low, noise.ci_high
    st.metric("B_simple", f"{noise.b_simple:.4g}" if noise.b_simple is not None else "n/a",
              help="tr(Sigma) / |G|^2 from the weighted fit over all batch sizes")
    st.caption(f"95% bootstrap interval [{lo if lo is None else f'{lo:.3g}'}, {hi if hi is None else f'{hi:.3g}'}]"
               f" on {noise.n_examples} examples")
    q1, q2 = st.columns(2)
    q1.plotly_chart(figures.noise_norms_figure(noise.batch_sizes, noise.mean_sq_norm, noise.sem, noise.predicted),
                    key="noise_norms")
    ps = noise.per_size
    q2.plotly_chart(figures.noise_figure([r["b_small"] for r in ps], [r["b_simple"] for r in ps], b_simple=noise.b_simple,
                                         ylabel=f"B_simple from (B, {ps[0]['b_big'] if ps else ''})"), key="noise_scale")
    st.download_button("Noise measurements (CSV)", exports.table_csv_bytes(
        [{"batch_size": b, "mean_sq_norm": m, "sem": s, "predicted": p} for b, m, s, p in
         zip(noise.batch_sizes, noise.mean_sq_norm, noise.sem, noise.predicted)]),
        "noise.csv", mime="text/csv", on_click="ignore", key="noise_dl")
