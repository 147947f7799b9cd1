"""Mode connectivity page: the loss along the straight line and along a trained quadratic Bezier curve
between two runs, their barriers, and the loss over the plane through both runs and the control point."""

import streamlit as st

from ui import analysis, connectivity_ui
from ui.common import cost_caption
from ui.page import compute, header

header("connectivity", "Mode connectivity", icon=":material/link:", caption=connectivity_ui.CAPTION,
       guides=[("mode-connectivity", "Guide: mode connectivity and barriers")])
run_a, ia, run_b, ib = connectivity_ui.picked_runs()
linear, bezier = connectivity_ui.settings_widgets()
cost_caption(analysis.cost_string(run_a, ia["weights_hash"], bezier))
pair = (run_a, ia["weights_hash"], run_b, ib["weights_hash"])
lin = compute("connectivity", (*pair, linear), lambda p: analysis.cached_connectivity(*pair, linear, p)[0],
              auto=True, widget_key="conn_linear", label="linear path")
if lin is None:
    st.stop()
bez = compute("connectivity", (*pair, bezier), lambda p: analysis.cached_connectivity(*pair, bezier, p),
              button="Train the Bezier curve", widget_key="conn_bezier_btn", label="training the Bezier curve")
connectivity_ui.barriers(lin, bez[0] if bez else None, ia["name"], ib["name"])
connectivity_ui.paths_view(lin, bez[0] if bez else None)
if bez is not None:
    connectivity_ui.plane_section(bez[0], bez[1], (ia["name"], ib["name"]))
