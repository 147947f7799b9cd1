"""Train page: pick data, model and optimizer, watch the curves live, save the run to the workspace."""

import streamlit as st

from ui import grokking_ui
from ui.state import init_page
from ui.training_ui import render_train_page

init_page("Train", icon=":material/fitness_center:")
st.title("Train a model")
st.write("Choose the data, the network and the optimizer. Training runs here with live curves; the result "
         "is saved to your workspace and becomes the active run for the analysis pages.")
grokking_ui.lab()
render_train_page()
