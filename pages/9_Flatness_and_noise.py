"""Flatness and noise page: loss increase under random perturbations for several runs (with CIs),
epsilon-sharpness and adaptive sharpness, which measures survive a function-preserving rescaling, and the
gradient noise scale against batch size."""

from ui import flatness_ui
from ui.page import header

header("flatness", "Flatness and gradient noise", icon=":material/tune:", tab="Flatness and noise", guides=flatness_ui.GUIDES)
run, infos = flatness_ui.picked_runs()
flatness_ui.flatness_section(infos)
flatness_ui.invariance_section(run, infos[run])
flatness_ui.noise_section(run, infos[run])
