"""Curvature page widgets and views: Hessian settings, sharpness recorded during training, the spectrum with
residuals, the re-smoothable spectral density, per-layer blocks, the estimator study and the sample budget."""

from __future__ import annotations

import streamlit as st

from landscape_core.analyses.hessian import CurvatureResult
from landscape_core.analyses.study import check_against_exact
from landscape_core.curvature_operators import OPERATOR_KINDS

from . import analysis, exports, figures
from .analysis import HessianSettings
from .page import compute
from .state import count

CAPTION = ("Hessian-vector products on a fixed data subset in eval mode; Lanczos with full reorthogonalisation, "
           "traces with standard errors (exact Gauss-Newton part + Hutchinson on the rest for plain MLPs, else "
           "Hutch++), stochastic Lanczos quadrature.")
GUIDES = (("lanczos", "Guide: Lanczos and ghost eigenvalues"), ("hutchinson", "Guide: trace estimators"),
          ("spectral-density", "Guide: spectral density"))
TINY_PARAMS = 5000  # models this small also get the exact dense spectrum
BUDGETS = (64, 128, 256, 512, 1024)


def settings_widgets(info: dict) -> HessianSettings:
    """The analysis settings (the exact spectrum only for models with at most ``TINY_PARAMS`` parameters)."""
    tiny = info["num_params"] <= TINY_PARAMS
    c1, c2, c3, c4 = st.columns(4)
    top_k = c1.slider("Top-k eigenvalues", 1, 20, 5, key="curv_k")
    samples = c2.select_slider("Examples", [64, 128, 256, 512, 1024, "all"], value=512, key="curv_samples")
    split = c3.radio("Data", ["train", "test"], horizontal=True, key="curv_split")
    probes = c4.select_slider("Trace probes", [5, 10, 20, 30, 50, 100, 200], value=30, key="curv_probes",
                              help="Probe vectors of the trace estimator: HVPs for Hutch++ / Hutchinson; for a plain MLP "
                                   "probes of H - G on top of the exact Gauss-Newton trace (forward passes, cheaper than HVPs).")
    c5, c6, c7, c8 = st.columns(4)
    density = c5.toggle("Spectral density", value=True, key="curv_density")
    d_probes = c6.slider("Density probes", 1, 10, 3, key="curv_dprobes", disabled=not density)
    d_steps = c7.slider("Lanczos steps per probe", 10, 120, 40, 5, key="curv_dsteps", disabled=not density)
    per_layer = c8.toggle("Per-layer blocks", value=True, key="curv_layers")
    exact = st.toggle(f"Exact spectrum too (dense float64 Hessian; {info['num_params']} parameters)", value=tiny,
                      key=f"curv_exact_{tiny}", disabled=not tiny,
                      help=f"Only for models with at most {TINY_PARAMS} parameters (e.g. the shipped moons-tiny).")
    return HessianSettings(top_k=int(top_k), trace=True, trace_probes=int(probes), density=bool(density),
                           density_probes=int(d_probes), lanczos_steps=int(d_steps), per_layer=bool(per_layer),
                           samples=None if samples == "all" else int(samples), split=split, seed=0,
                           exact=bool(exact and tiny))


def sharpness_history(run: str, info: dict) -> None:
    """lambda_max recorded during training against 2/lr (and the preconditioned sharpness for Adam)."""
    with st.expander("Sharpness during training (recorded by Train)", expanded=True):
        sharp = analysis.run_meta(run).get("sharpness") or []
        if not sharp:
            st.info("This run did not track sharpness. On the **Train** page, set *Measure sharpness every k steps* "
                    "(sharpness_every > 0) to record lambda_max during training and compare it with 2/lr here.")
            return
        st.plotly_chart(figures.sharpness_figure([r["step"] for r in sharp], [r["lambda_max"] for r in sharp],
                                                 info["lr"]), key="curv_sharpness")
        st.caption("Gradient descent with learning rate lr is stable along a direction only while its curvature "
                   "stays below 2/lr (edge of stability, Cohen et al. 2021).")
        pre = [r for r in sharp if r.get("preconditioned_lambda_max") is not None]
        if pre:
            pfig = figures.sharpness_figure([r["step"] for r in pre], [r["preconditioned_lambda_max"] for r in pre], None)
            thr = pre[-1].get("preconditioned_threshold")
            if thr:
                pfig.add_hline(y=float(thr), line={"dash": "dash", "color": "#d62728"},
                               annotation_text=f"adaptive threshold {float(thr):.3g}")
            pfig.update_layout(title={"text": "Preconditioned sharpness (Adam): the threshold that applies"})
            st.plotly_chart(pfig, key="curv_sharpness_pre")
            st.caption("For Adam-type optimizers 2/lr does not apply to the raw Hessian; the preconditioned "
                       "sharpness is compared with its own threshold (Cohen et al. 2022).")


