"""Landscape Explorer: home page (the SGD vs SAM vs Adam demo on the shipped runs)."""

from ui.home_ui import render_home
from ui.state import init_page

init_page("Home")
render_home()
