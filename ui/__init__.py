"""Streamlit helpers shared by the pages: state, caches, widgets, figures and per-page views."""