def results(res: CurvatureResult) -> None:
    """Headline numbers, warnings, the spectrum with residuals, the density and the per-layer blocks."""
    cond, tr = res.condition, res.trace or {}
    st.caption(f"{res.matvecs} HVPs in {res.seconds:.1f} s · {res.settings.get('examples')} examples · "
               f"HVP mode {res.settings.get('hvp_mode')}")
    m1, m2, m3, m4 = st.columns(4)
    matrix = OPERATOR_KINDS.get(res.settings.get("operator", "hessian"), "Hessian")
    m1.metric("lambda_max", f"{res.eigenvalues[0]:.4g}", help=f"Largest eigenvalue of the {matrix} (sharpness).")
    m2.metric("trace", f"{tr.get('mean', float('nan')):.4g}", help=(f"exact Gauss-Newton trace + {tr.get('probes')} probes of H - G (forward passes, no HVP)"
                   if tr.get("method") == "ggn-cv" else f"{tr.get('method')} with {tr.get('matvecs')} HVPs"))
    m2.caption(f"+/- {tr.get('stderr') or 0:.2g} (standard error, {tr.get('method')})")
    verdict = res.curvature_verdict()  # the engine decides what may be said about lambda_min
    ratio = verdict["condition"]
    m3.metric("condition number", f"{ratio:.3g}" if ratio else "undefined",
              help=f"lambda_max / lambda_min when lambda_min is clearly positive ({cond.get('source')} spectrum)")
    m4.metric("lambda_min", f"{verdict['lambda_min']:.3g}", help=f"+/- {verdict['residual']:.2g} (Lanczos residual)")
    if verdict["negative"] == "significant":
        st.warning(verdict["note"])
    else:
        st.caption(verdict["note"])
    if not res.converged:
        st.warning("Lanczos did not reach its tolerance within the iteration budget: trust the residuals below.")
    st.subheader("Top eigenvalues")
    spec_fig = figures.spectrum_figure(res.eigenvalues, res.residuals, res.exact_eigenvalues)
    st.plotly_chart(spec_fig, key="curv_spectrum")
    rows = [{"i": i + 1, "eigenvalue": v, "residual ||Hv - lambda v||": r,
             **({"exact": res.exact_eigenvalues[i]} if res.exact_eigenvalues else {})}
            for i, (v, r) in enumerate(zip(res.eigenvalues, res.residuals))]
    st.dataframe(rows, hide_index=True)
    e1, e2, e3 = st.columns(3)
    e1.download_button("Eigenvalues (CSV)", exports.table_csv_bytes(rows), "eigenvalues.csv", mime="text/csv",
                       on_click="ignore", key="curv_dl_eig")
    e2.download_button("Full result (JSON)", exports.json_bytes(res.to_dict()), "hessian.json",
                       mime="application/json", on_click="ignore", key="curv_dl_json")
    e3.download_button("Spectrum (HTML)", lambda: exports.figure_html_bytes(spec_fig, title="Hessian spectrum"),
                       "spectrum.html", mime="text/html", on_click="ignore", key="curv_dl_spec_html")
    if res.density:
        st.subheader("Spectral density")
        density_view(res.density, res.exact_eigenvalues)
    if res.per_layer:
        per_layer(res.per_layer)


@st.fragment
def density_view(dens: dict, exact_eigs: list | None) -> None:
    """Smoothing width and log scale only re-smooth the stored Ritz nodes: no new HVPs."""
    count("fragment:density")
    nodes = [v for r in dens["ritz_values"] for v in r]
    width = (max(nodes) - min(nodes)) or 1.0
    f1, f2 = st.columns([3, 1])
    rel = f1.slider("Smoothing width (fraction of the spectrum's range)", 0.001, 0.1, 0.01, 0.001,
                    format="%.3f", key="curv_sigma")
    log = f2.toggle("Log scale", value=True, key="curv_dlog", help="Shows outlier eigenvalues next to the bulk.")
    grid, dvals = analysis.resmooth_density(dens, rel * width)
    fig = figures.density_figure(grid, dvals, log=log, exact=exact_eigs, sigma=rel * width)
    st.plotly_chart(fig, key="curv_density_fig")
    st.caption(f"{dens['matvecs']} HVPs, computed once: moving these controls re-smooths the stored Ritz values")
    x1, x2 = st.columns(2)
    x1.download_button("Density (CSV)", exports.table_csv_bytes({"eigenvalue": grid, "density": dvals}),
                       "density.csv", mime="text/csv", on_click="ignore", key="curv_dl_density")
    x2.download_button("Density (HTML)", lambda: exports.figure_html_bytes(fig, title="Spectral density"),
                       "density.html", mime="text/html", on_click="ignore", key="curv_dl_density_html")


