"""Real browser: the Train page's grokking lab on the shipped grokking run (``checkpoints/modadd-p47-grokking``:
the preset, 2000 full-batch AdamW steps on a + b mod 47). Opens the curves expander, checks the summary and the
three panels, and saves the view as docs/screenshots/grokking.png."""

from __future__ import annotations

import json
import shutil

import pytest
from browser_helpers import ROOT, assert_no_exception, goto, wait_idle

from landscape_core.presets import grokking_summary

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::UserWarning")]
RUN = ROOT / "checkpoints" / "modadd-p47-grokking"


def test_grokking_curves_of_the_shipped_run(app_server, page):
    meta = json.loads((RUN / "run.json").read_text())
    s = grokking_summary(meta["history"])
    goto(page, app_server, "/Train")
    assert_no_exception(page)
    page.get_by_text("Grokking curves of a modular-addition run").first.click()
    wait_idle(page, timeout=120)
    box = page.locator('[data-testid="stExpander"]').filter(has_text="Grokking curves").first
    box.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    text = box.inner_text()
    assert "Modular-addition run" in text and "final test accuracy" in text
    for step in (s["train_saturated_step"], s["test_jump_step"], s["delay_steps"]):
        assert step is not None and str(step) in text
    for title in ("accuracy", "weight norm", "sharpness"):
        assert title in text
    box.scroll_into_view_if_needed()
    page.wait_for_timeout(800)  # let Plotly finish its layout transition
    out = ROOT / "test-artifacts" / "screenshots" / "grokking.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    box.screenshot(path=str(out))
    (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, ROOT / "docs" / "screenshots" / "grokking.png")
