"""Real browser: every page of the app opens in Chromium without an exception box; screenshots saved."""

from __future__ import annotations

import pytest
from browser_helpers import assert_no_exception, goto, page_paths, page_url_path, screenshot

pytestmark = pytest.mark.browser


def test_home_renders(app_server, page):
    goto(page, app_server, "/")
    assert_no_exception(page)
    assert page.get_by_text("Landscape Explorer").first.is_visible()
    screenshot(page, "home")


def test_every_page_renders(app_server, page):
    files = page_paths()
    assert files, "no pages found"
    for f in files:
        goto(page, app_server, page_url_path(f))
        assert_no_exception(page)
        assert page.locator("h1").count() >= 1, f"{f.name} shows no title"
        screenshot(page, f.stem)
