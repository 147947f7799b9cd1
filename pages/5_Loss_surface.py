"""Loss surface page: 1-D, contour and 3-D views of the loss (or accuracy) around a trained run, in random
filter-normalised, PCA, Hessian, gradient or run-to-run directions, with downloads."""

from ui import analysis, surface_ui
from ui.common import cost_caption
from ui.page import compute, header

header("surface", "Loss surface", icon=":material/landscape:", caption=surface_ui.CAPTION,
       guides=[("filter-normalisation", "Guide: why directions are filter-normalised (Li et al. 2018)")])
run, info = analysis.picked_run()
settings, compare = surface_ui.settings_widgets(run, info)
cost_caption(analysis.cost_string(run, info["weights_hash"], settings, compare=len(compare)))
surfaces = compute(
    "surface", (run, info["weights_hash"], settings, *((compare,) if compare else ())),
    lambda p: surface_ui.compute_surfaces(run, info, settings, compare, p),
    auto=settings.n_points <= surface_ui.AUTO_POINTS, widget_key="surf_compute", label="computing surface",
    prompt=f"{settings.n_points} grid points: press Compute (smaller grids compute automatically).")
if surfaces is not None:
    surface_ui.summary(surfaces[info["name"]])
    surface_ui.view(surfaces, info["name"])
