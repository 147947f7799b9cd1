"""AppTest of the analysis-page template (ui/page.py): stored result, Compute button, auto, cancel, errors."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


def _script() -> None:
    import streamlit as st

    from ui.page import compute, header

    header("demo", "Demo", icon="🧪")
    mode = st.session_state.get("mode", "ok")
    st.session_state.setdefault("calls", 0)

    def fn(progress):
        st.session_state["calls"] += 1
        progress(0.5, "half way")
        if mode == "fail":
            raise ValueError("bad setting 42\nsecond line of a traceback")
        return {"value": 7}

    res = compute("demo", ("run", "hash", mode), fn, auto=st.session_state.get("auto", False),
                  prompt="Press Compute.", widget_key="demo_btn")
    st.session_state["result"] = res


@pytest.fixture
def at():
    return AppTest.from_function(_script, default_timeout=30)


def test_button_then_stored_result(at):
    at.run()
    assert not at.exception
    assert at.session_state["result"] is None and at.session_state["calls"] == 0
    assert [i.value for i in at.info] == ["Press Compute."]
    at.button(key="demo_btn").click().run()
    assert at.session_state["result"] == {"value": 7} and at.session_state["calls"] == 1
    assert not at.info  # prompt and button are cleared once computing starts
    assert not at.get("progress")  # the progress bar is cleared when done
    at.run()  # a rerun uses the stored result: no button, computed once in this session
    assert at.session_state["result"] == {"value": 7}
    assert not [b for b in at.button if b.key == "demo_btn"]
    assert at.session_state["_count:page:demo"] == 3  # instrumentation lives in session state
    assert not any("Page run" in c.value for c in at.caption)


def test_auto_computes_and_cancel_waits_for_the_button(at):
    at.session_state["auto"] = True
    at.session_state["mode"] = "other"
    at.session_state["_cancelled:demo_btn"] = ("run", "hash", "other")  # what the Cancel button's callback stores
    at.run()
    assert at.session_state["calls"] == 0 and at.session_state["result"] is None
    assert any("Cancelled" in i.value for i in at.info)
    at.button(key="demo_btn").click().run()
    assert at.session_state["calls"] == 1 and at.session_state["result"] == {"value": 7}
    at.session_state["mode"] = "auto2"
    at.run()  # a new key computes by itself again
    assert at.session_state["calls"] == 2


def test_error_is_one_line_shown_once(at):
    at.session_state["mode"] = "fail"
    at.run()
    at.button(key="demo_btn").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["bad setting 42"]
    assert at.session_state["result"] is None
