"""Runs page: every shipped and workspace run with settings and metrics; rename, delete, download, activate."""

import streamlit as st

from ui.runs_ui import render_runs_page
from ui.state import init_page

init_page("Runs", icon=":material/folder_open:")
st.title("Runs")
st.write("Shipped demo runs and your own runs. Pick the **active run** that the analysis pages open.")
render_runs_page()
