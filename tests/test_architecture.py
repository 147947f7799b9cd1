"""The layout tells the architecture: pages -> ui -> landscape_core, never the other way."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _files(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


def test_engine_never_imports_streamlit_or_ui():
    files = _files("landscape_core/**/*.py")
    assert len(files) >= 8
    for f in files:
        bad = _imports(f) & {"streamlit", "ui", "pages", "plotly"}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_pages_never_import_torch_or_engine_directly():
    files = _files("pages/*.py") + [ROOT / "app.py"]
    for f in files:
        if not f.exists():
            continue
        bad = _imports(f) & {"torch", "landscape_core", "numpy_torch"}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}; go through ui/"


def test_ui_does_not_import_pages():
    for f in _files("ui/**/*.py"):
        assert "pages" not in _imports(f), f"{f.relative_to(ROOT)} imports pages"


def test_fixture_violations_are_detected(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("import streamlit as st\nfrom torch import nn\n")
    assert {"streamlit", "torch"} <= _imports(bad)


PAGE_LINE_BUDGET = 40  # a page is its widgets, one compute block and its figures; the rest lives in ui/*_ui.py


def test_pages_and_home_within_line_budget():
    files = _files("pages/*.py") + [ROOT / "app.py"]
    assert len(files) >= 10  # every page script, not a vacuous pass over an empty folder
    long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > PAGE_LINE_BUDGET}
    assert not long, f"page scripts over {PAGE_LINE_BUDGET} lines (move widgets and figures into ui/): {long}"
