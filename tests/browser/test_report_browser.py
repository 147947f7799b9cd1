"""The HTML report of the shipped runs in real headless Chromium: every section, rendered plots, no network."""

from pathlib import Path

import pytest

from landscape_core.report import SECTIONS, write_report
from landscape_core.runs import checkpoints_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.browser
def test_report_of_shipped_runs_renders_offline(tmp_path, monkeypatch, browser):
    # ``browser`` is the session's one Chromium (tests/browser/conftest.py): a second sync_playwright()
    # inside the same process fails while the first is alive.
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    runs = [checkpoints_dir() / n for n in ("digits-sgd", "digits-sam", "digits-adam")]
    out = write_report(runs, tmp_path / "report.html", samples=256, grid=15, top_k=3)
    requests: list[str] = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = ctx.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        for sid, title in SECTIONS.items():
            h = page.locator(f"h2#{sid}")
            assert h.count() == 1, sid
            assert h.inner_text().strip() == title
        sizes = page.evaluate(
            "() => Array.from(document.querySelectorAll('svg')).map(s => {"
            " const r = s.getBoundingClientRect(); return [s.getAttribute('class'), r.width, r.height]; })")
        kinds = {}
        for cls, w, h in sizes:
            assert w > 50 and h > 50, (cls, w, h)
            kinds[cls] = kinds.get(cls, 0) + 1
        assert kinds.get("chart line", 0) >= 3  # loss, accuracy, connectivity
        assert kinds.get("chart heatmap", 0) == 3 and kinds.get("chart bars", 0) == 1
        assert kinds.get("chart scatter", 0) == 3
        # the surface images decoded (a broken data: URI would have zero natural size)
        loaded = page.evaluate(
            "() => Array.from(document.querySelectorAll('svg image')).map(i => i.getBBox().width)")
        assert len(loaded) == 3 and all(w > 50 for w in loaded)
        # series were drawn
        assert page.locator("svg polyline.series").count() >= 3 * 4
        assert page.locator("svg rect.bar").count() == 3 * 3
        shots = ROOT / "test-artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "report.png"), full_page=True)
    finally:
        ctx.close()
    assert requests, "the page load itself should be recorded"
    assert all(u.startswith(("file://", "data:")) for u in requests), [u[:80] for u in requests]
