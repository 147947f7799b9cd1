"""Guide: the ideas behind every page in plain words, with formulas and how to read each plot."""

import streamlit as st

from ui.common import GUIDE_SECTION_PARAM
from ui.guide_text import SECTIONS, scroll_to_section
from ui.state import init_page

init_page("Guide", icon=":material/menu_book:")
st.title("Guide")
st.write("The ideas behind the app in plain words. Each section has its own link; the other pages point "
         "here next to their plots.")
st.markdown("\n".join(f"- [{title}](#{anchor})" for anchor, title, _ in SECTIONS))
for anchor, title, body in SECTIONS:
    st.header(title, anchor=anchor)
    st.markdown(body)
scroll_to_section(st.query_params.get(GUIDE_SECTION_PARAM))
