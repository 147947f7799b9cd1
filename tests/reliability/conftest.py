"""Fixtures for the reliability tests: isolated workspace/cache, a tiny source run outside the workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from rel_helpers import digits_model, digits_spec  # noqa: E402

from landscape_core.runs import save_run  # noqa: E402


@pytest.fixture
def workspace(_isolated_dirs) -> Path:
    """The test's workspace folder."""
    return _isolated_dirs


@pytest.fixture
def src_dir(tmp_path) -> Path:
    """A folder outside the workspace for source runs (what another user exported)."""
    d = tmp_path / "src"
    d.mkdir()
    return d


@pytest.fixture
def tiny_run(src_dir) -> Path:
    """A complete run folder (digits MLP 16-16, tanh) with a 3-snapshot trajectory, outside the workspace."""
    model = digits_model(seed=0)
    snaps = {k: torch.stack([v.detach() * s for s in (0.5, 0.8, 1.0)]) for k, v in model.named_parameters()}
    meta = {"model": digits_spec(), "dataset": {"name": "digits", "seed": 0}, "history": []}
    return save_run(src_dir / "tiny", model, meta, trajectory=(snaps, torch.tensor([0, 5, 10])))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Repeat the soak test's figures (open files, memory) at the end of the run."""
    from rel_helpers import SOAK_REPORT

    if SOAK_REPORT:
        terminalreporter.section("soak figures")
        for line in SOAK_REPORT:
            terminalreporter.write_line(line)
