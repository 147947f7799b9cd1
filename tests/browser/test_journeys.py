"""Real browser: the journeys of issue 16 that used to give silent wrong answers or stale state.

- a diverged run (SGD at lr 1 on digits): the Train page says so in red (no green "Saved run"), the
  sidebar's active run is the new run and is marked, the Curvature page of it carries the banner;
- Mode connectivity with that run active (other depth than the shipped runs): it explains that no
  compatible run B exists (no error, no progress bar); with a shipped run A it defaults to a compatible B;
- Loss surface: after the 81 x 81 "press Compute" stop, the View radio and the plot agree, and clicking
  the radio still redraws the plot.

Screenshots of the diverged run go to ``docs/`` (``train-diverged.png``, ``curvature-diverged.png``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_helpers import assert_no_exception, goto, screenshot, wait_idle

pytestmark = pytest.mark.browser
HEAVY = 300.0  # seconds: first computations on 2 shared cores
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _slider_end(page, label: str) -> None:
    page.locator('[data-testid="stSlider"]').filter(has_text=label).locator('input[type="range"]').first.focus()
    page.keyboard.press("End")
    wait_idle(page)


def _nav(page, label: str) -> None:
    """Go to another page in the SAME session (a new URL would start a new session)."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=label).first.click()
    wait_idle(page, timeout=HEAVY)


def _sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def _doc_shot(page, name: str) -> None:
    out = screenshot(page, name)
    DOCS.mkdir(exist_ok=True)
    (DOCS / f"{name}.png").write_bytes(out.read_bytes())


def test_diverged_run_is_marked_everywhere_and_connectivity_explains(app_server, page):
    page.set_viewport_size({"width": 1440, "height": 1000})
    goto(page, app_server, "/Train")
    before = _sidebar_text(page)
    _slider_end(page, "Learning rate")  # lr = 1 (the last choice)
    page.locator('[data-testid="stCheckbox"], [data-testid="stToggle"]').filter(
        has_text="Track sharpness").first.locator("label").first.click()
    wait_idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    err = page.locator('[data-testid="stAlertContentError"]').filter(has_text="Diverged")
    err.first.wait_for(timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    text = err.first.inner_text()
    assert "SGD at lr=1, batch size 64" in text and "largest measured lambda_max" in text and "> 2/lr = 2" in text
    assert page.get_by_text("Saved run", exact=False).count() == 0  # no green success for a diverged run
    assert page.locator('[data-testid="stProgress"]').count() == 0  # the progress bar is cleared
    side = _sidebar_text(page)
    m = re.search(r"Active run: (\S+)", side)
    assert m and "digits-mlp-sgd" in m.group(1) and side != before, side  # updated after training
    assert "diverged" in side
    _doc_shot(page, "train-diverged")

    _nav(page, "Curvature")
    page.set_viewport_size({"width": 1440, "height": 1800})  # banner, settings and headline numbers in one shot
    banner = page.locator('[data-testid="stAlertContentError"]').filter(has_text="is marked diverged")
    banner.first.wait_for(timeout=HEAVY * 1000)
    page.get_by_role("button", name="Compute").click()
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    assert banner.count() == 1  # the banner stays, once
    main = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    assert "condition number" in main
    page.evaluate("() => { window.scrollTo(0, 0); document.querySelectorAll("
                  "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]').forEach(e => e.scrollTo(0, 0)); }")
    _doc_shot(page, "curvature-diverged")

    _nav(page, "Mode connectivity")
    assert_no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').filter(has_text="connect").count() == 0
    assert page.get_by_text("No other run has the architecture and data of", exact=False).count() == 1
    assert page.locator('[data-testid="stProgress"]').count() == 0
    # a shipped run as A: B defaults to a compatible shipped run and the linear path computes
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Run A").first.click()
    page.get_by_role("option", name=re.compile(r"^digits-sgd \(")).first.click()
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    b = page.locator('[data-testid="stSelectbox"]').filter(has_text="Run B").first.locator("input").first.input_value()
    assert re.search(r"digits-(adam|sam|sgd-sharp) \(shipped", b), b
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def _view_and_plot(page) -> tuple[str, str]:
    radio = page.locator('[data-testid="stRadio"]').filter(has_text="View")
    checked = radio.locator('input[type="radio"]:checked').first
    label = checked.evaluate("el => el.closest('label').innerText").strip()
    kind = page.locator(".js-plotly-plot").first.evaluate("el => el.data[0].type")
    return label, kind


def test_surface_view_radio_and_plot_agree_after_the_compute_stop(app_server, page):
    goto(page, app_server, "/Loss_surface", timeout=HEAVY)
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    radio = page.locator('[data-testid="stRadio"]').filter(has_text="View")
    radio.get_by_text("3-D", exact=True).click()
    wait_idle(page)
    assert _view_and_plot(page) == ("3-D", "surface")
    _slider_end(page, "Resolution")  # 81 x 81: waits for the Compute button
    compute = page.get_by_role("button", name="Compute")
    compute.wait_for(timeout=60_000)
    # no stale plot or radio from the 21 x 21 surface under the prompt
    assert page.locator('[data-testid="stRadio"]').filter(has_text="View").count() == 0
    assert page.locator(".js-plotly-plot").count() == 0
    compute.click()
    page.wait_for_selector(".js-plotly-plot", timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    assert _view_and_plot(page) == ("3-D", "surface")  # the user's choice survives the stop, radio = plot
    assert page.locator('[data-testid="stProgress"]').count() == 0
    radio.get_by_text("Contour", exact=True).click()  # clicking still redraws
    wait_idle(page)
    assert _view_and_plot(page) == ("Contour", "contour")
