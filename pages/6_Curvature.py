"""Curvature page: the Hessian at a trained run: top eigenvalues with residuals, trace with its standard
error, SLQ spectral density (re-smoothed without recomputing), conditioning, per-layer blocks, sharpness
during training, and, for tiny models, every estimator against the exact spectrum."""

import streamlit as st

from ui import analysis, exports, figures
from ui.common import cost_caption, guide_link, show_error
from ui.state import init_page

init_page("Curvature", icon="🌀")
st.session_state["_renders_curvature"] = st.session_state.get("_renders_curvature", 0) + 1
st.title("Curvature: the Hessian spectrum")
st.caption("Hessian-vector products on a fixed data subset in eval mode; Lanczos with full "
           "reorthogonalisation, Hutch++ / Hutchinson traces with standard errors, stochastic Lanczos quadrature.")
g1, g2, g3 = st.columns(3)
with g1:
    guide_link("lanczos", "Guide: Lanczos and ghost eigenvalues")
with g2:
    guide_link("hutchinson", "Guide: trace estimators")
with g3:
    guide_link("spectral-density", "Guide: spectral density")

run, info = analysis.picked_run()
tiny = info["num_params"] <= 5000

c1, c2, c3, c4 = st.columns(4)
top_k = c1.slider("Top-k eigenvalues", 1, 20, 5, key="curv_k")
samples_opt = c2.select_slider("Examples", [64, 128, 256, 512, 1024, "all"], value=512, key="curv_samples")
split = c3.radio("Data", ["train", "test"], horizontal=True, key="curv_split")
probes = c4.select_slider("Trace probes (HVPs)", [5, 10, 20, 30, 50, 100, 200], value=30, key="curv_probes")
c5, c6, c7, c8 = st.columns(4)
density = c5.toggle("Spectral density", value=True, key="curv_density")
d_probes = c6.slider("Density probes", 1, 10, 3, key="curv_dprobes", disabled=not density)
d_steps = c7.slider("Lanczos steps per probe", 10, 120, 40, 5, key="curv_dsteps", disabled=not density)
per_layer = c8.toggle("Per-layer blocks", value=True, key="curv_layers")
exact = st.toggle(f"Exact spectrum too (dense float64 Hessian; {info['num_params']} parameters)", value=tiny,
                  key=f"curv_exact_{tiny}", disabled=not tiny,
                  help="Only for models with at most 5000 parameters (e.g. the shipped moons-tiny).")
samples = None if samples_opt == "all" else int(samples_opt)
settings = {"top_k": int(top_k), "trace": True, "trace_probes": int(probes), "density": bool(density),
            "density_probes": int(d_probes), "lanczos_steps": int(d_steps), "per_layer": bool(per_layer),
            "samples": samples, "split": split, "seed": 0, "exact": bool(exact and tiny)}
hvps = 3 * top_k + 30 + probes + (d_probes * d_steps if density else 0) + (probes * 6 if per_layer else 0)
cost_caption(analysis.cost_string(run, info["weights_hash"], samples, hvps=hvps))

with st.expander("Sharpness during training (recorded by Train)", expanded=True):
    sharp = analysis.run_meta(run).get("sharpness") or []
    if sharp:
        sh_fig = figures.sharpness_figure([r["step"] for r in sharp], [r["lambda_max"] for r in sharp], info["lr"])
        st.plotly_chart(sh_fig, key="curv_sharpness")
        st.caption("Gradient descent with learning rate lr is stable along a direction only while its curvature "
                   "stays below 2/lr (edge of stability, Cohen et al. 2021).")
        if any(r.get("preconditioned_lambda_max") is not None for r in sharp):
            pre = [r for r in sharp if r.get("preconditioned_lambda_max") is not None]
            pfig = figures.sharpness_figure([r["step"] for r in pre], [r["preconditioned_lambda_max"] for r in pre], None)
            thr = pre[-1].get("preconditioned_threshold")
            if thr:
                pfig.add_hline(y=float(thr), line={"dash": "dash", "color": "#d62728"},
                               annotation_text=f"adaptive threshold {float(thr):.3g}")
            pfig.update_layout(title={"text": "Preconditioned sharpness (Adam): the threshold that applies"})
            st.plotly_chart(pfig, key="curv_sharpness_pre")
            st.caption("For Adam-type optimizers 2/lr does not apply to the raw Hessian; the preconditioned "
                       "sharpness is compared with its own threshold (Cohen et al. 2022).")
    else:
        st.info("This run did not track sharpness. On the **Train** page, set *Measure sharpness every k steps* "
                "(sharpness_every > 0) to record lambda_max during training and compare it with 2/lr here.")

cached = analysis.has_result("hessian", run, info["weights_hash"], **settings)
if not cached and not st.button("Compute", type="primary", key="curv_compute"):
    st.info("Press **Compute** to analyse the Hessian with these settings (results are cached).")
    st.stop()
