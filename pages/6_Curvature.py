"""Curvature page: the Hessian at a trained run: top eigenvalues with residuals, trace with its standard
error, SLQ spectral density (re-smoothed without recomputing), conditioning, per-layer blocks, sharpness
during training, and, for tiny models, every estimator against the exact spectrum."""

from ui import analysis, curvature_ui, operators_ui
from ui.common import cost_caption
from ui.page import compute, header

header("curvature", "Curvature: Hessian, GGN and Fisher spectra", icon=":material/blur_circular:", caption=curvature_ui.CAPTION, tab="Curvature",
       guides=curvature_ui.GUIDES)
run, info = analysis.picked_run()
settings = operators_ui.with_operator(curvature_ui.settings_widgets(info))
cost_caption(analysis.cost_string(run, info["weights_hash"], settings))
curvature_ui.sharpness_history(run, info)
res = compute("hessian", (run, info["weights_hash"], settings),
              lambda p: analysis.cached_hessian(run, info["weights_hash"], settings, p),
              prompt="Press **Compute** to analyse the chosen curvature matrix with these settings (results are cached).",
              widget_key="curv_compute", label="analysing the curvature")
if res is not None:
    curvature_ui.results(res)
    if settings.operator == "hessian":  # the estimator study is of the Hessian
        curvature_ui.estimator_study(run, info, settings, res)
    curvature_ui.sample_budget(run, info, settings)
operators_ui.overlay(run, info, settings)
