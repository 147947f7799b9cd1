"""Guide page: every section renders with its anchor, formulas included, and links used elsewhere resolve."""

from __future__ import annotations

import re
from pathlib import Path

from ui.guide_text import ANCHORS, SECTIONS

PAGE = "pages/11_Guide.py"
ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"sharpness", "sgd-noise", "hvp", "lanczos", "hutchinson", "filter-normalisation",
            "pca-trajectories", "mode-connectivity", "flatness", "gradient-noise", "reading-plots"}


def test_guide_renders_every_section_with_anchor(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    headers = at.header
    assert [h.value for h in headers] == [t for _, t, _ in SECTIONS]
    assert [h.proto.anchor for h in headers] == list(ANCHORS)
    body = "\n".join(m.value for m in at.markdown)
    assert "$$" in body and r"\operatorname{tr}" in body


def test_required_topics_present_and_anchors_unique():
    assert REQUIRED <= set(ANCHORS)
    assert len(set(ANCHORS)) == len(ANCHORS)


def test_every_guide_link_in_the_app_points_to_a_section():
    used = set()
    for f in [*ROOT.glob("ui/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py"]:
        used |= set(re.findall(r"guide_link\(\s*[\"']([a-z0-9-]+)[\"']", f.read_text()))
    assert used, "no guide links found"
    missing = used - set(ANCHORS)
    assert not missing, f"guide_link anchors without a Guide section: {sorted(missing)}"


def test_guide_with_shipped_runs_and_presentation_mode(app_test):
    at = app_test(PAGE).run()
    assert not at.exception and "digits-sgd" in at.sidebar.caption[0].value
    at.sidebar.toggle[0].set_value(True).run()
    assert not at.exception
    assert any("font-size" in m.value for m in at.markdown)
    assert len(at.header) == len(SECTIONS)
