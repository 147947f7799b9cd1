"""Trajectory page: the training path projected on the PCA plane of theta_i - theta_final, over the loss
surface of that plane, with each point's off-plane residual and its true loss against the surface value."""

from ui import analysis, trajectory_ui
from ui.page import compute, header

header("trajectory", "Training trajectory", icon=":material/explore:", caption=trajectory_ui.CAPTION, tab="Trajectory",
       guides=[("pca-trajectories", "Guide: what PCA trajectories show, and what they hide")])
run, info = analysis.picked_run()
trajectory_ui.require_trajectory(info)
settings = trajectory_ui.settings_widgets()
view = compute("trajectory", (run, info["weights_hash"], settings),
               lambda p: trajectory_ui.compute_view(run, info, settings, p), auto=True,
               label="projecting the trajectory")
if view is not None:
    trajectory_ui.summary(view)
    trajectory_ui.view(view)
