"""Experiments page, Report tab: pick runs -> one self-contained HTML report (download) plus CSV tables."""

from __future__ import annotations

from typing import Any

import streamlit as st

from landscape_core.report import SECTIONS, build_report, csv_text

from .cache import list_runs_cached
from .common import show_error
from .state import get_active_run


def report_key(paths: list[str], hashes: list[str], settings: dict) -> str:
    """What a built report depends on: the runs (by weights hash) and the settings."""
    return repr((tuple(paths), tuple(hashes), tuple(sorted(settings.items()))))


def build_report_ui(paths: list[str], settings: dict[str, Any]) -> dict | None:
    """Build the report with a progress bar; returns ``{"html", "tables", "sections", "notes", "seconds"}``."""
    slot = st.empty()  # the progress bar while it builds, then the one-line summary
    bar = slot.progress(0.0, text="building report")

    def cb(frac: float, msg: str) -> None:
        bar.progress(min(max(frac, 0.0), 1.0), text=msg[:140])

    try:
        rep = build_report(paths, progress=cb, **settings)
    except (ValueError, RuntimeError, OSError) as e:
        slot.empty()
        show_error(e)
        return None
    slot.caption(f"report ready ({rep.seconds:.1f} s, {len(rep.html) / 1e6:.2f} MB)")
    return {"html": rep.html, "tables": rep.tables, "sections": list(rep.sections), "notes": rep.notes,
            "seconds": rep.seconds}


def report_ui() -> None:
    """The Report tab."""
    st.markdown("One HTML file per report: settings to reproduce every run (the exact CLI command), metrics, "
                "learning curves, loss surfaces, Hessian spectra, trajectories and mode connectivity. It works "
                "offline and makes no network requests; every table is also a CSV.")
    rows = list_runs_cached()
    if not rows:
        st.info("No runs yet: train one on the Train page first.")
        return
    paths = [r["path"] for r in rows]
    labels = {r["path"]: f"{r['name']} ({r['source']})" for r in rows}
    active = get_active_run()
    default = [p for p in paths if p == active] or paths[:1]
    chosen = st.multiselect("Runs", paths, default=default, format_func=labels.get, key="rep_runs")
    c1, c2, c3 = st.columns(3)
    sections = c1.multiselect("Sections", list(SECTIONS), default=list(SECTIONS), format_func=SECTIONS.get,
                              key="rep_sections")
    samples = c2.select_slider("Examples for analyses", (128, 256, 512, 1024), value=512, key="rep_samples")
    grid = c3.select_slider("Surface grid", (11, 15, 21, 31), value=21, key="rep_grid")
    if not chosen:
        st.info("Pick one or more runs.")
        return
    if "connectivity" in sections and len(chosen) < 2:
        st.caption("Mode connectivity needs two or more runs; it is left out for a single run.")
    settings = {"sections": tuple(sections), "samples": int(samples), "grid": int(grid)}
    hashes = [next((r.get("weights_hash") or "") for r in rows if r["path"] == p) for p in chosen]
    key = report_key(chosen, hashes, settings)
    if st.button("Build report", type="primary", key="rep_build"):
        built = build_report_ui(chosen, settings)
        if built is not None:
            st.session_state["report"] = {"key": key, **built}
    rep = st.session_state.get("report")
    if not rep:
        return
    if rep["key"] != key:
        st.caption("The selection changed since this report was built: build it again to include the changes.")
    st.download_button("Download HTML report", rep["html"].encode("utf-8"), file_name="landscape-report.html",
                       mime="text/html", type="primary", key="rep_download")
    for section, notes in rep["notes"].items():
        for n in notes:
            st.warning(f"{SECTIONS.get(section, section)}: {n}")
    st.markdown("**Tables as CSV**")
    cols = st.columns(4)
    for i, (name, table) in enumerate(sorted(rep["tables"].items())):
        if table:
            cols[i % 4].download_button(f"{name}.csv", csv_text(table), file_name=f"{name}.csv", mime="text/csv",
                                        key=f"rep_csv_{name}")
