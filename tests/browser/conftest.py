"""Fixtures for real-browser tests: a `streamlit run app.py` server and Playwright pages in Debian's Chromium.

- ``app_server`` (session): starts the app on a free port with its own workspace and cache folders, waits
  for ``/_stcore/health`` and yields the base URL; the server is terminated at the end.
- ``browser`` (session) / ``page`` (per test): headless Chromium at ``/usr/bin/chromium``.
- ``counter`` (session): reads the app's instrumentation counters (``ui.state.count``: full page runs,
  fragment redraws, computations), which the server mirrors into files of a private folder
  (``LANDSCAPE_TEST_COUNTERS``): nothing of it is drawn on the page.
- helpers ``goto``, ``assert_no_exception``, ``screenshot``, ``page_paths``.

Test modules import the helpers with ``from browser_helpers import goto, ...``: this conftest registers
itself under that name (the test folders are not packages, so ``conftest`` itself is ambiguous).

When Chromium is missing the tests fail if ``$CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
sys.modules.setdefault("browser_helpers", sys.modules[__name__])


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        msg = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def free_port() -> int:
    """An unused TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(script: str, env: dict[str, str], port: int | None = None,
                    timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run <script>`` headless; return the process and its base URL once healthy."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"streamlit exited with code {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    stop_streamlit(proc)
    raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f}s")


def stop_streamlit(proc: subprocess.Popen) -> None:
    """Terminate the server started by :func:`start_streamlit` (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def server_env(tmp_path_factory) -> dict[str, str]:
    """Environment for the app server: private workspace and cache folders."""
    base = tmp_path_factory.mktemp("browser-app")
    env = dict(os.environ)
    env["LANDSCAPE_WORKSPACE"] = str(base / "workspace")
    env["LANDSCAPE_CACHE"] = str(base / "cache")
    env["LANDSCAPE_TEST_COUNTERS"] = str(base / "counters")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def app_server(server_env):
    """Base URL of a running ``streamlit run app.py``."""
    _require_chromium()
    proc, url = start_streamlit("app.py", server_env)
    try:
        yield url
    finally:
        stop_streamlit(proc)


@pytest.fixture(scope="session")
def counter(server_env):
    """``counter("page:surface")`` -> how often the server counted that event so far (0 before the first)."""
    folder = Path(server_env["LANDSCAPE_TEST_COUNTERS"])

    def read(name: str) -> int:
        f = folder / name.replace(":", "-")
        return int(f.read_text()) if f.is_file() else 0

    return read


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Playwright sync API)."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (1400x1000 viewport)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = ctx.new_page()
    p.set_default_timeout(60_000)
    try:
        yield p
    finally:
        ctx.close()


def script_state(page) -> str:
    """Streamlit's run state from ``stApp[data-test-script-state]`` (``running``, ``notRunning``, ...)."""
    return page.get_attribute('[data-testid="stApp"]', "data-test-script-state", timeout=30_000) or ""


def wait_idle(page, timeout: float = 120.0, settle: float = 0.4) -> None:
    """Wait until the script run has finished (no "Running..." state) and the page has content,
    stable for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    calm_since: float | None = None
    while time.monotonic() < deadline:
        running = (script_state(page) != "notRunning"
                   or page.locator('[data-testid="stStatusWidget"]').count() > 0)
        has_content = page.locator('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]').count() > 0
        if not running and has_content:
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= settle:
                return
        else:
            calm_since = None
        time.sleep(0.1)
    raise TimeoutError(f"the app was still running after {timeout:.0f}s (state {script_state(page)!r})")


def goto(page, base_url: str, url_path: str = "/", timeout: float = 120.0) -> None:
    """Open ``base_url + url_path`` and wait for the script run to finish."""
    page.goto(base_url.rstrip("/") + "/" + url_path.lstrip("/"))
    wait_idle(page, timeout=timeout)


def assert_no_exception(page) -> None:
    """Fail if Streamlit shows an exception box."""
    boxes = page.locator('[data-testid="stException"]')
    if boxes.count():
        raise AssertionError(f"exception shown on {page.url}: {boxes.first.inner_text()[:500]}")


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot to ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"{name}.png"
    page.wait_for_timeout(300)  # let freshly sent elements finish painting
    page.screenshot(path=str(out), full_page=True)
    return out


def page_url_path(file: Path) -> str:
    """``pages/5_Loss_surface.py`` -> ``/Loss_surface`` (Streamlit's file-name routing)."""
    return "/" + re.sub(r"^\d+_", "", file.stem)


def page_paths() -> list[Path]:
    """Every page file present in ``pages/`` (ordered as in the sidebar)."""
    def order(p: Path) -> tuple[int, str]:
        m = re.match(r"^(\d+)_", p.name)
        return (int(m.group(1)) if m else 10**6, p.name)

    return sorted((ROOT / "pages").glob("*.py"), key=order)
