"""Real browser: every page opens in Chromium without an exception box, the Probe page imports a
.safetensors upload through the real file widget, and each page's screenshot is saved.

With ``UPDATE_SCREENSHOT=1`` the home screenshot is also copied to ``docs/screenshot-home.png``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from browser_helpers import ROOT, assert_no_exception, goto, page_paths, page_url_path, screenshot, wait_idle

pytestmark = pytest.mark.browser


def test_home_renders_demo(app_server, page):
    goto(page, app_server, "/", timeout=180)
    assert_no_exception(page)
    assert page.get_by_role("heading", name="Landscape Explorer").is_visible()
    # the demo: the panels' chart and the numbers beside each of the four runs
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.get_by_text("λ_max", exact=False).count() >= 4
    out = screenshot(page, "home")
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(out.with_name("home-viewport.png")))
        shutil.copyfile(out.with_name("home-viewport.png"), ROOT / "docs" / "screenshot-home.png")


def test_home_view_slider_redraws_only_the_figure(app_server, page):
    goto(page, app_server, "/", timeout=180)
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="View").locator("input").first
    slider.focus()
    page.keyboard.press("ArrowLeft")  # 3-D -> contour
    wait_idle(page)
    assert page.locator('[data-testid="stSliderThumbValue"]').filter(has_text="contour").count() == 1
    # contour panels are drawn as 2-D plots (no WebGL scenes left)
    page.wait_for_selector(".js-plotly-plot .contourlayer", timeout=30_000)
    assert page.locator(".js-plotly-plot .gl-container canvas").count() == 0
    assert_no_exception(page)


def test_every_page_renders(app_server, page):
    files = page_paths()
    assert len(files) >= 6, [f.name for f in files]
    for f in files:
        goto(page, app_server, page_url_path(f), timeout=180)
        assert_no_exception(page)
        assert page.locator("h1").count() >= 1, f"{f.name} shows no title"
        screenshot(page, f.stem)


def test_probe_imports_safetensors_through_the_widget(app_server, page, tmp_path):
    src = ROOT / "checkpoints" / "moons-tiny" / "model.safetensors"
    if not src.is_file():
        src = ROOT / "checkpoints" / "digits-sgd" / "model.safetensors"
    upload = tmp_path / "probe-me.safetensors"
    shutil.copyfile(src, upload)
    goto(page, app_server, "/Probe_checkpoint")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(upload))
    page.get_by_text("probe-me.safetensors").first.wait_for(timeout=60_000)
    wait_idle(page)
    if "moons" in str(src):
        ds = page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset")
        ds.click()
        page.get_by_role("option", name="moons", exact=True).click()
        wait_idle(page)
    page.get_by_role("button", name="Import as a run").click()
    page.get_by_text("it is now the active run").first.wait_for(timeout=120_000)
    assert_no_exception(page)
    screenshot(page, "probe-upload")


def test_train_stop_saves_nothing(app_server, server_env, page):
    from pathlib import Path

    ws = Path(server_env["LANDSCAPE_WORKSPACE"])
    before = set(ws.iterdir()) if ws.is_dir() else set()
    goto(page, app_server, "/Train")
    epochs = page.locator('[data-testid="stSlider"]').filter(has_text="Epochs").locator("input").first
    epochs.focus()
    page.keyboard.press("End")  # 100 epochs: long enough to stop in the middle
    wait_idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    # the page's own Stop (the header's Stop, shown while a script runs, is another button of that name)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    page.get_by_text("Training stopped. Nothing was saved.").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    after = {p for p in ws.iterdir() if not p.name.startswith(".")} if ws.is_dir() else set()
    assert after == {p for p in before if not p.name.startswith(".")}


def test_two_tabs_keep_their_own_session_state(app_server, browser):
    """Two browser sessions on one server at once: a setting changed in one never shows in the other."""
    tabs = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        a, b = (ctx.new_page() for ctx in tabs)
        for p in (a, b):
            p.set_default_timeout(60_000)
            goto(p, app_server, "/Runs", timeout=180)
        switch = 'label:has-text("Presentation mode") input'
        assert not a.locator(switch).is_checked() and not b.locator(switch).is_checked()
        a.locator('label:has-text("Presentation mode")').click()  # session A only
        wait_idle(a)
        assert a.locator(switch).is_checked() and not b.locator(switch).is_checked()
        for p in (a, b):  # both move to another page in-app (a new script run in each session)
            p.locator('[data-testid="stSidebarNav"] a').filter(has_text="Guide").click()
            wait_idle(p)
            p.wait_for_url("**/Guide")
        assert a.locator(switch).is_checked()
        assert not b.locator(switch).is_checked()
        assert_no_exception(a)
        assert_no_exception(b)
    finally:
        for ctx in tabs:
            ctx.close()
