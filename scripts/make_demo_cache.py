"""Write checkpoints/demo-analyses.json: the home page's surfaces and curvature of the shipped demo runs.

The home page (``ui/home_ui.py``) shows three 21x21 surfaces and top-1 Lanczos + Hutchinson traces of the
shipped runs digits-sgd / digits-sam / digits-adam. Computing them costs seconds of CPU on a cold start, so
they ship with the checkpoints ("shipped checkpoints, cached analyses", DESIGN.md). Each entry is keyed by
run name + weights hash + canonical JSON of the settings (:func:`ui.home_ui.demo_key`), so the home page
uses it only when the run's weights and the settings are exactly those it was computed for.

Run after ``scripts/make_checkpoints.py`` (which calls it); it never touches the checkpoints themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(checkpoints: Path) -> dict:
    """The cache document for the demo runs present in ``checkpoints``."""
    from landscape_core.curvature import analyze_hessian
    from landscape_core.runs import load_run
    from ui.analysis import compute_surface_dict
    from ui.home_ui import CURVATURE, DEMO_RUNS, SURFACE, demo_key

    entries: dict[str, dict] = {}
    for name in DEMO_RUNS:
        path = checkpoints / name
        if not (path / "run.json").is_file():
            continue
        run = load_run(path)
        h = run.weights_hash
        surf = compute_surface_dict(str(path), dict(SURFACE))
        entries[demo_key("surface", name, h, SURFACE)] = surf
        hess = analyze_hessian(run, **CURVATURE).to_dict()
        entries[demo_key("hessian", name, h, CURVATURE)] = hess
        print(f"{name}: {h[:12]} lambda_max={hess['eigenvalues'][0]:.4g} "
              f"trace={hess['trace']['mean']:.4g} centre loss={surf['center_loss']:.4g}")
    return {"version": 1, "entries": entries}


def main(argv: list[str] | None = None) -> int:
    """Compute and write the demo analyses next to the checkpoints."""
    from landscape_core.runs import checkpoints_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", default=str(checkpoints_dir()), help="folder holding the shipped runs")
    args = p.parse_args(argv)
    ck = Path(args.checkpoints)
    doc = build(ck)
    out = ck / "demo-analyses.json"
    out.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=True))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(doc['entries'])} entries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
