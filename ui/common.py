"""Small widgets every page uses: the run picker, one-line errors, links into the Guide, cost captions."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from .cache import list_runs_cached
from .state import get_active_run, set_active_run

GUIDE_PAGE = "Guide"
GUIDE_FILE = "pages/11_Guide.py"
#: the query parameter that tells the Guide which section to scroll to (``?section=<anchor>``)
GUIDE_SECTION_PARAM = "section"


def _label(row: dict) -> str:
    acc = row.get("test_acc")
    acc_s = f", test acc {float(acc):.1%}" if isinstance(acc, (int, float)) else ""
    status = row.get("status", "ok")
    mark = f" · {status}" if status not in (None, "ok") else ""  # diverged / chance / suspect runs say so
    return f"{row['name']} ({row['source']}{acc_s}){mark}"


def run_picker(
    label: str = "Run",
    key: str = "run_picker",
    default: str | None = None,
    exclude: Iterable[str] = (),
) -> str | None:
    """Select box over shipped + workspace runs; returns the chosen run's folder path (or ``None``).

    The default selection is ``default``, else the active run. The main picker (``key="run_picker"``)
    also makes its choice the active run, so the next page opens the same run. With no runs at all it
    shows an info box pointing to the Train and Probe pages instead of failing.
    """
    excl = {str(e) for e in exclude}
    rows = [r for r in list_runs_cached() if r["path"] not in excl]
    if not rows:
        st.info(
            "No runs yet. Train one on the **Train** page or import a checkpoint on the "
            "**Probe checkpoint** page; it then shows up here."
        )
        return None
    paths = [r["path"] for r in rows]
    labels = {r["path"]: _label(r) for r in rows}
    want = default or get_active_run()
    index = paths.index(want) if want in paths else 0
    if key in st.session_state and st.session_state[key] not in paths:
        del st.session_state[key]

    def _on_change() -> None:
        if key == "run_picker" and st.session_state.get(key):
            set_active_run(st.session_state[key])

    return st.selectbox(label, paths, index=index, format_func=labels.get, key=key, on_change=_on_change)


def error_line(e: BaseException | str) -> str:
    """The first line of an error message, without a traceback."""
    if isinstance(e, BaseException):
        msg = str(e).strip() or type(e).__name__
    else:
        msg = str(e).strip()
    return msg.splitlines()[0] if msg else "unknown error"


def show_error(e: BaseException | str) -> None:
    """Show ``e`` as one line in a red box (never a traceback)."""
    st.error(error_line(e), icon=":material/error:")


def guide_link(section_anchor: str, label: str) -> None:
    """A link to a section of the Guide page (``pages/11_Guide.py``, section ``section_anchor``).

    ``st.page_link`` opens it in the same tab and the same session (presentation mode and the active run
    stay); the section travels as ``?section=<anchor>`` and the Guide scrolls to it once it is drawn. The
    icon is a Material Symbol (Streamlit ships the font; emoji render as empty boxes without an emoji font).
    """
    try:
        st.page_link(GUIDE_FILE, label=label, icon=":material/menu_book:",
                     query_params={GUIDE_SECTION_PARAM: section_anchor})
    except Exception:  # noqa: BLE001 - page registry unavailable (a page run on its own): plain link
        st.markdown(f"[{label}]({GUIDE_PAGE}?{GUIDE_SECTION_PARAM}={section_anchor}#{section_anchor})")


def cost_caption(estimate_str: str) -> None:
    """A small caption announcing the expected cost of the next computation."""
    st.caption(f"Estimated cost: {estimate_str}")
