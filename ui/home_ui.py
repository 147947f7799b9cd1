"""The home page: the shipped runs at a glance (and the SGD vs SAM vs Adam demo once the engines land)."""

from __future__ import annotations

import streamlit as st

from .cache import list_runs_cached


def render_runs_overview() -> None:
    """Metric cards for the shipped runs (test accuracy and generalisation gap)."""
    rows = [r for r in list_runs_cached() if r["source"] == "shipped"] or list_runs_cached()
    if not rows:
        st.info("No runs yet. Start on the **Train** page (a few seconds on digits) or import a checkpoint "
                "on the **Probe checkpoint** page.")
        return
    cols = st.columns(min(len(rows), 4))
    for i, r in enumerate(rows):
        with cols[i % len(cols)]:
            acc = r.get("test_acc")
            st.metric(r["name"], f"{acc:.1%}" if isinstance(acc, (int, float)) else "n/a",
                      help="test accuracy")
            gap = r.get("acc_gap")
            if isinstance(gap, (int, float)):
                st.caption(f"{r['optimizer']} · train-test accuracy gap {gap:+.1%}")


def render_home() -> None:
    """Draw the home page."""
    st.title("Landscape Explorer")
    st.write("Where does an optimizer land, and how sharp is it there? Train small networks with SGD, "
             "Adam and SAM, then look at the loss surface around the minimum, its curvature and the path "
             "that led there.")
    render_runs_overview()
