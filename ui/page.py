"""The analysis-page template: a header, and ONE compute block for "cached result, or a Compute button,
progress while it runs (with Cancel), a one-line error".

An analysis page is three steps::

    header("surface", "Loss surface", icon=":material/landscape:", caption=..., guides=[...])
    settings = surface_ui.settings_widgets(...)        # a frozen settings object: cache key + engine args
    result = compute("surface", (run, weights_hash, settings), lambda p: analysis.cached_surface(..., p))
    if result is not None:
        surface_ui.view(result)                         # figures, in an @st.fragment

:func:`compute` shows a stored result at once; otherwise it computes automatically (``auto=True``, for
cheap analyses) or after the Compute button. While it runs, a progress bar and a Cancel button show; both
are cleared when it is done. Cancel reruns the page, which interrupts the computation at its next progress
report; the block then waits for the button even when ``auto`` (a cancelled analysis does not restart by
itself). An error becomes one red line, shown once, and the block returns ``None``.

Instrumentation (page runs, fragment redraws, computations) goes to counters in session state
(:func:`ui.state.count`), never on screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import streamlit as st

from landscape_core.progress import ProgressFn

from .analysis import has_result
from .common import guide_link, show_error
from .state import count, init_page

T = TypeVar("T")


def header(name: str, title: str, *, icon: str, caption: str = "", guides: Sequence[tuple[str, str]] = (),
           tab: str | None = None) -> None:
    """Page setup, title, one-line explanation and links into the Guide; counts ``page:<name>``.

    ``tab`` is the browser tab's title (default ``title``).
    """
    init_page(tab or title, icon=icon)
    count(f"page:{name}")
    st.title(title)
    if caption:
        st.caption(caption)
    if guides:
        for col, (anchor, label) in zip(st.columns(len(guides)), guides):
            with col:
                guide_link(anchor, label)


def _cancel(cancel_key: str, key: tuple) -> None:
    st.session_state[cancel_key] = key


def compute(name: str, key: tuple, fn: Callable[[ProgressFn], T], *, auto: bool = False,
            button: str = "Compute", prompt: str | None = None, ready: bool | None = None,
            label: str = "computing", widget_key: str | None = None) -> T | None:
    """The stored result of ``fn``, or a Compute button / progress bar / Cancel / one-line error.

    Args:
        name: the analysis (its ``ui.analysis`` store name, also the widget key prefix).
        key: the result's cache key (``(run_path, weights_hash, settings)`` for one run).
        fn: computes (or fetches) the result, reporting to the progress callback it is given.
        auto: compute without the button (cheap analyses).
        button: the button's label.
        prompt: shown next to the button while there is no result.
        ready: whether the result is stored; default: in ``ui.analysis``'s store, or computed in this
            session with this key.
        label: the progress bar's first message.
        widget_key: key of the button (default ``"<name>_compute"``; Cancel is ``"<widget_key>_cancel"``).

    Returns:
        The result, or ``None`` when it is not computed (yet) or failed (the error is shown).
    """
    widget_key = widget_key or f"{name}_compute"
    done_key, cancel_key = f"_done:{widget_key}", f"_cancelled:{widget_key}"
    if ready is None:
        ready = has_result(name, *key) or st.session_state.get(done_key) == key
    cancelled = st.session_state.get(cancel_key) == key
    if ready:  # stored: no button, no progress
        try:
            return fn(lambda fraction, message: None)
        except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
            show_error(e)
            return None
    slot = st.empty()  # the prompt and button, then the progress bar and Cancel, then nothing
    if not auto or cancelled:
        with slot.container():
            if cancelled:
                st.info("Cancelled. Press the button to start again.")
            elif prompt:
                st.info(prompt)
            if not st.button(button, type="primary", key=widget_key):
                return None
    st.session_state.pop(cancel_key, None)
    with slot.container():
        bar = st.progress(0.0, text=label)
        st.button("Cancel", key=f"{widget_key}_cancel", on_click=_cancel, args=(cancel_key, key))

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    try:
        result = fn(progress)
    except Exception as e:  # noqa: BLE001 - engine errors are shown in one line
        slot.empty()
        show_error(e)
        return None
    slot.empty()
    st.session_state[done_key] = key
    return result
