"""Real browser: each analysis page renders, and a display-only control inside an ``@st.fragment`` redraws
its plot WITHOUT a full rerun of the page.

The app counts full script runs of each analysis page (``page:<name>``) and reruns of each fragment
(``fragment:<name>``) with :func:`ui.state.count`; the test server mirrors the counters into files (the
``counter`` fixture), nothing is drawn on screen. Moving a display-only control must bump the fragment's
count, change the plot, and leave the page's count alone (the page's computation is not run again).
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_helpers import assert_no_exception, goto, screenshot, wait_idle

pytestmark = pytest.mark.browser
HEAVY = 300.0  # seconds: first computations on 2 shared cores


def _click_toggle(page, label: str) -> None:
    page.locator('[data-testid="stCheckbox"], [data-testid="stToggle"]').filter(has_text=label).first.locator(
        "label").first.click()


def _plot_text(page) -> str:
    return page.locator(".js-plotly-plot").first.inner_html()


def _plot_js(page, expr: str):
    """Evaluate ``expr`` on the first Plotly graph div (``el.data``, ``el.layout`` are the live figure)."""
    return page.locator(".js-plotly-plot").first.evaluate(f"el => {expr}")


_DENSITY_TITLE = (
    "() => { for (const el of document.querySelectorAll('.js-plotly-plot')) {"
    " const t = el.layout && el.layout.title && el.layout.title.text;"
    " if (t && t.includes('Spectral density')) return t; } return ''; }")


def _density_title(page) -> str:
    """Title of the spectral-density plot (it carries the smoothing width sigma), once it is drawn."""
    page.wait_for_function(_DENSITY_TITLE, timeout=HEAVY * 1000)
    return page.evaluate(_DENSITY_TITLE)


def _fragment_check(page, counter, page_name: str, fragment: str, act, plot_changed) -> None:
    """Run ``act`` (a display-only change) and check: fragment redrawn, plot changed, page not rerun."""
    wait_idle(page)
    runs = counter(f"page:{page_name}")
    redraws = counter(f"fragment:{fragment}")
    assert runs >= 1 and redraws >= 1, "the page and its fragment have been drawn"
    act()
    deadline = time.monotonic() + HEAVY
    while counter(f"fragment:{fragment}") <= redraws:  # each key press may rerun the fragment once
        assert time.monotonic() < deadline, "the fragment never reran"
        time.sleep(0.2)
    wait_idle(page)
    assert plot_changed(), "the plot did not change"
    assert counter(f"page:{page_name}") == runs, "a display-only control reran the whole page"
    assert_no_exception(page)


def _no_counters_on_screen(page) -> None:
    """Instrumentation stays off screen: no run counters, redraw counts or computation tallies."""
    text = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    for pattern in (r"Page run #", r"redraws:", r"computations this session"):
        assert not re.search(pattern, text), f"test instrumentation {pattern!r} is visible on {page.url}"


def test_loss_surface_log_colour_redraws_only_the_plot(app_server, page, counter):
    goto(page, app_server, "/Loss_surface", timeout=HEAVY)
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    assert_no_exception(page)
    assert "log10 loss" not in _plot_text(page)
    _fragment_check(page, counter, "surface", "surface", lambda: _click_toggle(page, "Log colour"),
                    lambda: "log10 loss" in _plot_text(page))
    _no_counters_on_screen(page)
    screenshot(page, "analysis-loss-surface")


def test_curvature_smoothing_slider_resmooths_without_recomputing(app_server, page, counter):
    goto(page, app_server, "/Curvature", timeout=HEAVY)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Run").first.click()
    page.get_by_role("option", name=re.compile("moons-tiny")).first.click()
    wait_idle(page, timeout=HEAVY)
    page.get_by_role("button", name="Compute").click()
    before = _density_title(page)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    hessian_runs = counter("compute:hessian")
    assert hessian_runs >= 1
    assert "sigma = " in before
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Smoothing width").locator('input[type="range"]')

    def move() -> None:
        slider.focus()
        for _ in range(10):
            page.keyboard.press("ArrowRight")

    _fragment_check(page, counter, "curvature", "density", move, lambda: _density_title(page) not in ("", before))
    assert counter("compute:hessian") == hessian_runs
    _no_counters_on_screen(page)
    screenshot(page, "analysis-curvature")


def test_trajectory_log_toggle_redraws_only_the_plots(app_server, page, counter):
    goto(page, app_server, "/Trajectory", timeout=HEAVY)
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    assert_no_exception(page)
    assert "log10 loss" in _plot_text(page)  # log colour is the default here
    _fragment_check(page, counter, "trajectory", "trajectory", lambda: _click_toggle(page, "Log colour"),
                    lambda: "log10 loss" not in _plot_text(page))
    _no_counters_on_screen(page)
    screenshot(page, "analysis-trajectory")


def test_connectivity_metric_switch_redraws_only_the_plot(app_server, page, counter):
    goto(page, app_server, "/Mode_connectivity", timeout=HEAVY)
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    assert_no_exception(page)
    _fragment_check(page, counter, "connectivity", "connectivity",
                    lambda: page.locator('[data-testid="stRadio"]').filter(has_text="Show").get_by_text(
                        "accuracy", exact=True).click(),
                    lambda: "accuracy along the paths" in _plot_text(page))
    _no_counters_on_screen(page)
    screenshot(page, "analysis-mode-connectivity")


def test_flatness_log_toggle_redraws_only_the_plot(app_server, page, counter):
    goto(page, app_server, "/Flatness_and_noise", timeout=HEAVY)
    page.get_by_role("button", name="Measure flatness").click()
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    assert _plot_js(page, "el.layout.yaxis.type") == "linear"
    _fragment_check(page, counter, "flatness", "flatness", lambda: _click_toggle(page, "Log scale"),
                    lambda: _plot_js(page, "el.layout.yaxis.type") == "log")
    _no_counters_on_screen(page)
    screenshot(page, "analysis-flatness")
