"""Real browser: checkpoints from elsewhere uploaded through the Probe page's real file widget, then analysed.

A renamed ``fc1/fc2/fc3`` MLP as ``.safetensors`` and a DataParallel checkpoint (``module.`` keys) as
``.th`` are built here from real ``nn.Module``s, uploaded with Playwright's ``set_input_files`` into the
``st.file_uploader``, imported; the page shows what was detected and the key mapping; the Curvature button
opens the Curvature page on the import, which computes its top Hessian eigenvalues.
The screenshot of the page after the first import is docs/screenshots/probe.png.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from browser_helpers import ROOT, assert_no_exception, goto, screenshot, wait_idle
from safetensors.torch import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from foreign_models import FC3, sequential_mlp  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::UserWarning")]
HEAVY = 300.0  # seconds: first computations on 2 shared cores


def _upload(page, name: str, data: bytes) -> None:
    """Put ``data`` into the Checkpoint file widget (the first uploader) as a file called ``name``."""
    box = page.locator('[data-testid="stFileUploader"]').first
    box.locator('input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    page.get_by_text(name).first.wait_for(timeout=60_000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)


def _import(page) -> str:
    """Press the import button; return the page's text once the report is shown."""
    page.get_by_role("button", name="Import as a run").click()
    page.get_by_text("What was detected").first.wait_for(timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    return page.locator('[data-testid="stMainBlockContainer"]').inner_text()


def _mapping_text(page) -> str:
    """The key-mapping table (the last data frame): its cells are in the grid's accessible DOM table."""
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.scroll_into_view_if_needed()
    deadline = time.monotonic() + 30
    text = grid.text_content() or ""
    while not text.strip() and time.monotonic() < deadline:  # a grid being re-rendered (second import) is empty
        page.wait_for_timeout(200)
        text = grid.text_content() or ""
    return text


def test_probe_fc3_safetensors_and_dataparallel_th_then_curvature(app_server, page):
    torch.manual_seed(1)
    fc3 = FC3().eval()
    torch.manual_seed(3)
    dp = torch.nn.DataParallel(sequential_mlp()).state_dict()
    buf = io.BytesIO()
    torch.save(dp, buf)

    goto(page, app_server, "/Probe_checkpoint")
    assert_no_exception(page)
    _upload(page, "fc3.safetensors", st_save({k: v.contiguous() for k, v in fc3.state_dict().items()}))
    text = _import(page)
    assert "safetensors state dict" in text and f"{sum(p.numel() for p in fc3.parameters()):,}" in text
    assert "matched by graph order and shapes" in text
    grid = _mapping_text(page)
    for key in ("fc1.weight", "fc2.bias", "fc3.weight"):
        assert key in grid, grid[:500]
    assert "(12, 64)" in grid
    shot = screenshot(page, "probe")
    (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ROOT / "docs" / "screenshots" / "probe.png")

    _upload(page, "model_best.th", buf.getvalue())
    text = _import(page)
    assert "prefix 'module.' stripped" in text
    grid = _mapping_text(page)
    assert "module." not in grid and "1.weight" in grid and "5.bias" in grid, grid[:500]
    assert "model_best" in page.locator('[data-testid="stSidebar"]').inner_text()  # the active run

    page.get_by_role("button", name="Curvature").click()
    page.wait_for_url(re.compile(r".*/Curvature"), timeout=60_000)
    wait_idle(page, timeout=HEAVY)
    assert "model_best" in page.locator('[data-testid="stSidebar"]').inner_text()
    page.get_by_role("button", name="Compute").click()
    page.get_by_text("Top eigenvalues").first.wait_for(timeout=HEAVY * 1000)
    wait_idle(page, timeout=HEAVY)
    assert_no_exception(page)
    lam = page.locator('[data-testid="stMetric"]').filter(has_text="lambda_max").first.inner_text()
    value = float(re.search(r"[-+]?\d[\d.e+-]*", lam.split("lambda_max")[-1]).group(0))
    # cross-entropy's Gauss-Newton part is positive semi-definite and dominates at this untrained point,
    # so the largest eigenvalue is a finite positive number (a failed computation shows no metric at all)
    assert 0 < value < 1e6, lam
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Run").first
    shown = picker.inner_text() + " " + picker.locator("input").first.input_value()
    assert "model_best" in shown, shown  # the page's run picker shows the import (label or search input)
    screenshot(page, "probe-curvature")
