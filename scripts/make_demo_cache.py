"""Write checkpoints/demo-analyses.json: the home page's surfaces and curvature of the shipped demo runs.

The home page shows Hessian-eigenvector planes, random-direction slices and top-1 Lanczos + Hutchinson
traces of the shipped runs digits-sgd / digits-sam / digits-adam / digits-sgd-sharp. Computing them costs seconds of CPU on a cold start, so they ship
with the checkpoints ("shipped checkpoints, cached analyses", DESIGN.md). Settings, keys and the builder
are in :mod:`landscape_core.demo` (the home page reads the same ones), so this script uses the engine only.

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
    """The cache document for the demo runs present in ``checkpoints`` (engine only, no ``ui/``)."""
    from landscape_core.demo import build_demo_cache

    return build_demo_cache(checkpoints)


def main(argv: list[str] | None = None) -> int:
    """Compute and write the demo analyses next to the checkpoints."""
    from landscape_core.runs import checkpoints_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", default=str(checkpoints_dir()), help="folder holding the shipped runs")
    args = p.parse_args(argv)
    ck = Path(args.checkpoints)
    doc = build(ck)
    from landscape_core.demo import DEMO_CACHE

    out = ck / DEMO_CACHE
    out.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=True))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(doc['entries'])} entries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
