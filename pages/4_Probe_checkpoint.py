"""Probe a checkpoint: upload a run zip or a state dict, check it against an architecture, import it as a run."""

import streamlit as st

from ui.state import init_page
from ui.upload_ui import render_probe_page

init_page("Probe a checkpoint", icon="🔍")
st.title("Probe a checkpoint")
st.write("Bring your own weights: the checkpoint becomes a run in your workspace that every analysis page "
         "can open. Files are checked before anything is loaded, and nothing in them is executed.")
render_probe_page()
