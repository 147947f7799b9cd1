"""Soak test: 60 back-to-back analyses (surfaces, Hessian, flatness on moons-tiny and a digits subset, through
the engine and through AppTest sessions) leak neither open files nor memory.

Not timed. Figures (open file descriptors and RSS before/after) are printed to the terminal, written to
test-artifacts/soak.txt and repeated in pytest's terminal summary.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import psutil
from rel_helpers import SOAK_REPORT
from streamlit.testing.v1 import AppTest

from landscape_core.analyses.flatness import flatness_summary
from landscape_core.analyses.hessian import analyze_hessian
from landscape_core.analyses.surface import compute_surface
from landscape_core.runs import checkpoints_dir, load_run

ROOT = Path(__file__).resolve().parents[2]
N_ANALYSES = 60
FD_SLACK = 8
RSS_LIMIT_MB = 300.0


def _analyses(moons, digits) -> list:
    """One round of engine analyses (cheap settings, no caches: each one really computes)."""
    return [
        lambda: compute_surface(moons, grid=7, samples=96, span=0.5, seed=0, use_cache=False),
        lambda: analyze_hessian(moons, top_k=2, samples=96, trace=True, trace_probes=4, smallest=False),
        lambda: flatness_summary(moons, samples=64, n_directions=2, radii=(0.05, 0.2), ascent_steps=1,
                                 basin_directions=2, max_radius=0.5),
        lambda: compute_surface(digits, dims=1, grid=9, samples=128, span=0.5, seed=1, use_cache=False),
        lambda: analyze_hessian(digits, top_k=1, samples=64, trace=False, smallest=False, max_iter=20),
    ]


def _app_session(page: str, active: str) -> int:
    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    at.session_state["active_run"] = active
    at.run()
    return len(at.exception)


def test_soak_no_fd_or_memory_growth(workspace, capsys):
    proc = psutil.Process()
    moons = load_run(checkpoints_dir() / "moons-tiny")
    digits = load_run(checkpoints_dir() / "digits-sgd")
    round_ = _analyses(moons, digits)
    pages = ["pages/3_Runs.py", "pages/5_Loss_surface.py", "pages/4_Probe_checkpoint.py",
             "pages/9_Flatness_and_noise.py"]
    # warm-up: every code path once (imports, allocator pools, Streamlit runtime)
    for f in round_:
        f()
    for p in pages:
        assert _app_session(p, str(moons.path)) == 0
    gc.collect()
    fds0, rss0 = proc.num_fds(), proc.memory_info().rss / 2**20
    t0 = time.perf_counter()
    done, app_runs, peak = 0, 0, rss0
    while done < N_ANALYSES:
        round_[done % len(round_)]()
        done += 1
        if done % 10 == 0:  # an app session every ten analyses
            assert _app_session(pages[app_runs % len(pages)], str(moons.path)) == 0
            app_runs += 1
        peak = max(peak, proc.memory_info().rss / 2**20)
    gc.collect()
    fds1, rss1 = proc.num_fds(), proc.memory_info().rss / 2**20
    lines = [
        f"soak: {done} analyses + {app_runs} AppTest sessions in {time.perf_counter() - t0:.1f}s",
        f"soak: open fds {fds0} -> {fds1} (growth {fds1 - fds0}, allowed {FD_SLACK})",
        f"soak: RSS {rss0:.0f} MB -> {rss1:.0f} MB (growth {rss1 - rss0:+.0f} MB, peak {peak:.0f} MB, "
        f"allowed {RSS_LIMIT_MB:.0f} MB)",
    ]
    SOAK_REPORT[:] = lines
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "soak.txt").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert done >= 50
    assert fds1 - fds0 <= FD_SLACK, lines[1]
    assert rss1 - rss0 < RSS_LIMIT_MB, lines[2]
