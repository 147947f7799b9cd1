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

from landscape_core import runs as _runs

DEFAULT_RUN = "digits-sgd"
_PRESENTATION_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.35rem; line-height: 1.5; }
[data-testid="stMetricValue"] { font-size: 2.6rem; }
[data-testid="stMetricLabel"] p { font-size: 1.2rem; }
h1 { font-size: 3rem !important; }
h2 { font-size: 2.2rem !important; }
</style>
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
    st.session_state["presentation"] = bool(st.session_state.get("_w_presentation", False))


def init_page(title: str, icon: str = "⛰️", layout: str = "wide") -> None:
    """Configure the page, set session defaults and draw the shared sidebar.

    Args:
        title: page title (browser tab shows ``"<title> · Landscape Explorer"``).
        icon: page icon.
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
    if st.session_state["presentation"]:
        st.markdown(_PRESENTATION_CSS, unsafe_allow_html=True)
