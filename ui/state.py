"""Session state shared by every page: page setup, the active run, the workspace, presentation mode.

Every page calls :func:`init_page` first. State lives in plain session keys (not widget keys), because
Streamlit drops a widget's state when the user switches to a page that does not render that widget:

- ``"active_run"``: a plain ``str`` path to a run folder (default: the shipped ``checkpoints/digits-sgd``);
- ``"presentation"``: ``bool``, larger type and fewer controls for classes and interviews;
- ``"_count:<name>"``: ``int``, instrumentation counters (:func:`count`): full page runs, fragment redraws
  and computations. Tests read them; they are never drawn on screen.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from landscape_core import runs as _runs

DEFAULT_RUN = "digits-sgd"
#: every page: the main page's sidebar entry reads "Home" (Streamlit names it after ``app.py``, and
#: ``st.navigation`` cannot be used while ``pages/`` exists, DESIGN.md section 5), less empty space on top
_BASE_CSS = """
<style>
[data-testid="stSidebarNavLink"] span[label="app"] p { font-size: 0 !important; }
[data-testid="stSidebarNavLink"] span[label="app"] p::after { content: "Home"; font-size: 0.875rem; }
[data-testid="stMainBlockContainer"] { padding-top: 3rem; }
/* the running indicator's Stop (top right, shown while a script runs: .streamlit toolbarMode "viewer") */
[data-testid="stStatusWidget"] button { color: #c92a2a !important; font-weight: 600; }
/* style sheets and zero-height script frames take no room (each would add a gap between elements) */
[data-testid="stElementContainer"]:has(style), [data-testid="stElementContainer"]:has(iframe[height="0"]) {
  display: none; }
</style>
"""
#: presentation mode: large type, large metric values (larger than normal mode's 2.25rem), full-width
#: Back / Next buttons with large labels, a readable slide counter, little padding below the header
#: (Streamlit's fixed header, 3.75rem, takes clicks over whatever it covers), so one slide fits
#: 1024x768 with the sidebar collapsed)
_PRESENTATION_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
[data-testid="stMainBlockContainer"] { padding-top: 4rem; padding-bottom: 0.5rem; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.3rem; line-height: 1.45; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * { font-size: 3rem !important; line-height: 1.15 !important; }
[data-testid="stMetricLabel"] p { font-size: 1.15rem !important; }
[data-testid="stMain"] button p { font-size: 1.3rem !important; white-space: nowrap; }
[data-testid="stMain"] button { min-height: 3rem; }
[data-testid="stMain"]:focus-visible, [data-testid="stAppViewContainer"]:focus-visible { outline: none; }
.le-slide-count { text-align: center; font-size: 1.3rem; color: #495057; }
h1 { font-size: 2.6rem !important; }
h2 { font-size: 2.1rem !important; padding-top: 0.3rem !important; padding-bottom: 0.4rem !important; }
</style>
"""
#: clicks Streamlit's "Collapse sidebar" button once, when presentation mode is switched on
_COLLAPSE_JS = """
<script>
const b = window.parent.document.querySelector('[data-testid="stSidebarCollapseButton"] button');
if (b && b.getAttribute("aria-expanded") !== "false") b.click();
</script>
"""


#: set to a folder (tests only) to mirror the counters into files there: ``<folder>/<name>`` holds the
#: process-wide count, so a browser test can read them without anything drawn on the page
COUNTERS_ENV = "LANDSCAPE_TEST_COUNTERS"
_PROCESS_COUNTS: Counter = Counter()
_COUNTS_LOCK = threading.Lock()


def count(name: str) -> int:
    """Add one to the instrumentation counter ``name`` and return its value in this session.

    Names in use: ``page:<page>`` (full script runs of an analysis page), ``fragment:<view>`` (reruns of a
    display-only fragment), ``compute:<analysis>`` (cache misses, i.e. real computations). Per session in
    ``st.session_state["_count:<name>"]``; mirrored to a file when :data:`COUNTERS_ENV` is set.
    """
    key = f"_count:{name}"
    value = int(st.session_state.get(key, 0)) + 1
    st.session_state[key] = value
    folder = os.environ.get(COUNTERS_ENV)
    if folder:
        with _COUNTS_LOCK:
            _PROCESS_COUNTS[name] += 1
            out = Path(folder) / name.replace(":", "-")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(str(_PROCESS_COUNTS[name]))
            os.replace(tmp, out)  # a reader never sees a half-written number
    return value


def counted(name: str) -> int:
    """The session's current value of counter ``name`` (0 before the first :func:`count`)."""
    return int(st.session_state.get(f"_count:{name}", 0))


def workspace() -> Path:
    """The user's run folder (``landscape_core.runs.workspace_dir()``), created if missing."""
    p = _runs.workspace_dir()
    p.mkdir(parents=True, exist_ok=True)
    return p


def _is_run(path: str | Path | None) -> bool:
    return bool(path) and (Path(path) / _runs.RUN_JSON).is_file()


def default_run() -> str | None:
    """The shipped ``digits-sgd`` run when present, else ``None``."""
    p = _runs.checkpoints_dir() / DEFAULT_RUN
    return str(p) if _is_run(p) else None


def get_active_run() -> str | None:
    """Path of the run the analysis pages open; falls back to the shipped default when unset or gone."""
    cur = st.session_state.get("active_run")
    if _is_run(cur):
        return str(cur)
    d = default_run()
    st.session_state["active_run"] = d
    return d


def set_active_run(path: str | Path) -> None:
    """Make the run folder at ``path`` the one every analysis page opens."""
    st.session_state["active_run"] = str(path)


_ACTIVE_SLOT = "_sidebar_active_slot"


def refresh_active_run_caption() -> None:
    """(Re)draw the sidebar's "Active run" line; call after :func:`set_active_run` later in the same script
    run (e.g. after training), since the sidebar was drawn first. Marks a diverged / suspect run in red."""
    slot = st.session_state.get(_ACTIVE_SLOT)
    if slot is None:
        return
    active = get_active_run()
    if not active:
        slot.caption("No active run yet: train one or probe a checkpoint.")
        return
    try:
        status = _runs.read_meta(active).get("status") or "ok"
    except _runs.RunError:
        status = "ok"
    mark = "" if status == "ok" else f" · :red[**{status}**]"
    slot.caption(f"Active run: **{Path(active).name}**{mark}")


def presentation() -> bool:
    """Whether presentation mode (large type, one idea per screen) is on."""
    return bool(st.session_state.get("presentation", False))


def _sync_presentation() -> None:
    on = bool(st.session_state.get("_w_presentation", False))
    st.session_state["presentation"] = on
    st.session_state["_collapse_sidebar"] = on  # the slides make room once (collapse_sidebar_once)


def collapse_sidebar_once() -> None:
    """Collapse the sidebar once after presentation mode was switched on (the home page's slides call it:
    one slide per screen; the other pages keep their sidebar for navigation)."""
    if st.session_state.pop("_collapse_sidebar", False):
        components.html(_COLLAPSE_JS, height=0)


def init_page(title: str, icon: str = ":material/landscape:", layout: str = "wide") -> None:
    """Configure the page, set session defaults and draw the shared sidebar.

    Args:
        title: page title (browser tab shows ``"<title> · Landscape Explorer"``).
        icon: page icon (a ``:material/...:`` icon: Streamlit ships that font, emoji need a system font).
        layout: ``"wide"`` or ``"centered"``.
    """
    try:
        st.set_page_config(page_title=f"{title} · Landscape Explorer", page_icon=icon, layout=layout)
    except Exception:  # noqa: BLE001 - already configured in this run
        pass
    st.session_state.setdefault("presentation", False)
    st.session_state["_w_presentation"] = bool(st.session_state["presentation"])
    with st.sidebar:
        st.session_state[_ACTIVE_SLOT] = st.empty()
        refresh_active_run_caption()
        st.toggle(
            "Presentation mode",
            key="_w_presentation",
            on_change=_sync_presentation,
            help="Larger type and fewer controls, one idea per screen (for classes and interviews).",
        )
    st.markdown(_BASE_CSS, unsafe_allow_html=True)
    if st.session_state["presentation"]:
        st.markdown(_PRESENTATION_CSS, unsafe_allow_html=True)

