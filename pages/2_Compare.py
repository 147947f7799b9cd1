"""Compare optimizers: SGD vs SAM vs Adam from the same start and data order, metrics, curves, shared plane."""

import streamlit as st

from ui.state import init_page
from ui.training_ui import render_compare_page

init_page("Compare optimizers", icon=":material/balance:")
st.title("Compare optimizers")
st.write("Train several optimizers from **the same initial weights on the same mini-batch order**, then "
         "compare where they end up: accuracy, generalisation gap, sharpness and the loss surface they share.")
render_compare_page()
