"""Experiments page: hyperparameter sweeps (sharpness vs generalization), classic presets, HTML reports."""

import streamlit as st

from ui.experiments_ui import presets_ui, sweep_lab_ui
from ui.report_ui import report_ui
from ui.state import init_page

init_page("Experiments", icon=":material/science:")
st.title("Experiments")
st.write("Sweep hyperparameters and test whether sharpness predicts generalization, run classic optimizer "
         "comparisons in one click, and export self-contained reports.")
sweep_tab, presets_tab, report_tab = st.tabs(["Sweep lab", "Presets", "Report"])
with sweep_tab:
    sweep_lab_ui()
with presets_tab:
    presets_ui()
with report_tab:
    report_ui()