def per_layer(blocks: list[dict]) -> None:
    """Per-layer lambda_max and trace: a table and a heat map."""
    st.subheader("Per-layer blocks")
    rows = [{"layer": d["name"], "parameters": d["numel"], "lambda_max": d["lambda_max"], "trace": d["trace"],
             "trace s.e.": d["trace_stderr"], "trace method": d["trace_method"]} for d in blocks]
    t1, t2 = st.columns([1, 1])
    t1.dataframe(rows, hide_index=True)
    t1.download_button("Per-layer table (CSV)", exports.table_csv_bytes(rows), "per_layer.csv",
                       mime="text/csv", on_click="ignore", key="curv_dl_layers")
    t2.plotly_chart(figures.layer_heatmap([r["layer"] for r in rows], ["lambda_max", "trace"],
                                          [[r["lambda_max"], r["trace"]] for r in rows]), key="curv_layer_map")


def estimator_study(run: str, info: dict, settings: HessianSettings, res: CurvatureResult) -> None:
    """Ritz values per Lanczos step and the Hutchinson running mean, against the exact spectrum when small."""
    st.subheader("How far can you trust the estimates?")
    tiny = info["num_params"] <= TINY_PARAMS
    wh = info["weights_hash"]
    study = compute(
        "estimators", (run, wh, settings.samples, settings.split),
        lambda p: analysis.cached_estimator_study(run, wh, samples=settings.samples, split=settings.split,
                                                  lanczos_steps=min(60, info["num_params"]), probes=100),
        button="Compare the estimators with the exact spectrum" if tiny else "Show estimator convergence",
        widget_key="curv_study_btn")
    if study is None:
        return
    s1, s2 = st.columns(2)
    s1.plotly_chart(figures.ritz_convergence_figure(study["ritz_history"], study["exact_eigenvalues"]),
                    key="curv_ritz")
    s1.caption("Each column: the Ritz values after m Lanczos steps (m HVPs). Dotted lines: exact eigenvalues. "
               "With full reorthogonalisation the top Ritz values settle on distinct eigenvalues (no ghosts).")
    s2.plotly_chart(figures.running_mean_figure(study["hutchinson"], study["exact_trace"],
                                                title="Hutchinson trace: running mean +/- 1.96 s.e."), key="curv_hutch")
    s2.caption("Stop on a fixed budget with a standard error, never on 'the mean stopped moving'.")
    s2.download_button("Estimator study (JSON)", exports.json_bytes(study), "estimator_study.json",
                       mime="application/json", on_click="ignore", key="curv_dl_study")
    if study["exact_eigenvalues"]:
        ok = check_against_exact(res.eigenvalues, res.residuals, study["exact_eigenvalues"])
        tr = res.trace or {}
        st.success(f"{sum(ok)}/{len(ok)} Lanczos eigenvalues lie within their residual (+ float32 rounding) of an "
                   f"exact eigenvalue; exact trace {study['exact_trace']:.5g} vs estimate "
                   f"{tr.get('mean', float('nan')):.5g} +/- {tr.get('stderr') or 0:.2g}.")


def sample_budget(run: str, info: dict, settings: HessianSettings) -> None:
    """lambda_max and trace on growing data subsets, three data seeds each."""
    st.subheader("Sample budget: how estimates stabilise")
    largest = st.select_slider("Largest data subset", list(BUDGETS), value=256, key="curv_budget")
    budgets = tuple(b for b in BUDGETS if b <= largest)
    wh, seeds = info["weights_hash"], (0, 1, 2)
    bud = compute("sample_budget", (run, wh, budgets, seeds, settings.split),
                  lambda p: analysis.cached_sample_budget(run, wh, budgets, seeds, settings.split, progress=p),
                  button="Estimate on growing subsets (3 data seeds each)", widget_key="curv_budget_btn")
    if bud is None:
        return
    b1, b2 = st.columns(2)
    b1.plotly_chart(figures.budget_figure(bud["rows"], "lambda_max"), key="curv_budget_lam")
    b2.plotly_chart(figures.budget_figure(bud["rows"], "trace"), key="curv_budget_tr")
    b1.download_button("Budget study (CSV)", exports.table_csv_bytes(bud["rows"]), "sample_budget.csv",
                       mime="text/csv", on_click="ignore", key="curv_dl_budget")
