"""App benchmark: the home page's cold first render and a warm display-only rerun, in headless Chromium.

Workloads (reference measured in the same run):
  (a) home first render: a fresh ``streamlit run app.py`` with empty workspace and cache folders; time
      from navigation to the demo fully drawn (three surfaces + metric cards, script finished). Reference:
      a plain static page (``st.title`` + ``st.write``) served and timed the same way. Target: <= 10 s.
  (b) warm display-only rerun: on the loaded home page, move the "View" slider (contour <-> 1-D slice,
      a fragment rerun over cached results) and time from the key press to the redrawn figure.
      Reference: a one-slider static page whose text follows the slider. Target: <= 0.3 s.
Server start-up (Python + torch import) is printed separately; it is not part of (a).

Falls back to AppTest timings (printed as such) when Chromium is missing.

Run: ``python bench/bench_app.py [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

STATIC_APP = """
import streamlit as st
st.title("Static reference")
v = st.select_slider("View", ["1-D slice", "contour", "3-D"], value="3-D")
st.write("view is " + v)
"""

_IS_CONTOUR = "() => document.querySelectorAll('.js-plotly-plot .contourlayer .contour').length >= 3"
_IS_LINES = ("() => document.querySelectorAll('.js-plotly-plot .contourlayer .contour').length === 0 && "
             "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 3")


def line(workload: str, ours: float, ref: float, target: float) -> str:
    """One result line in the project's format; the target applies to ``ours`` in seconds."""
    ok = "PASS" if ours <= target else "MISS"
    return f"{workload}: ours={ours:.3f}s reference={ref:.3f}s ratio={ours / ref:.2f} target<={target:g}s [{ok}]"


def _env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LANDSCAPE_WORKSPACE"] = str(base / "workspace")
    env["LANDSCAPE_CACHE"] = str(base / "cache")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _first_render(B, browser, script: str, env: dict, ready) -> tuple[float, float, object, object]:
    """Start a server for ``script``; return (startup s, first render s, page, server process)."""
    t0 = time.perf_counter()
    proc, url = B.start_streamlit(script, env, timeout=180)
    startup = time.perf_counter() - t0
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(300_000)
    cpu0 = _cpu_seconds(proc.pid)
    t0 = time.perf_counter()
    page.goto(url + "/")
    ready(page)
    B.wait_idle(page, timeout=300, settle=0.0)
    wall = time.perf_counter() - t0
    _CPU[script] = _cpu_seconds(proc.pid) - cpu0
    return startup, wall, page, proc


_CPU: dict[str, float] = {}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the server process (0 when psutil is missing)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except Exception:  # noqa: BLE001
        return 0.0


def _slider_moves(B, page, label: str, states: list[tuple[str, str]], repeats: int) -> list[float]:
    """Press keys on the labelled slider and time each change until its JS condition holds."""
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).locator("input").first
    times = []
    for r in range(repeats):
        for key, cond in states:
            thumb.focus()
            t0 = time.perf_counter()
            page.keyboard.press(key)
            page.wait_for_function(cond, polling="raf", timeout=60_000)
            dt = time.perf_counter() - t0
            B.wait_idle(page, timeout=60, settle=0.05)
            if r > 0 or key == "ArrowRight":  # the very first move warms up the browser side
                times.append(dt)
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer warm repetitions")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else 5
    import importlib.util

    spec = importlib.util.spec_from_file_location("browser_conftest", ROOT / "tests" / "browser" / "conftest.py")
    B = importlib.util.module_from_spec(spec)
    sys.modules["browser_conftest"] = B
    spec.loader.exec_module(B)
    if not Path(B.CHROMIUM).exists():
        print(f"# Chromium missing at {B.CHROMIUM}: AppTest fallback (no browser paint included)")
        _apptest_fallback()
        return
    from playwright.sync_api import sync_playwright

    lines = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        tmp = Path(tmp)
        static = tmp / "static_app.py"
        static.write_text(STATIC_APP)
        browser = pw.chromium.launch(executable_path=B.CHROMIUM, args=B.CHROMIUM_ARGS, headless=True)
        try:
            # reference: the static page, cold server
            (tmp / "ref").mkdir()
            s_start, s_first, s_page, s_proc = _first_render(
                B, browser, str(static), _env(tmp / "ref"), lambda p: p.get_by_text("view is 3-D").wait_for())
            try:
                states = [("ArrowLeft", "() => document.body.innerText.includes('view is contour')"),
                          ("ArrowRight", "() => document.body.innerText.includes('view is 3-D')")]
                s_warm = statistics.median(_slider_moves(B, s_page, "View", states, repeats))
            finally:
                B.stop_streamlit(s_proc)
            # ours: the home page, cold server and empty caches
            (tmp / "home").mkdir()

            def home_ready(p):
                p.wait_for_selector('[data-testid="stMetric"] >> nth=11', timeout=300_000)
                p.wait_for_selector(".js-plotly-plot", timeout=300_000)

            h_start, h_first, h_page, h_proc = _first_render(B, browser, "app.py", _env(tmp / "home"), home_ready)
            try:
                thumb = h_page.locator('[data-testid="stSlider"]').filter(has_text="View").locator("input").first
                thumb.focus()
                h_page.keyboard.press("ArrowLeft")  # 3-D -> contour (leaves WebGL; not timed)
                h_page.wait_for_function(_IS_CONTOUR, polling="raf", timeout=60_000)
                B.wait_idle(h_page, timeout=60, settle=0.1)
                states = [("ArrowLeft", _IS_LINES), ("ArrowRight", _IS_CONTOUR)]
                c0 = _cpu_seconds(h_proc.pid)
                moves = _slider_moves(B, h_page, "View", states, repeats)
                h_warm = statistics.median(moves)
                warm_cpu = (_cpu_seconds(h_proc.pid) - c0) / (2 * repeats)
            finally:
                B.stop_streamlit(h_proc)
        finally:
            browser.close()
    print(f"# server start-up (not in the timings below): home app {h_start:.2f}s, static app {s_start:.2f}s; "
          f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"# server CPU seconds during the cold render: home {_CPU.get('app.py', 0):.2f}s, static "
          f"{_CPU.get(str(static), 0):.2f}s (wall time above CPU time is waiting for a shared CPU)")
    print(f"# server CPU seconds per warm slider move (fragment rerun + figure send): {warm_cpu:.3f}s")
    lines.append(line("home first render, cold caches (Chromium)", h_first, s_first, 10.0))
    lines.append(line("home display-only slider rerun, warm (Chromium, median)", h_warm, s_warm, 0.3))
    for s in lines:
        print(s)


def _apptest_fallback() -> None:
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({k: v for k, v in _env(Path(tmp)).items() if k.startswith("LANDSCAPE_")})
        ref = Path(tmp) / "static_app.py"
        ref.write_text(STATIC_APP)
        t0 = time.perf_counter()
        r = AppTest.from_file(str(ref), default_timeout=300).run()
        s_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
        h_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        r.select_slider[0].set_value("contour").run()
        s_warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.select_slider(key="home_view").set_value("contour").run()
        h_warm = time.perf_counter() - t0
    print(line("home first render, cold caches (AppTest fallback)", h_first, s_first, 10.0))
    print(line("home display-only slider rerun, warm (AppTest fallback, full rerun)", h_warm, s_warm, 0.3))


if __name__ == "__main__":
    main()