try:
    with st.status("Analysing the Hessian...", expanded=False) as status:
        bar = st.progress(0.0)
        res = analysis.cached_hessian(run, info["weights_hash"], **settings,
                                      progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
        status.update(label=f"Hessian analysed: {res['matvecs']} HVPs in {res['seconds']:.1f} s", state="complete")
except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
    show_error(e)
    st.stop()

st.caption(f"Page run #{st.session_state['_renders_curvature']} · Hessian computations this session: "
           f"{analysis.COMPUTE_COUNT['hessian']} · {res['settings'].get('examples')} examples · "
           f"HVP mode {res['settings'].get('hvp_mode')}")
cond = res["condition"]
tr = res.get("trace") or {}
m1, m2, m3, m4 = st.columns(4)
m1.metric("lambda_max", f"{res['eigenvalues'][0]:.4g}", help="Largest Hessian eigenvalue (sharpness).")
m2.metric("trace", f"{tr.get('mean', float('nan')):.4g}",
          help=f"{tr.get('method')} with {tr.get('matvecs')} HVPs")
m2.caption(f"+/- {tr.get('stderr') or 0:.2g} (standard error, {tr.get('method')})")
ratio = cond.get("ratio")
m3.metric("condition number", f"{ratio:.3g}" if ratio else "n/a",
          help=f"lambda_max / smallest positive eigenvalue, from the {cond.get('source')} spectrum")
m4.metric("lambda_min", f"{cond.get('lambda_min', float('nan')):.3g}")
if cond.get("has_negative"):
    st.warning(f"Negative curvature: lambda_min = {cond['lambda_min']:.3g}, carrying "
               f"{100 * cond.get('negative_mass', 0):.1f}% of the spectrum's |lambda| mass. The point is not a "
               "strict minimum along those directions (a saddle or an unconverged run).")
if not res["converged"]:
    st.warning("Lanczos did not reach its tolerance within the iteration budget: trust the residuals below.")

st.subheader("Top eigenvalues")
spec_fig = figures.spectrum_figure(res["eigenvalues"], res["residuals"], res.get("exact_eigenvalues"))
st.plotly_chart(spec_fig, key="curv_spectrum")
eig_rows = [{"i": i + 1, "eigenvalue": v, "residual ||Hv - lambda v||": r,
             **({"exact": res["exact_eigenvalues"][i]} if res.get("exact_eigenvalues") else {})}
            for i, (v, r) in enumerate(zip(res["eigenvalues"], res["residuals"]))]
st.dataframe(eig_rows, hide_index=True)
e1, e2, e3 = st.columns(3)
e1.download_button("Eigenvalues (CSV)", exports.table_csv_bytes(eig_rows), "eigenvalues.csv", mime="text/csv",
                   on_click="ignore", key="curv_dl_eig")
e2.download_button("Full result (JSON)", exports.json_bytes(res), "hessian.json", mime="application/json",
                   on_click="ignore", key="curv_dl_json")
e3.download_button("Spectrum (HTML)", lambda: exports.figure_html_bytes(spec_fig, title="Hessian spectrum"),
                   "spectrum.html", mime="text/html", on_click="ignore", key="curv_dl_spec_html")


@st.fragment
def density_view(dens: dict, exact_eigs: list | None) -> None:
    """Smoothing width and log scale only re-smooth the stored Ritz nodes: no new HVPs."""
    st.session_state["_fragment_density"] = st.session_state.get("_fragment_density", 0) + 1
    nodes = [v for r in dens["ritz_values"] for v in r]
    width = (max(nodes) - min(nodes)) or 1.0
    f1, f2 = st.columns([3, 1])
    rel = f1.slider("Smoothing width (fraction of the spectrum's range)", 0.001, 0.1, 0.01, 0.001,
                    format="%.3f", key="curv_sigma")
    log = f2.toggle("Log scale", value=True, key="curv_dlog", help="Shows outlier eigenvalues next to the bulk.")
    grid, dvals = analysis.resmooth_density(dens, rel * width)
    fig = figures.density_figure(grid, dvals, log=log, exact=exact_eigs, sigma=rel * width)
    st.plotly_chart(fig, key="curv_density_fig")
    st.caption(f"Density redraws: {st.session_state['_fragment_density']} · {dens['matvecs']} HVPs, computed once")
    x1, x2 = st.columns(2)
    x1.download_button("Density (CSV)", exports.table_csv_bytes({"eigenvalue": grid, "density": dvals}),
                       "density.csv", mime="text/csv", on_click="ignore", key="curv_dl_density")
    x2.download_button("Density (HTML)", lambda: exports.figure_html_bytes(fig, title="Spectral density"),
                       "density.html", mime="text/html", on_click="ignore", key="curv_dl_density_html")


if res.get("density"):
    st.subheader("Spectral density")
    density_view(res["density"], res.get("exact_eigenvalues"))

if res.get("per_layer"):
    st.subheader("Per-layer blocks")
    layer_rows = [{"layer": d["name"], "parameters": d["numel"], "lambda_max": d["lambda_max"], "trace": d["trace"],
                   "trace s.e.": d["trace_stderr"], "trace method": d["trace_method"]} for d in res["per_layer"]]
    t1, t2 = st.columns([1, 1])
    t1.dataframe(layer_rows, hide_index=True)
    t1.download_button("Per-layer table (CSV)", exports.table_csv_bytes(layer_rows), "per_layer.csv",
                       mime="text/csv", on_click="ignore", key="curv_dl_layers")
    t2.plotly_chart(figures.layer_heatmap([r["layer"] for r in layer_rows], ["lambda_max", "trace"],
                                          [[r["lambda_max"], r["trace"]] for r in layer_rows]), key="curv_layer_map")

st.subheader("How far can you trust the estimates?")
study_key = ("study", run, info["weights_hash"], samples, split)
if st.session_state.get("_curv_study") != study_key:
    label = "Compare the estimators with the exact spectrum" if tiny else "Show estimator convergence"
    if st.button(label, key="curv_study_btn"):
        st.session_state["_curv_study"] = study_key
        st.rerun()
else:
    try:
        study = analysis.cached_estimator_study(run, info["weights_hash"], samples=samples, split=split,
                                                lanczos_steps=min(60, info["num_params"]), probes=100)
    except Exception as e:  # noqa: BLE001
        show_error(e)
        study = None
    if study:
        s1, s2 = st.columns(2)
        s1.plotly_chart(figures.ritz_convergence_figure(study["ritz_history"], study["exact_eigenvalues"]),
                        key="curv_ritz")
        s1.caption("Each column: the Ritz values after m Lanczos steps (m HVPs). Dotted lines: exact eigenvalues. "
                   "With full reorthogonalisation the top Ritz values settle on distinct eigenvalues (no ghosts).")
        s2.plotly_chart(figures.running_mean_figure(study["hutchinson"], study["exact_trace"],
                                                    title="Hutchinson trace: running mean +/- 1.96 s.e."),
                        key="curv_hutch")
        s2.caption("Stop on a fixed budget with a standard error, never on 'the mean stopped moving'.")
        s2.download_button("Estimator study (JSON)", exports.json_bytes(study), "estimator_study.json",
                           mime="application/json", on_click="ignore", key="curv_dl_study")
        if study["exact_eigenvalues"]:
            ex = study["exact_eigenvalues"]
            # a Ritz value with residual r lies within r of an eigenvalue of the float32 operator, which
            # differs from the float64 dense Hessian by float32 rounding (~1e-6 lambda_max)
            tol = 1e-6 * max(abs(e) for e in ex)
            ok = [min(abs(v - e) for e in ex) <= r + tol for v, r in zip(res["eigenvalues"], res["residuals"])]
            st.success(f"{sum(ok)}/{len(ok)} Lanczos eigenvalues lie within their residual (+ float32 rounding) "
                       "of an exact eigenvalue; "
                       f"exact trace {study['exact_trace']:.5g} vs estimate {tr.get('mean', float('nan')):.5g} "
                       f"+/- {tr.get('stderr') or 0:.2g}.")

st.subheader("Sample budget: how estimates stabilise")
budget = st.select_slider("Largest data subset", [64, 128, 256, 512, 1024], value=256, key="curv_budget")
budgets = tuple(b for b in (64, 128, 256, 512, 1024) if b <= budget)
bkey = ("budget", run, info["weights_hash"], budgets, split)
if st.session_state.get("_curv_budget") == bkey or st.button("Estimate on growing subsets (3 data seeds each)",
                                                             key="curv_budget_btn"):
    st.session_state["_curv_budget"] = bkey
    bbar = st.progress(0.0)
    try:
        bud = analysis.cached_sample_budget(run, info["weights_hash"], budgets, (0, 1, 2), split,
                                            progress=lambda f, m: bbar.progress(min(max(f, 0.0), 1.0), text=m))
    except Exception as e:  # noqa: BLE001
        show_error(e)
        bud = None
    bbar.empty()
    if bud:
        b1, b2 = st.columns(2)
        b1.plotly_chart(figures.budget_figure(bud["rows"], "lambda_max"), key="curv_budget_lam")
        b2.plotly_chart(figures.budget_figure(bud["rows"], "trace"), key="curv_budget_tr")
        b1.download_button("Budget study (CSV)", exports.table_csv_bytes(bud["rows"]), "sample_budget.csv",
                           mime="text/csv", on_click="ignore", key="curv_dl_budget")
